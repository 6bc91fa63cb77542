"""
The TXT records senders read: ``_mta-sts`` (RFC 8461 section 3.1) and ``_smtp._tls``
(RFC 8460 section 3). Which records count, and their syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..dns import STS_VERSION, TLSRPT_VERSION

_DELIMITER = re.compile(r"[ \t]*;[ \t]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")  # no '=', ';', space or CTL
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_URI_LIST = re.compile(r"[ \t]*,[ \t]*")


def selected(records: Iterable[str], version: str) -> list[str]:
    """
    The records a sender considers: those beginning with ``version``; any other TXT record
    at the name is ignored, as RFC 8461 and RFC 8460 tell senders to.
    """
    return [record for record in records if record.startswith(version)]


def resembling(records: Iterable[str], version: str) -> list[str]:
    """
    The records senders ignore that would count but for the case of the version, or what
    comes before it (spaces, a byte-order mark an editor put there, quotes a DNS panel kept
    as part of the value): the version must begin the record exactly (RFC 7405 ``%s``).
    """
    return [
        record
        for record in records
        if not record.startswith(version)
        and record.lstrip(" \t\ufeff\"'").lower().startswith(version.lower())
    ]


def _fields(record: str, version: str) -> list[tuple[str, str]]:
    """
    The ``name=value`` fields after the version, in order.

    Raises:
        ValueError: the record does not follow ``version *(";" field) [";"]``.
    """
    parts = _DELIMITER.split(record)
    if parts[0] != version:
        raise ValueError(f"it must begin with {version!r} and a ';'")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one delimiter may end the record
    fields = []
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        if not equals or not _NAME.fullmatch(name):
            raise ValueError(f"{part!r} is not a field (name=value)")
        fields.append((name, value))
    return fields


def _one(fields: list[tuple[str, str]], name: str) -> str:
    values = [value for key, value in fields if key == name]
    if not values:
        raise ValueError(f"it has no {name} field")
    if len(values) > 1:
        raise ValueError(f"it has {len(values)} {name} fields")
    return values[0]


def _first(fields: list[tuple[str, str]], name: str) -> str:
    """RFC 8461 section 3.2: of a duplicated field, all entries but the first are ignored."""
    for key, value in fields:
        if key == name:
            return value
    raise ValueError(f"it has no {name} field")


def sts_duplicates(record: str) -> int:
    """How many ``id`` fields a valid ``_mta-sts`` record holds beyond the first."""
    return sum(name == "id" for name, _ in _fields(record, STS_VERSION)) - 1


def _extensions(fields: list[tuple[str, str]], known: str) -> None:
    for name, value in fields:
        if name != known and not _VALUE.fullmatch(value):
            raise ValueError(f"the value of {name!r} holds a space, '=', ';' or is empty")


def sts_id(record: str) -> str:
    """
    The ``id`` of an ``_mta-sts`` record; extension fields are allowed, and of several
    ``id`` fields the first counts (RFC 8461 section 3.2), the others being ignored.

    Raises:
        ValueError: the record is invalid; the message says how.
    """
    fields = _fields(record, STS_VERSION)
    value = _first(fields, "id")
    if not _ID.fullmatch(value):
        raise ValueError(f"its id {value!r} is not 1 to 32 letters and digits")
    first = fields.index(("id", value))
    _extensions([field for i, field in enumerate(fields) if i != first], "")
    return value


def reporter_drops(record: str) -> str | None:
    """
    Why Postfix's reporter, sys4/tlsrpt-reporter, sends no reports for a ``_smtp._tls``
    record that RFC 8460 section 3 allows; None if it sends them. It splits the record at
    each ';', wants the version alone before the first and ``rua=`` right after it, and
    splits the URIs at each ',' without removing spaces: a URI that begins with one, or
    whose scheme is not in lower case, has no scheme it knows, and it then drops every URI
    of the record.
    """
    version, _, rest = record.partition(";")
    if version != TLSRPT_VERSION:
        return f"it wants nothing between {TLSRPT_VERSION} and the first ';'"
    rua = rest.split(";")[0].strip()
    if not rua.startswith("rua="):
        return "it wants the rua field first"
    uris = rua.removeprefix("rua=").split(",")
    if any(uri != uri.lstrip() for uri in uris):
        return "it wants no space after the commas between the URIs"
    if not all(uri.startswith(("mailto:", "https:")) for uri in uris):
        return "it wants the scheme in lower case, mailto: or https:"
    return None


def _scheme_lower(uri: str) -> str:
    """A URI with its scheme in lower case: schemes are case-insensitive (RFC 3986 3.1)."""
    scheme, colon, rest = uri.partition(":")
    return scheme.lower() + colon + rest if colon else uri


def tlsrpt_rua(record: str) -> tuple[str, ...]:
    """
    The ``rua`` URIs of a ``_smtp._tls`` record; extension fields are allowed.

    Raises:
        ValueError: the record is invalid; the message says how.
    """
    fields = _fields(record, TLSRPT_VERSION)
    value = _one(fields, "rua")
    uris = tuple(_scheme_lower(uri) for uri in _URI_LIST.split(value))
    for uri in uris:
        if not (uri.startswith("mailto:") and "@" in uri) and not uri.startswith("https://"):
            raise ValueError(f"rua {uri!r} is not a 'mailto:' address or an 'https://' URL")
        if not uri.isascii():
            raise ValueError(f"rua {uri!r} is not ASCII: write international domains in A-labels")
        if not uri.isprintable() or any(c in uri for c in ',!; "\\'):
            raise ValueError(f"rua {uri!r} must percent-encode commas, '!', ';' and spaces")
    _extensions(fields, "rua")
    return uris
