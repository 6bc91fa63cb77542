"""Text shown to a person: from outside, on one line and unable to steer a terminal; counts."""

from __future__ import annotations

import re

# The default-ignorable code points (Unicode's DerivedCoreProperties) that str.isprintable()
# lets through: a combining grapheme joiner, Hangul fillers, Khmer inherent vowels and
# variation selectors show nothing, so "mail.example.com\u034f" looked like mail.example.com.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0100-\U000e01ef]"
)


def printable(text: str) -> str:
    """
    ``text`` with what is not printable (a line break, an escape) or shows nothing (a
    variation selector) as its Python escape.
    """
    if text.isprintable() and not _INVISIBLE.search(text):
        return text
    return "".join(
        c if c.isprintable() and not _INVISIBLE.match(c) else c.encode("unicode_escape").decode()
        for c in text
    )


def counted(count: int, noun: str) -> str:
    """``1 domain``, ``2 domains``: a count and its noun, in the plural but for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def last_days(days: int) -> str:
    """``last 14 days``, and ``last day`` for one."""
    return "last day" if days == 1 else f"last {days} days"
