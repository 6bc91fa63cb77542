"""
A TSIG key file, as ``tsig-keygen`` (BIND) or ``keymgr -t`` (knot) writes it: the name, the
algorithm and the secret that sign RFC 2136 updates. The secret never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

import dns.exception
import dns.name

from ._files import NotAFile, read_file

_ALGORITHMS = (
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
)
# BIND: key "name" { algorithm hmac-sha256; secret "base64"; };
_BIND = re.compile(
    r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;', re.IGNORECASE | re.DOTALL
)
_BIND_FIELD = re.compile(r'(algorithm|secret)\s+"?([^";\s]+)"?\s*;', re.IGNORECASE)
# named.conf comments (#, // and /* */), outside quoted strings: a secret may hold "//".
_BIND_COMMENT = re.compile(r'("[^"]*")|#[^\n]*|//[^\n]*|/\*.*?(?:\*/|\Z)', re.DOTALL)
# YAML comments: a "#" that starts a line or follows a blank; base64 has no "#".
_YAML_COMMENT = re.compile(r'("[^"\n]*")|(?:^|(?<=\s))#[^\n]*', re.MULTILINE)
# knot: key: / - id: name / algorithm: hmac-sha256 / secret: base64
_KNOT_FIELD = re.compile(r"^\s*(?:-\s*)?(id|algorithm|secret)\s*:\s*(\S+)\s*$", re.MULTILINE)
_ALGORITHM_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")
_MAX_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TsigKey:
    """One TSIG key; ``repr`` leaves the secret out."""

    name: str
    algorithm: str
    secret: bytes = field(repr=False)


def read_key_file(path: str | os.PathLike[str]) -> TsigKey:
    """
    Read the one key of a key file.

    Raises:
        ValueError: the file cannot be read or holds no single valid key; the message says
            why, and never shows the secret.
    """
    try:
        data, _ = read_file(path, _MAX_SIZE)
    except NotAFile as exc:
        raise ValueError(f"cannot read the key file: {exc}") from None
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise ValueError(f"cannot read the key file: {(reason or str(exc)).lower()}") from None
    if len(data) > _MAX_SIZE:
        raise ValueError("not a TSIG key file: larger than 64 KiB")
    try:
        return parse_key(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not a TSIG key file: not UTF-8 text") from None


def parse_key(text: str) -> TsigKey:
    """
    The one key in the text of a BIND or knot key file.

    Raises:
        ValueError: no key, several, or one without a valid name, algorithm or secret.
    """
    bind = list(_BIND.finditer(_uncommented(text, _BIND_COMMENT)))
    if bind:
        if len(bind) > 1:
            raise ValueError(f"expected one key in the file, found {len(bind)}")
        fields = {k.lower(): v for k, v in _BIND_FIELD.findall(bind[0]["body"])}
        fields["id"] = bind[0]["name"]
    else:
        found = _KNOT_FIELD.findall(_uncommented(text, _YAML_COMMENT))
        if [k for k, _ in found].count("id") > 1:
            raise ValueError("expected one key in the file, found several")
        fields = {k: v.strip("'\"") for k, v in found}  # YAML may quote any of them
    if "id" not in fields or "secret" not in fields:
        raise ValueError(
            "not a TSIG key file: expected the output of tsig-keygen (BIND) or keymgr -t (knot)"
        )
    algorithm = fields.get("algorithm", "hmac-sha256").lower()
    if algorithm not in _ALGORITHMS:
        # Shown only if it looks like an algorithm's name: a secret put there must not be.
        shown = f" {algorithm!r}" if _ALGORITHM_NAME.fullmatch(algorithm) else ""
        raise ValueError(
            f"unsupported TSIG algorithm{shown}; expected one of {', '.join(_ALGORITHMS)}"
        )
    try:
        secret = base64.b64decode(fields["secret"], validate=True)
    except binascii.Error:
        raise ValueError("the key's secret is not base64") from None
    if not secret:
        raise ValueError("the key's secret is empty")
    return TsigKey(_name(fields["id"]), algorithm, secret)


def _uncommented(text: str, comment: re.Pattern[str]) -> str:
    return comment.sub(lambda match: match[1] or " ", text)


def _name(text: str) -> str:
    """The key's name, as dnspython will read it when it signs (RFC 8945 section 4.2)."""
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        why = str(exc).rstrip(".")
        raise ValueError(f"the key's name is not a DNS name: {why[:1].lower()}{why[1:]}") from None
    if name == dns.name.root:
        raise ValueError("the key's name is not a DNS name: it is the root")
    return text.rstrip(".")
