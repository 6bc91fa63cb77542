"""One mapping of a configuration file, read key by key with the parsers of ``_fields``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TypeVar

from . import _yaml
from ._fields import At, Invalid, Parser, Reported, got, key_path
from ._problems import Problems

T = TypeVar("T")

_NONE: frozenset[str] = frozenset()  # one for all: each empty frozenset() is a new object


def unknown_key(key: str, valid: Sequence[str]) -> str:
    close = [k for k in valid if key and (key.startswith(k) or k.startswith(key))]
    close = close or difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (expected one of: {', '.join(valid)})"


def duplicate_key(seen: dict[str, int], key: _yaml.Scalar, where: str, problems: Problems) -> bool:
    """Report a key already seen in its mapping; else note where it was seen."""
    if key.text in seen:
        message = f"duplicate key (first on line {seen[key.text]})"
        problems.error(key.line, key_path(where, key.text), message)
        return True
    seen[key.text] = key.line
    return False


class Block:
    """
    One mapping of the file, read key by key: ``get`` parses the value of a key, and
    ``close`` reports every key that was not asked for as unknown, listing the ``keys``
    there are. A null block is an empty one; anything else that is not a mapping is an error.
    """

    def __init__(
        self, node: _yaml.Node, where: str, keys: Sequence[str], problems: Problems
    ) -> None:
        self.where = where
        self.keys = keys
        self.problems = problems
        self.lines: dict[str, int] = {}
        """The line of each key read successfully."""
        self.failed = _NONE
        """The keys whose values were invalid (and reported); "" if the block itself was."""
        self._entries: dict[str, tuple[_yaml.Scalar, _yaml.Node]] = {}
        if isinstance(node, _yaml.Mapping):
            seen: dict[str, int] = {}
            for key, value in node.items:
                if not duplicate_key(seen, key, where, problems):
                    self._entries[key.text] = (key, value)
        elif not (isinstance(node, _yaml.Scalar) and node.is_null):
            problems.error(node.line, where, f"expected a mapping, got {got(node)}")
            self.failed = frozenset(("",))

    def get(self, name: str, parse: Parser[T]) -> T | None:
        entry = self._entries.pop(name, None)
        if entry is None:
            return None
        key, value = entry
        at = At(self.where, name, self.problems)
        try:
            result = parse(value, at)
        except Invalid as exc:
            self.problems.error(value.line, at.key, str(exc))
        except Reported:
            pass
        else:
            self.lines[name] = key.line
            return result
        self.failed |= {name}
        return None

    def close(self) -> None:
        for key, _ in self._entries.values():
            self.problems.error(
                key.line, key_path(self.where, key.text), unknown_key(key.text, self.keys)
            )
