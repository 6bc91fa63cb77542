"""
Read a YAML document into plain nodes that remember their line, safely and fast.

The file is operator input, so it is bounded before parsing and built from libyaml's event
stream with no aliases, tags or constructors: an alias bomb stops at its first alias, and
nothing is ever resolved into Python objects that the configuration does not ask for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import yaml

MAX_FILE_SIZE = 32 * 1024 * 1024
_MAX_DEPTH = 64

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


def read_bytes(data: bytes) -> Node | None:
    """
    Parse one YAML document; return None for a document with no content.

    Raises:
        YAMLProblem: the text is not UTF-8 or not YAML, or uses what a config never needs.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YAMLProblem(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line) from None
    try:
        return _build(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        if mark is None:
            raise YAMLProblem(message) from None
        raise YAMLProblem(message, mark.line + 1, mark.column + 1) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise YAMLProblem(message, line) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every parser error above carries a mark
        raise YAMLProblem(str(exc)) from None


def _build(events: Iterator[yaml.Event]) -> Node | None:
    root: Node | None = None
    documents = 0
    stack: list[Sequence | Mapping] = []
    pending_keys: list[Scalar | None] = []
    for event in events:
        line = event.start_mark.line + 1  # type: ignore[union-attr]  # parsers always mark
        node: Node
        if isinstance(event, yaml.ScalarEvent):
            if event.tag is not None:
                raise YAMLProblem(f"YAML tags like {event.tag!r} are not supported", line)
            node = Scalar(line, event.value, event.implicit[0])
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if event.tag is not None:
                raise YAMLProblem(f"YAML tags like {event.tag!r} are not supported", line)
            if len(stack) >= _MAX_DEPTH:
                raise YAMLProblem(f"nested deeper than {_MAX_DEPTH} levels", line)
            collection: Sequence | Mapping = (
                Mapping(line, [])
                if isinstance(event, yaml.MappingStartEvent)
                else Sequence(line, [])
            )
            stack.append(collection)
            pending_keys.append(None)
            continue
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            node = stack.pop()
            pending_keys.pop()
        elif isinstance(event, yaml.AliasEvent):
            raise YAMLProblem(
                "YAML aliases are not supported; use 'defaults' to share values", line
            )
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise YAMLProblem("expected a single YAML document", line)
            continue
        else:
            continue
        if not stack:
            root = node
            continue
        parent = stack[-1]
        if isinstance(parent, Sequence):
            parent.items.append(node)
        elif pending_keys[-1] is None:
            if not isinstance(node, Scalar):
                raise YAMLProblem("mapping keys must be plain names", node.line)
            pending_keys[-1] = node
        else:
            key = pending_keys[-1]
            assert key is not None
            parent.items.append((key, node))
            pending_keys[-1] = None
    return root
