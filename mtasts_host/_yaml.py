"""
Read a YAML document into plain nodes that remember their line, safely and fast.

The file is operator input, so it is bounded before parsing and read from libyaml's event
stream with no aliases, tags or constructors: an alias bomb stops at its first alias, and
nothing is resolved into Python objects that the configuration does not ask for. A large
mapping can be read entry by entry, so a 100,000-domain file never exists as one tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_SIZE = 32 * 1024 * 1024
_MAX_DEPTH = 64
# Far more than any one setting needs (a policy's 64 KiB hold fewer than 8,000 mx
# patterns), far fewer than the 16 million nodes 32 MiB of "a," make: gigabytes.
_MAX_ITEMS = 100_000

try:
    _Loader: type[yaml.SafeLoader | yaml.CSafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class YAMLProblem(Exception):
    """The text is not a usable YAML document; ``line`` and ``column`` count from 1."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class NotYAML(YAMLProblem):
    """
    The text is not YAML: what was read before the fault may be its artefact (a key missing
    its ':' makes the next line part of the value before it), so nothing else is told.
    """


@dataclass(slots=True)
class Scalar:
    line: int
    text: str
    plain: bool
    """Unquoted: only plain scalars can be numbers, booleans or null."""

    @property
    def is_null(self) -> bool:
        return self.plain and self.text in ("", "~", "null", "Null", "NULL")


@dataclass(slots=True)
class Sequence:
    line: int
    items: list[Node]


@dataclass(slots=True)
class Mapping:
    line: int
    items: list[tuple[Scalar, Node]]


Node = Scalar | Sequence | Mapping


_SCALAR = yaml.ScalarEvent
_MAPPING_START = yaml.MappingStartEvent
_SEQUENCE_START = yaml.SequenceStartEvent


# The line breaks of YAML 1.1, which libyaml counts in every line it reports.
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


_CANNOT_START = "found character that cannot start any token"
_NO_COLON = "could not find expected ':'"


def _line_of(before: str) -> int:
    """The line, as libyaml counts lines, that follows the text ``before``."""
    return len(_BREAK.findall(before)) + 1


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1  # type: ignore[union-attr]  # parsers always mark


