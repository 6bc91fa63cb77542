"""Text shown to a person: from outside, on one line and unable to steer a terminal; counts."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with what is not printable (a line break, an escape) as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def counted(count: int, noun: str) -> str:
    """``1 domain``, ``2 domains``: a count and its noun, in the plural but for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
