"""The values of a configuration file, one at a time: each validator takes a YAML node and
returns the typed value, or raises Invalid saying what was expected and what was found."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from . import _yaml, names
from .policy import MAX_AGE_LIMIT, VERSION, Mode

_MAX_DNS_TTL = 2_147_483_647  # RFC 2181 section 8
# Plain decimal only: YAML 1.1 reads 010 as octal and 1_0 as ten, which nobody means here.
_DIGITS = re.compile(r"0|[1-9][0-9]*")


class Invalid(ValueError):
    """A value failed validation; the message says what was expected."""


def got(node: _yaml.Node) -> str:
    if isinstance(node, _yaml.Mapping):
        return "a mapping"
    if isinstance(node, _yaml.Sequence):
        return "a list"
    return "nothing" if node.is_null else repr(node.text)


def string(node: _yaml.Node, expected: str) -> str:
    if not isinstance(node, _yaml.Scalar) or node.is_null:
        raise Invalid(f"expected {expected}, got {got(node)}")
    return node.text


def _integer(node: _yaml.Node, low: int, high: int) -> int:
    expected = f"an integer {low}..{high}"
    if not (isinstance(node, _yaml.Scalar) and node.plain and _DIGITS.fullmatch(node.text)):
        raise Invalid(f"expected {expected}, got {got(node)}")
    value = int(node.text)
    if not low <= value <= high:
        raise Invalid(f"expected {expected}, got {node.text!r}")
    return value


def items(node: _yaml.Node) -> list[_yaml.Node]:
    """A list, or one scalar standing for a list of one."""
    if isinstance(node, _yaml.Sequence):
        return node.items
    if isinstance(node, _yaml.Scalar) and not node.is_null:
        return [node]
    raise Invalid(f"expected a list, got {got(node)}")


def _mode(node: _yaml.Node) -> Mode:
    expected = "one of enforce, testing, none"
    value = string(node, expected)
    try:
        return Mode(value)
    except ValueError:
        raise Invalid(f"expected {expected}, got {value!r}") from None


def _version(node: _yaml.Node) -> str:
    value = string(node, repr(VERSION))
    if value != VERSION:
        raise Invalid(f"expected {VERSION!r} (the only version RFC 8461 defines), got {value!r}")
    return value


def _max_age(node: _yaml.Node) -> int:
    return _integer(node, 0, MAX_AGE_LIMIT)


def _dns_ttl(node: _yaml.Node) -> int:
    return _integer(node, 0, _MAX_DNS_TTL)


def _cname(node: _yaml.Node) -> str:
    try:
        return names.host_name(string(node, "a host name"))
    except ValueError as exc:
        raise Invalid(f"{exc}, got {got(node)}") from None


def _txt_cname(node: _yaml.Node) -> str:
    try:
        return names.dns_name(string(node, "a DNS name"))
    except ValueError as exc:
        raise Invalid(f"{exc}, got {got(node)}") from None


def uri(text: str) -> str:
    if not (text.startswith("mailto:") and "@" in text) and not text.startswith("https://"):
        raise Invalid(f"expected a 'mailto:' address or an 'https://' URL, got {text!r}")
    if not text.isascii() or any(c in text for c in ',!; "\\') or not text.isprintable():
        raise Invalid(f"commas, '!', ';', quotes and spaces must be percent-encoded, got {text!r}")
    return text


# Each key a policy block may hold, with the function that validates its value. The mx and
# tlsrpt_rua lists are validated item by item by the caller, so that errors name the item.
POLICY_FIELDS: dict[str, Callable[[_yaml.Node], Any]] = {
    "version": _version,
    "mode": _mode,
    "mx": items,
    "max_age": _max_age,
    "cname": _cname,
    "txt_cname": _txt_cname,
    "tlsrpt_rua": items,
    "dns_ttl": _dns_ttl,
}
POLICY_KEYS = tuple(POLICY_FIELDS)
TOP_LEVEL = ("defaults", "domains")


def unknown_key(key: str, valid: tuple[str, ...] | list[str]) -> str:
    close = [k for k in valid if key.startswith(k) or k.startswith(key)]
    close = close or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (expected one of: {', '.join(valid)})"
