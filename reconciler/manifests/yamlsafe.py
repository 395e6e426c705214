"""The YAML dialect ftctl reads: YAML 1.2 core scalars, no tags, no duplicate keys, bounded aliases.

Built on PyYAML's libyaml parser (`CParser`, the fastest loader measured here: see perf.md) with a
resolver for YAML 1.2 core scalars, so `2e-4` is a float and `on`/`yes` stay strings, as in
ruamel.yaml and every YAML 1.2 tool. Problems that a plain loader would accept silently (duplicate
keys, tags, alias expansion) are recorded as `YamlProblem`s with their marks; a syntax error raises
`yaml.MarkedYAMLError`, which the caller turns into a diagnostic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.cyaml import CParser  # type: ignore[attr-defined]
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map"))
MAX_EXPANDED_NODES = 100_000  # per document, after aliases are expanded
MAX_DEPTH = 64
MAX_FLOW_DEPTH = 512  # libyaml's composer recurses per level and overflows the C stack near 25,000
MAX_INT_DIGITS = 4000  # Python refuses to convert longer decimal strings
_FLOW_CHARS = re.compile(r"[\[\]{}]")
# Block nesting shows in a line's prefix: indentation plus compact "- - - x" sequence entries.
_BLOCK_PREFIX = re.compile(rf"^[ \t-]{{{MAX_FLOW_DEPTH},}}", re.M)


@dataclass(frozen=True)
class YamlProblem:
    code: str  # a catalog code: LD-003, LD-004, LD-005, LD-011
    message: str
    line: int  # 1-based; 0: the start of document `doc`
    col: int  # 1-based
    doc: int = 0


def position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of a character index, counting only "\n" as a line break, as
    editors and GitHub annotations do (libyaml's own line numbers also break at \r, U+0085,
    U+2028 and U+2029)."""
    index = max(0, min(index, len(text)))
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def mark_position(text: str, mark: Any) -> tuple[int, int]:
    return position(text, mark.index)


class CoreResolver(BaseResolver):
    """YAML 1.2 core schema resolution (no YAML 1.1 yes/no/on/off booleans, no sexagesimals).

    libyaml calls `resolve` for every node, and `descend_resolver`/`ascend_resolver` around every
    collection; ftctl has no path resolvers, so those are no-ops and `resolve` goes straight to the
    few regexes that can match the first character."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                if not value:
                    return TAG + "null"
                for tag, regexp in self.yaml_implicit_resolvers.get(value[0], ()):
                    if regexp.match(value):
                        return tag
            return TAG + "str"
        return TAG + ("seq" if kind is SequenceNode else "map")


def _add(tag: str, pattern: str, first: str) -> None:
    CoreResolver.add_implicit_resolver(TAG + tag, re.compile(pattern, re.X), list(first))


_add("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_add("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_add(
    "float",
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    "-+.0123456789",
)
_add("null", r"^(?:~|null|Null|NULL|)$", "~nN\0")
CoreResolver.yaml_implicit_resolvers.setdefault("", []).append(
    (TAG + "null", re.compile(r"^$"))
)


class CheckingConstructor(SafeConstructor):
    """SafeConstructor that records duplicate keys instead of keeping the last value silently."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[YamlProblem] = []
        self.text = ""

    def _problem(self, code: str, message: str, node: Node) -> None:
        line, col = mark_position(self.text, node.start_mark)
        self.problems.append(YamlProblem(code, message, line, col))

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                self._problem("LD-007", f"mapping keys must be strings, got {key!r}", key_node)
                continue
            if key in mapping:
                self._problem("LD-003", f"duplicate key {key!r}", key_node)
                continue
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: ScalarNode) -> int | None:  # type: ignore[override]
        text = str(self.construct_scalar(node))
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if len(body) > MAX_INT_DIGITS:
            self._problem("LD-002", f"integer with {len(body):,} digits is too long", node)
            return None
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        return sign * int(body, 10)


_FLOAT_SPECIAL = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}


class LeanConstructor(CheckingConstructor):
    """Builds plain values straight from the node tree, without PyYAML's per-node generator
    bookkeeping (half of the parse time on 10,000 files). Aliases share one value, as in PyYAML,
    recursive ones included. Tags are checked only when `check_tags` (the text holds a '!')."""

    check_tags = False

    def construct_document(self, node: Node) -> Any:
        return self._build(node, {})

    def _build(self, node: Node, seen: dict[int, Any]) -> Any:
        if id(node) in seen:
            return seen[id(node)]
        tag = node.tag
        if self.check_tags and not self._tag_fits(node):
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, tag)
        if isinstance(node, SequenceNode):
            items: list[Any] = []
            seen[id(node)] = items
            items.extend(self._build(child, seen) for child in node.value)
            return items
        mapping: dict[str, Any] = {}
        seen[id(node)] = mapping
        for key_node, value_node in node.value:
            key = self._build(key_node, seen)
            if not isinstance(key, str):
                self._problem("LD-007", f"mapping keys must be strings, got {key!r}", key_node)
            elif key in mapping:
                self._problem("LD-003", f"duplicate key {key!r}", key_node)
            else:
                mapping[key] = self._build(value_node, seen)
        return mapping

    def _tag_fits(self, node: Node) -> bool:
        if node.tag not in ALLOWED_TAGS:
            self._problem("LD-004", f"tag {node.tag!r} is not allowed", node)
            return False
        shape = {TAG + "map": MappingNode, TAG + "seq": SequenceNode}.get(node.tag, ScalarNode)
        if not isinstance(node, shape):
            self._problem("LD-004", f"tag {node.tag!r} does not fit a {type(node).__name__[:-4].lower()}", node)
            return False
        return True

    def _scalar(self, node: ScalarNode, tag: str) -> Any:
        value = node.value
        if tag == TAG + "str":
            return value
        try:
            if tag == TAG + "null":
                if value not in ("", "~", "null", "Null", "NULL"):
                    raise ValueError(f"{value!r} is not null")
                return None
            if tag == TAG + "bool":
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"{value!r} is not true or false")
                return value.lower() == "true"
            if tag == TAG + "int":
                return self.construct_yaml_int(node)
            if tag == TAG + "float":
                special = _FLOAT_SPECIAL.get(value.lower())
                return special if special is not None else float(value)
        except ValueError as exc:
            self._problem("LD-004", f"value cannot be read as {tag.rsplit(':', 1)[-1]}: {exc}", node)
            return None
        self._problem("LD-004", f"tag {tag!r} is not allowed", node)
        return None


