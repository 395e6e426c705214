"""Building documents from libyaml's event stream, iteratively, with a hard depth limit.

libyaml's parser is a state machine, but the composer that turns events into node trees recurses
once per nesting level and overflows the C stack on input nested some 25,000 deep, however that
depth is written (brackets, '- - -', '? ', quoted or not). ftctl never uses it: `ValueBuilder`
builds plain values and `PositionBuilder` builds a tree of character offsets for the position
pass, both from events, and anything deeper than MAX_DEPTH is skipped and reported (LD-011).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import events as ev
from yaml.cyaml import CParser  # type: ignore[attr-defined]

MAX_DEPTH = 64
# libyaml's scanner slows quadratically with nesting; past this many levels below MAX_DEPTH the rest
# of the file is not read (LD-011 has been reported already).
ABANDON_DEPTH = 512
_MISSING = object()


@dataclass
class Problem:
    code: str
    message: str
    index: int  # character offset in the text
    doc: int


@dataclass
class PosNode:
    """Where a value starts, and for collections where each child (and mapping key) starts."""

    index: int
    items: list[PosNode] = field(default_factory=list)  # sequences
    entries: dict[str, tuple[int, PosNode]] = field(default_factory=dict)  # mappings: key -> (key index, value)


class Builder:
    """Walks the events of every document; subclasses say what a scalar and a collection become."""

    def __init__(self, text: str, *, upto: int | None = None) -> None:
        self.text = text
        self.problems: list[Problem] = []
        self.docs: list[Any] = []
        self.doc = 0
        self.upto = upto  # stop after this document index

    def problem(self, code: str, message: str, event: Any) -> None:
        self.problems.append(Problem(code, message, event.start_mark.index, self.doc))

    def run(self) -> None:
        parser = CParser(self.text)
        try:
            self._walk(parser)
        finally:
            parser.dispose()

    def _walk(self, parser: Any) -> None:
        stack: list[list[Any]] = []  # frames: [container, pending key or _MISSING, key event]
        anchors: dict[str, Any] = {}
        root: Any = None
        skipping, too_deep = 0, False
        while parser.check_event():
            event = parser.get_event()
            if skipping:
                skipping += 1 if isinstance(event, ev.CollectionStartEvent) else -1 if isinstance(event, ev.CollectionEndEvent) else 0
                if skipping > ABANDON_DEPTH:
                    return
                continue
            if isinstance(event, ev.DocumentStartEvent):
                stack, anchors, root, too_deep = [], {}, None, False
            elif isinstance(event, ev.DocumentEndEvent):
                self.docs.append(None if too_deep else root)  # a document cut short is not used
                self.doc += 1
                if self.upto is not None and self.doc > self.upto:
                    return
            elif isinstance(event, ev.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    self.problem("LD-011", f"values nest deeper than {MAX_DEPTH} levels", event)
                    skipping, too_deep = 1, True
                    continue
                container = self.collection(event)
                if event.anchor:
                    anchors[event.anchor] = container
                root = self._add(stack, root, container, event)
                stack.append([container, _MISSING, None])
            elif isinstance(event, ev.CollectionEndEvent):
                stack.pop()
            elif isinstance(event, ev.ScalarEvent):
                value = self.scalar(event)
                if event.anchor:
                    anchors[event.anchor] = value
                root = self._add(stack, root, value, event)
            elif isinstance(event, ev.AliasEvent):
                if event.anchor not in anchors:
                    self.problem("LD-002", f"alias *{event.anchor} names no anchor before it", event)
                root = self._add(stack, root, anchors.get(event.anchor or ""), event)

    def _add(self, stack: list[list[Any]], root: Any, value: Any, event: Any) -> Any:
        if not stack:
            return value
        frame = stack[-1]
        if not self.is_mapping(frame[0]):
            self.append(frame[0], value)
        elif frame[1] is _MISSING:
            frame[1], frame[2] = value, event
        else:
            self.put(frame[0], frame[1], frame[2], value)
            frame[1] = _MISSING
        return root

    # --- what subclasses decide ---
    def scalar(self, event: Any) -> Any:
        raise NotImplementedError

    def collection(self, event: Any) -> Any:
        raise NotImplementedError

    def is_mapping(self, container: Any) -> bool:
        raise NotImplementedError

    def append(self, container: Any, value: Any) -> None:
        raise NotImplementedError

    def put(self, container: Any, key: Any, key_event: Any, value: Any) -> None:
        raise NotImplementedError


class PositionBuilder(Builder):
    """Offsets only: for turning a diagnostic's field path into a line and column."""

    def scalar(self, event: Any) -> Any:
        return (event.value, PosNode(event.start_mark.index))

    def collection(self, event: Any) -> Any:
        node = PosNode(event.start_mark.index)
        return (None, node, isinstance(event, ev.MappingStartEvent))

    def is_mapping(self, container: Any) -> bool:
        return bool(container[2])

    def append(self, container: Any, value: Any) -> None:
        container[1].items.append(value[1] if value is not None else PosNode(0))

    def put(self, container: Any, key: Any, key_event: Any, value: Any) -> None:
        if key is not None and isinstance(key[0], str) and key[0] not in container[1].entries:
            container[1].entries[key[0]] = (key_event.start_mark.index, value[1] if value is not None else PosNode(0))

    @staticmethod
    def root(doc: Any) -> PosNode | None:
        return doc[1] if doc is not None else None


