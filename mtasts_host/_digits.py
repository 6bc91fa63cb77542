"""Decimal numbers in text from outside: configuration values, options, ports."""

from __future__ import annotations

import re

_FRACTION = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def decimal(text: str, low: int, high: int) -> int | None:
    """
    ``text`` as an integer ``low..high``, or None if it is anything but ASCII digits of a
    number in that range. A long run of digits is refused before it is converted: Python
    refuses more than 4,300 with an error of its own.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        return None
    value = int(digits)
    return value if low <= value <= high else None


def fraction(text: str) -> float | None:
    """
    ``text`` as a number like ``2`` or ``2.5``, or None if it is anything else: ``float``
    would also take spaces, underscores, exponents and non-ASCII digits (``'١٢'``).
    """
    return float(text) if _FRACTION.fullmatch(text) else None