CheckingConstructor.add_constructor(TAG + "int", CheckingConstructor.construct_yaml_int)  # type: ignore[type-var]
CheckingConstructor.add_constructor(TAG + "map", CheckingConstructor.construct_yaml_map)  # type: ignore[type-var]


class ManifestLoader(CParser, LeanConstructor, CoreResolver):  # type: ignore[misc]
    """libyaml parser + lean checking constructor + YAML 1.2 core resolver."""

    def __init__(self, stream: str, *, check_tags: bool = False) -> None:
        CParser.__init__(self, stream)
        LeanConstructor.__init__(self)
        CoreResolver.__init__(self)
        self.check_tags = check_tags


class PositionLoader(CParser, CoreResolver):  # type: ignore[misc]
    """Composes node trees (with marks) for the position pass; constructs nothing."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        CoreResolver.__init__(self)


def load_documents(text: str) -> tuple[list[Any], list[YamlProblem], Exception | None]:
    """Every document of `text` (None for empty ones), the problems found, and the error that
    stopped parsing, if any (documents before it are kept)."""
    for find, what in ((flow_too_deep, "flow collections"), (block_too_deep, "indentation and '- ' entries")):
        too_deep = find(text)
        if too_deep is not None:
            line, col = position(text, too_deep)
            return [], [YamlProblem("LD-011", f"{what} nest deeper than {MAX_FLOW_DEPTH}", line, col)], None
    loader = ManifestLoader(text, check_tags="!" in text)
    loader.text = text
    docs: list[Any] = []
    error: Exception | None = None
    try:
        while loader.check_data():
            docs.append(loader.get_data())
    except (yaml.YAMLError, RecursionError) as exc:
        error = exc
    finally:
        loader.dispose()
    problems = list(loader.problems)
    if "&" in text:  # also when a later document failed: the ones before it are still used
        problems.extend(_alias_problems(docs))
    return docs, problems, error


def _alias_problems(docs: list[Any]) -> list[YamlProblem]:
    """Aliases share objects; count the nodes a document expands to and stop at the limit."""
    out: list[YamlProblem] = []
    for index, doc in enumerate(docs):
        if _expanded_size(doc, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            out.append(
                YamlProblem(
                    "LD-005",
                    f"document {index + 1} expands past {MAX_EXPANDED_NODES:,} values through aliases",
                    0,
                    0,
                    doc=index,
                )
            )
            docs[index] = None
    return out


def _expanded_size(root: Any, budget: int) -> int:
    count = 0
    stack = [root]
    while stack:
        value = stack.pop()
        count += 1
        if count > budget:
            return count
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def compose_documents(text: str, upto: int | None = None) -> list[Node | None]:
    """Node trees of the documents that parse (the first `upto + 1` of them when given), for
    resolving field paths to marks."""
    loader = PositionLoader(text)
    nodes: list[Node | None] = []
    try:
        while (upto is None or len(nodes) <= upto) and loader.check_node():
            nodes.append(loader.get_node())
    except (yaml.YAMLError, RecursionError):
        pass
    finally:
        loader.dispose()
    return nodes


def node_at(root: Node | None, path: tuple[str | int, ...]) -> tuple[Node | None, bool]:
    """The node a field path points at (a mapping entry's key node), and whether it was found
    whole; when not, the deepest existing node on the path."""
    node = root
    target = root
    for part in path:
        if isinstance(node, MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.value == part:
                    target, node = key_node, value_node
                    break
            else:
                return target, False
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = target = node.value[part]
        else:
            return target, False
    return target, True


def flow_too_deep(text: str, limit: int = MAX_FLOW_DEPTH) -> int | None:
    """Index where [ and { nest past `limit`, checked before libyaml sees the text. Brackets in
    quoted strings and comments count too: a conservative answer, and a cheap one (no scan unless
    the text holds more than `limit` opening brackets)."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for match in _FLOW_CHARS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return match.start()
        depth = max(depth, 0)
    return None


def block_too_deep(text: str) -> int | None:
    """Index of a line whose indentation and compact "- " entries could nest past MAX_FLOW_DEPTH
    (each level costs at least one character of that prefix), checked before libyaml sees it."""
    if " " * MAX_FLOW_DEPTH not in text and "- " * (MAX_FLOW_DEPTH // 2) not in text:
        return None
    match = _BLOCK_PREFIX.search(text)
    return match.start() if match is not None else None


def may_nest_deeply(text: str, limit: int = MAX_DEPTH) -> bool:
    """Cheap test on the text: can any document in it nest deeper than `limit`? Deep nesting needs
    either brackets nested that deep or a long run of indentation."""
    return ("\n" + " " * limit) in text or flow_too_deep(text, limit) is not None


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False
