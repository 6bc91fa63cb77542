"""Text from outside, shown to a person: on one line, and unable to steer a terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with what is not printable (a line break, an escape) as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
