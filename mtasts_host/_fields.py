"""
The values of a configuration file, one rule set per kind of value.

A parser takes a YAML node and returns the typed value, or raises ``Invalid`` saying what
was expected and what was found. Lists are parsed item by item, each bad item reported
under its own index. ``_block.Block`` reads one mapping with such parsers, key by key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from . import _yaml, names
from ._digits import decimal
from ._problems import Problems
from .policy import MAX_AGE_LIMIT, VERSION, Mode

T = TypeVar("T")

MAX_DNS_TTL = 2_147_483_647  # RFC 2181 section 8
# Plain decimal only: YAML 1.1 reads 010 as octal and 1_0 as ten, which nobody means here.
_DIGITS = re.compile(r"0|[1-9][0-9]*")


class Invalid(ValueError):
    """A value failed validation; the message says what was expected."""


class Reported(Exception):
    """A value failed validation and its problems have been reported already."""


class At(NamedTuple):
    """Where a value sits: its block and key, and so its key path; the problems of its file."""

    where: str
    name: str
    problems: Problems

    @property
    def key(self) -> str:
        return key_path(self.where, self.name)


Parser = Callable[[_yaml.Node, At], T]


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


def _quoted(node: _yaml.Node, expected: str) -> Invalid:
    """
    A number or a boolean in quotes, which YAML reads as a string: "got '86400'" alone reads
    as the very integer expected.
    """
    return Invalid(f"expected {expected}, got the string {got(node)} (remove the quotes)")


def integer(node: _yaml.Node, low: int, high: int) -> int:
    expected = f"an integer {low}..{high}"
    if not (isinstance(node, _yaml.Scalar) and _DIGITS.fullmatch(node.text)):
        raise Invalid(f"expected {expected}, got {got(node)}")
    if not node.plain:
        raise _quoted(node, expected)
    value = decimal(node.text, low, high)
    if value is None:
        raise Invalid(f"expected {expected}, got {node.text!r}")
    return value


def normalised(node: _yaml.Node, expected: str, normalise: Callable[[str], str]) -> str:
    """A string, normalised by a function that raises ValueError saying what it expected."""
    try:
        return normalise(string(node, expected))
    except Invalid:
        raise
    except ValueError as exc:
        raise Invalid(f"{exc}, got {got(node)}") from None


def _items(node: _yaml.Node, at: At, item: Callable[[_yaml.Node], T]) -> list[tuple[int, T]]:
    """A list (or one scalar standing for a list of one), each item parsed and reported."""
    if isinstance(node, _yaml.Sequence):
        nodes = node.items
    elif isinstance(node, _yaml.Scalar) and not node.is_null:
        nodes = [node]
    else:
        raise Invalid(f"expected a list, got {got(node)}")
    values: list[tuple[int, T]] = []
    for index, element in enumerate(nodes):
        try:
            values.append((element.line, item(element)))
        except Invalid as exc:
            at.problems.error(element.line, f"{at.key}[{index}]", str(exc))
    if len(values) < len(nodes):
        raise Reported
    return values


def boolean(node: _yaml.Node, at: At) -> bool:
    """``true`` or ``false`` (YAML 1.1's ``yes``, ``no``, ``on``, ``off`` too), unquoted."""
    if isinstance(node, _yaml.Scalar):
        word = node.text.lower()
        if word in ("true", "yes", "on", "false", "no", "off") and not node.plain:
            raise _quoted(node, "true or false")
        if word in ("true", "yes", "on"):
            return True
        if word in ("false", "no", "off"):
            return False
    raise Invalid(f"expected true or false, got {got(node)}")


def version(node: _yaml.Node, at: At) -> str:
    value = string(node, repr(VERSION))
    if value != VERSION:
        raise Invalid(f"expected {VERSION!r} (the only version RFC 8461 defines), got {value!r}")
    return value


def mode(node: _yaml.Node, at: At) -> Mode:
    expected = "one of enforce, testing, none"
    value = string(node, expected)
    try:
        return Mode(value)
    except ValueError:
        raise Invalid(f"expected {expected}, got {value!r}") from None


# Large configurations repeat a few MX patterns many times: normalise each text once.
_mx_pattern = functools.lru_cache(maxsize=4096)(names.mx_pattern)


def _mx_item(node: _yaml.Node) -> str:
    if isinstance(node, _yaml.Scalar) and not node.is_null:
        try:
            return _mx_pattern(node.text)
        except ValueError as exc:
            raise Invalid(f"{exc}, got {got(node)}") from None
    raise Invalid(f"expected an mx pattern, got {got(node)}")


def mx_patterns(node: _yaml.Node, at: At) -> tuple[str, ...]:
    """RFC 8461 mx patterns, normalised; a repeated one is dropped with a warning."""
    patterns: dict[str, None] = {}
    for index, (line, pattern) in enumerate(_items(node, at, _mx_item)):
        if pattern in patterns:
            at.problems.warn(line, f"{at.key}[{index}]", f"duplicate of {pattern!r}, removed")
        patterns[pattern] = None
    return tuple(patterns)


def max_age(node: _yaml.Node, at: At) -> int:
    return integer(node, 0, MAX_AGE_LIMIT)


def dns_ttl(node: _yaml.Node, at: At) -> int:
    return integer(node, 0, MAX_DNS_TTL)


def host_name(node: _yaml.Node, at: At) -> str:
    return normalised(node, "a host name", names.host_name)


def dns_name(node: _yaml.Node, at: At) -> str:
    return normalised(node, "a DNS name", names.dns_name)


def _report_uri(node: _yaml.Node) -> str:
    text = string(node, "a report URI")
    if not (text.startswith("mailto:") and "@" in text) and not text.startswith("https://"):
        raise Invalid(f"expected a 'mailto:' address or an 'https://' URL, got {text!r}")
    if not text.isascii():
        raise Invalid(
            "expected ASCII: international domains in A-labels ('xn--...'), other characters "
            f"percent-encoded, got {text!r}"
        )
    if any(c in text for c in ',!; "\\') or not text.isprintable():
        raise Invalid(f"commas, '!', ';', quotes and spaces must be percent-encoded, got {text!r}")
    return text


def report_uris(node: _yaml.Node, at: At) -> tuple[str, ...]:
    """
    RFC 8460 ``rua`` URIs: mailto: or https:, with the reserved characters encoded. One on a
    policy host gets a warning, not an error: the app answers 404 to reports there (a policy
    host serves the policy alone), but losing reports is no reason to stop serving policies.
    """
    uris = tuple(_items(node, at, _report_uri))
    for index, (line, uri) in enumerate(uris):
        domain = names.policy_domain_of_url(uri)
        if domain is not None:
            message = (
                f"reports sent to the policy host mta-sts.{domain} get 404: it serves the "
                "policy alone; give them a host name of their own, like "
                f"'https://tlsrpt.{domain or 'example.com'}/tlsrpt'"
            )
            at.problems.warn(line, f"{at.key}[{index}]", message)
    return tuple(uri for _, uri in uris)


def key_path(where: str, key: str) -> str:
    """The dotted path of ``key`` in the block at ``where`` ("" for the top level)."""
    return f"{where}.{key}" if where else key
