"""DNS data and the text the records are written in: names, and TXT character-strings."""

from __future__ import annotations

from collections.abc import Iterable

import dns.name

TXT_STRING = 255
"""Octets in one character-string of a TXT record (RFC 1035 section 3.3)."""


def name_text(name: dns.name.Name) -> str:
    """A name as the config writes it: lower case, without the final dot."""
    return name.to_text(omit_final_dot=True).lower()


def txt_text(strings: Iterable[bytes]) -> str:
    """A TXT record's value: its strings joined without spaces, as senders read them."""
    return b"".join(strings).decode("utf-8", "replace")


def txt_strings(value: str) -> list[str]:
    """A TXT value split into the character-strings of its record, 255 octets at most each
    (the values written are ASCII)."""
    return [value[i : i + TXT_STRING] for i in range(0, len(value), TXT_STRING)]