class Document:
    """
    One YAML document, read front to back: ``node()`` takes the next node whole, and
    ``entries()`` walks a mapping key by key, leaving each value for the caller to take.

    Raises (from every method):
        YAMLProblem: the text is not UTF-8 or not YAML, or uses what a config never needs.
    """

    def __init__(self, data: bytes) -> None:
        encoding = _wide_encoding(data[:4])
        if encoding is not None:
            raise YAMLProblem(f"{encoding} text; expected UTF-8 (save the file as UTF-8)", 1)
        try:
            # Without its byte order mark, which libyaml skips: its marks count from after it.
            self._text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = _line_of(data[: exc.start].decode("utf-8"))
            raise YAMLProblem(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line) from None
        self._loader = _Loader(self._text)
        self._peeked: yaml.Event | None = None
        self._next()  # the stream start
        self.empty = isinstance(self._next(), yaml.StreamEndEvent)
        """No document at all: an empty file, or only comments."""

    def _next(self) -> yaml.Event:
        event, self._peeked = self._peeked or self._read(), None
        return event

    def _peek(self) -> yaml.Event:
        if self._peeked is None:
            self._peeked = self._read()
        return self._peeked

    def _read(self) -> yaml.Event:
        try:
            event: yaml.Event = self._loader.get_event()  # type: ignore[assignment]  # never None here
        except yaml.YAMLError as exc:
            raise self._problem(exc) from None
        return event

    def _problem(self, exc: yaml.YAMLError) -> YAMLProblem:
        """What a parser error says, where it happened."""
        if isinstance(exc, yaml.MarkedYAMLError):
            mark, context, problem = exc.problem_mark, exc.context_mark, exc.problem
            if mark is None:  # pragma: no cover - libyaml marks every error
                return NotYAML(" ".join(part for part in (exc.context, problem) if part))
            if problem == _CANNOT_START:
                # libyaml leaves out the character that PyYAML's own scanner names.
                character = self._text[mark.index : mark.index + 1]
                problem = f"found character {character!r} that cannot start any token"
                if character == "\t":
                    problem += "; indent with spaces, not tabs"
            if context is not None and (problem == _NO_COLON or mark.index >= len(self._text)):
                # libyaml marks where it gave up: for a key without its ':' the line after it,
                # for a quote or bracket left open the end of the file. The fault is where
                # the key, the quote or the bracket starts.
                mark = context
            message = " ".join(part for part in (exc.context, problem) if part)
            return NotYAML(message, mark.line + 1, mark.column + 1)
        if isinstance(exc, yaml.reader.ReaderError):
            # libyaml counts the position in bytes of UTF-8, not in characters.
            line = _line_of(self._text.encode()[: exc.position].decode("utf-8", "replace"))
            message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
            return NotYAML(message, line)
        return NotYAML(str(exc))  # pragma: no cover - every parser error above is caught

    def is_mapping(self) -> bool:
        """Whether the next node is a mapping."""
        return isinstance(self._peek(), yaml.MappingStartEvent)

    def node(self) -> Node:
        """Read the next node whole."""
        event = self._peeked
        self._peeked = None
        try:
            return self._node(event)
        except yaml.YAMLError as exc:
            raise self._problem(exc) from None

    def _node(self, event: Any) -> Node:
        stack: list[Sequence | Mapping] = []
        keys: list[Scalar | None] = []
        # The loop runs once per event of a 100,000-domain file: libyaml is called directly,
        # and only node starts are checked for what a config never needs. Events are Any:
        # each kind has its own attributes, and the kind is tested by identity.
        read: Callable[[], Any] = self._loader.get_event
        items = 0
        while True:
            if event is None:
                event = read()
            kind = event.__class__
            node: Node
            if kind is _SCALAR:
                if event.tag is not None:
                    raise _unsupported(event)
                node = Scalar(event.start_mark.line + 1, event.value, event.implicit[0])
            elif kind is _MAPPING_START or kind is _SEQUENCE_START:
                if event.tag is not None:
                    raise _unsupported(event)
                line = event.start_mark.line + 1
                if len(stack) >= _MAX_DEPTH:
                    raise YAMLProblem(f"nested deeper than {_MAX_DEPTH} levels", line)
                stack.append(Mapping(line, []) if kind is _MAPPING_START else Sequence(line, []))
                keys.append(None)
                event = None
                continue
            elif kind is yaml.AliasEvent:
                raise _unsupported(event)
            else:  # the end of a mapping or sequence: nothing else can come inside a node
                node = stack.pop()
                keys.pop()
            if not stack:
                return node
            event = None
            items += 1
            if items > _MAX_ITEMS:
                raise YAMLProblem(f"more than {_MAX_ITEMS} items in one value", stack[0].line)
            parent = stack[-1]
            if isinstance(parent, Sequence):
                parent.items.append(node)
            elif keys[-1] is None:
                if not isinstance(node, Scalar):
                    raise YAMLProblem("mapping keys must be plain names", node.line)
                keys[-1] = node
            else:
                parent.items.append((keys[-1], node))
                keys[-1] = None

    def entries(self) -> Iterator[Scalar]:
        """
        Walk the mapping that comes next: yield each key, after which the caller must read
        its value with ``node()`` or ``entries()`` before asking for the next key.
        """
        start = self._next()
        if start.tag is not None:  # type: ignore[attr-defined]
            raise _unsupported(start)
        while not isinstance(self._peek(), yaml.MappingEndEvent):
            key = self.node()
            if not isinstance(key, Scalar):
                raise YAMLProblem("mapping keys must be plain names", key.line)
            yield key
        self._next()

    def end(self) -> None:
        """Check that nothing but the end of the stream follows the document."""
        self._next()  # the document end
        event = self._next()
        if not isinstance(event, yaml.StreamEndEvent):
            raise YAMLProblem("expected a single YAML document", _line(event))


def _wide_encoding(start: bytes) -> str | None:
    """
    UTF-16 or UTF-32, told by the first bytes as YAML tells them (YAML 1.2 section 5.2): a
    byte order mark, or the zero bytes around the first character, which is ASCII.
    """
    if start.startswith((b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")):
        return "UTF-32"
    if start.startswith((b"\xfe\xff", b"\xff\xfe")):
        return "UTF-16"
    if len(start) == 4 and (start[:3] == b"\x00\x00\x00" or start[1:] == b"\x00\x00\x00"):
        return "UTF-32"
    if len(start) >= 2 and (start[0] == 0) != (start[1] == 0):
        return "UTF-16"
    return None


def _unsupported(event: yaml.Event) -> YAMLProblem:
    """A tag or an alias: YAML that a config never needs, and an alias can be a bomb."""
    if event.__class__ is yaml.AliasEvent:
        message = "YAML aliases are not supported; use 'defaults' to share values"
    else:
        message = f"YAML tags like {event.tag!r} are not supported"  # type: ignore[attr-defined]
    return YAMLProblem(message, _line(event))
