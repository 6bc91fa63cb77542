"""
Policy parsers of real senders, as test oracles: RFC 8461 section 3.2 defines the policy
format, and these decide what is accepted in practice.

Snawoot's postfix-mta-sts-resolver and checkdmarc are Python, so their own code is called.
mox, go-mtasts and postfix-tlspol are Go: their parsing rules are ported here, each as strict
as the original on what decides acceptance (blank lines, colons in values, key syntax, mx
syntax). Each returns (mode, mx, max_age) or raises ValueError.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from checkdmarc.mta_sts import parse_mta_sts_policy as checkdmarc_parse
from postfix_mta_sts_resolver.utils import parse_mta_sts_policy as snawoot_parse

Parsed = tuple[str, tuple[str, ...], int]

_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def _check(fields: dict[str, str], mx: list[str]) -> Parsed:
    if fields.get("version") != "STSv1":
        raise ValueError("version")
    mode = fields.get("mode")
    if mode not in ("enforce", "testing", "none"):
        raise ValueError("mode")
    max_age = fields.get("max_age", "")
    if not re.fullmatch(r"[0-9]{1,10}", max_age):
        raise ValueError("max_age")
    if mode != "none" and not mx:
        raise ValueError("mx")
    return mode, tuple(mx), int(max_age)


def snawoot(body: bytes) -> Parsed:
    # resolver.py: the declared charset (utf-8 here), then these checks.
    policy = snawoot_parse(body.decode("utf-8"))
    if policy.get("version") != "STSv1" or policy.get("mode") not in ("enforce", "testing", "none"):
        raise ValueError("version or mode")
    max_age = int(policy.get("max_age", "-1"))
    if not 0 <= max_age <= 31557600 or (policy["mode"] != "none" and not policy["mx"]):
        raise ValueError("max_age or mx")
    return policy["mode"], tuple(policy["mx"]), max_age


def checkdmarc(body: bytes) -> Parsed:
    result = checkdmarc_parse(body.decode("utf-8"))
    policy = result["policy"]
    return policy["mode"], tuple(policy["mx"]), int(policy["max_age"])


def mox(body: bytes) -> Parsed:
    """mox mtasts/parse.go: LF or CRLF lines, strict names and values, first value wins."""
    text = body.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in lines:
        line = line.removesuffix("\r")
        key, colon, value = line.partition(":")
        if not colon or not _EXT_NAME.fullmatch(key):
            raise ValueError(f"bad line {line!r}")
        value = value.lstrip(" \t").rstrip(" \t")
        if key == "mx":
            pattern = value.removeprefix("*.")
            if not _DOMAIN.fullmatch(pattern) or not pattern.isascii():
                raise ValueError(f"bad mx {value!r}")
            mx.append(value)
        else:
            fields.setdefault(key, value)
    return _check(fields, mx)


def go_mtasts(body: bytes) -> Parsed:
    """
    go-mtasts: lines as bufio.ScanLines cuts them (at LF, one CR before it dropped: a lone CR
    ends no line), each split on ':' into exactly two parts; a blank line is an error.
    """
    fields: dict[str, str] = {}
    mx: list[str] = []
    lines = body.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()  # the scanner gives no empty token after a final LF
    for line in lines:
        parts = line.removesuffix("\r").split(":")
        if len(parts) != 2:
            raise ValueError(f"bad line {line!r}")
        key, value = parts[0], parts[1].strip()
        if key == "mx":
            mx.append(value)
        else:
            fields[key] = value  # the last value wins
    return _check(fields, mx)


def postfix_tlspol(body: bytes) -> Parsed:
    """postfix-tlspol: as mox, but max_age is capped (it also strips one trailing dot from an
    mx, which this port refuses as mox does: stricter, never looser)."""
    mode, mx, max_age = mox(body)
    return mode, mx, min(max_age, 31557600)


PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    "snawoot": snawoot,
    "checkdmarc": checkdmarc,
    "mox": mox,
    "go-mtasts": go_mtasts,
    "postfix-tlspol": postfix_tlspol,
}