def compose_positions(text: str, upto: int | None = None) -> list[PosNode | None]:
    """Offset trees of the documents that parse (up to document `upto`)."""
    builder = PositionBuilder(text, upto=upto)
    with contextlib.suppress(yaml.YAMLError):  # a syntax error: keep the documents before it
        builder.run()
    return [PositionBuilder.root(d) for d in builder.docs]


def index_at(root: PosNode | None, path: tuple[str | int, ...]) -> int | None:
    """Offset a field path points at (a mapping entry's key), or the deepest existing one."""
    if root is None:
        return None
    node, target = root, root.index
    for part in path:
        if isinstance(part, str) and part in node.entries:
            target, node = node.entries[part]
        elif isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
            target = node.index
        else:
            break
    return target


class ValueBuilder(Builder):
    """Plain values (dict, list, str, int, float, bool, None) with ftctl's checks: duplicate and
    non-string keys, allowed tags only, YAML 1.2 core scalars. `convert(tag, value)` turns a
    resolved scalar into its value or raises ValueError."""

    def __init__(self, text: str, *, resolve: Any, convert: Any, allowed_tags: frozenset[str]) -> None:
        super().__init__(text)
        self._resolve, self._convert, self._allowed = resolve, convert, allowed_tags

    def scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolve(event.value) if event.implicit[0] and tag is None else "tag:yaml.org,2002:str"
        elif tag not in self._allowed or tag.endswith((":map", ":seq")):
            self.problem("LD-004", f"tag {tag!r} is not allowed on a scalar", event)
            return None
        try:
            return self._convert(tag, event.value)
        except ValueError as exc:
            if tag.endswith(":int"):  # digits past what Python converts: far beyond SQLite's 64 bits
                self.problem("SC-005", f"integer of {len(event.value)} characters does not fit in 64 bits", event)
            else:
                self.problem("LD-004", f"value cannot be read as {tag.rsplit(':', 1)[-1]}: {exc}", event)
            return None

    def collection(self, event: Any) -> Any:
        mapping = isinstance(event, ev.MappingStartEvent)
        want = "tag:yaml.org,2002:" + ("map" if mapping else "seq")
        if event.tag not in (None, "!", want):
            self.problem("LD-004", f"tag {event.tag!r} is not allowed here", event)
        return {} if mapping else []

    def is_mapping(self, container: Any) -> bool:
        return isinstance(container, dict)

    def append(self, container: Any, value: Any) -> None:
        container.append(value)

    def put(self, container: Any, key: Any, key_event: Any, value: Any) -> None:
        if not isinstance(key, str):
            self.problem("LD-007", f"mapping keys must be strings, got {key!r}", key_event)
        elif key in container:
            self.problem("LD-003", f"duplicate key {key!r}", key_event)
        else:
            container[key] = value
