"""The YAML dialect ftctl reads: YAML 1.2 core scalars, no tags, no duplicate keys, bounded aliases.

Parsed by libyaml (the fastest parser measured here: see perf.md) and built from its event stream
by `events.ValueBuilder`, never by libyaml's recursive composer, so no input can overflow the C
stack. Scalars follow YAML 1.2 core: `2e-4` is a float and `on`/`yes` stay strings, as in
ruamel.yaml. Problems a plain loader would accept silently (duplicate keys, tags, alias expansion,
deep nesting) are recorded as `YamlProblem`s with positions; a syntax error is returned for the
caller to report.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.manifests import events

TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map"))
MAX_EXPANDED_NODES = 100_000  # per document, after aliases are expanded
# Per file, after aliases are expanded: values across all its documents, and characters of its
# scalars and keys (a file without aliases never comes near either: it is at most 8 MiB).
MAX_FILE_EXPANDED_NODES = 2_000_000
MAX_EXPANDED_CHARS = 16 * 1024 * 1024
MAX_DEPTH = events.MAX_DEPTH
MAX_INT_DIGITS = 4000  # Python refuses to convert longer decimal strings
_FLOAT_SPECIAL = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}


@dataclass(frozen=True)
class YamlProblem:
    code: str  # a catalog code: LD-002, LD-003, LD-004, LD-005, LD-007, LD-011
    message: str
    line: int  # 1-based; 0: the start of document `doc`
    col: int  # 1-based
    doc: int = 0


class Lines:
    """1-based (line, column) of character indexes in one text, counting only "\\n" as a line
    break, as editors and GitHub annotations do (libyaml's own line numbers also break at \\r,
    U+0085, U+2028 and U+2029). The line starts are found once, so each lookup is a bisection:
    300,000 diagnostics in one file cost linear time, not quadratic."""

    def __init__(self, text: str) -> None:
        self.size = len(text)
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def position(self, index: int) -> tuple[int, int]:
        index = max(0, min(index, self.size))
        line = bisect.bisect_right(self.starts, index)
        return line, index - self.starts[line - 1] + 1


# YAML 1.2 core schema: plain scalars that are not strings, by their first character.
_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def _add(tag: str, pattern: str, first: str) -> None:
    for char in first:
        _IMPLICIT.setdefault(char, []).append((TAG + tag, re.compile(pattern)))


_add("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_add("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_add(
    "float",
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    "-+.0123456789",
)
_add("null", r"^(?:~|null|Null|NULL)$", "~nN")


def resolve_plain(value: str) -> str:
    """The YAML 1.2 core tag of a plain (unquoted) scalar."""
    if not value:
        return TAG + "null"
    for tag, regexp in _IMPLICIT.get(value[0], ()):
        if regexp.match(value):
            return tag
    return TAG + "str"


def convert_scalar(tag: str, value: str) -> Any:
    if tag == TAG + "str":
        return value
    if tag == TAG + "null":
        if value not in ("", "~", "null", "Null", "NULL"):
            raise ValueError(f"{value!r} is not null")
        return None
    if tag == TAG + "bool":
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return value.lower() == "true"
    if tag == TAG + "int":
        sign = -1 if value.startswith("-") else 1
        body = value.lstrip("+-")
        if len(body) > MAX_INT_DIGITS:
            raise ValueError(f"an integer with {len(body):,} digits is too long")
        if body.startswith(("0o", "0x")):
            return sign * int(body[2:], 8 if body[1] == "o" else 16)
        return sign * int(body, 10)
    special = _FLOAT_SPECIAL.get(value.lower())
    return special if special is not None else float(value)


def load_documents(text: str) -> tuple[list[Any], list[YamlProblem], Exception | None]:
    """Every document of `text` (None for empty ones), the problems found, and the error that
    stopped parsing, if any (documents before it are kept). Built from libyaml's events, never its
    recursive composer, so no input can overflow the C stack."""
    builder = events.ValueBuilder(text, resolve=resolve_plain, convert=convert_scalar, allowed_tags=ALLOWED_TAGS)
    error: Exception | None = None
    try:
        builder.run()
    except yaml.YAMLError as exc:
        error = exc
    docs = builder.docs
    lines = Lines(text) if builder.problems else None
    problems = [YamlProblem(p.code, p.message, *lines.position(p.index), doc=p.doc) for p in builder.problems] if lines else []
    if "&" in text:  # also when a later document failed: the ones before it are still used
        problems.extend(_alias_problems(docs))
    return docs, problems, error


def _alias_problems(docs: list[Any]) -> list[YamlProblem]:
    """Aliases share objects: measure what each document expands to, in values and characters, and
    stop at the limits, per document and for the file as a whole. A document past its limit is
    left out; a file past its limit is one problem and none of its documents is used."""
    out: list[YamlProblem] = []
    left = _Budget(MAX_FILE_EXPANDED_NODES, MAX_EXPANDED_CHARS)
    for index, doc in enumerate(docs):
        over = _expand(doc, left)
        if over == "file":
            docs[:] = [None] * len(docs)
            limits = f"{MAX_FILE_EXPANDED_NODES:,} values or {MAX_EXPANDED_CHARS:,} characters"
            return [YamlProblem("LD-005", f"the file expands past {limits} through aliases (at document {index + 1})",
                                0, 0, doc=index)]
        if over == "document":
            out.append(YamlProblem("LD-005", f"document {index + 1} expands past {MAX_EXPANDED_NODES:,} values through aliases",
                                   0, 0, doc=index))
            docs[index] = None
    return out


@dataclass
class _Budget:
    nodes: int
    chars: int


def _expand(root: Any, left: _Budget) -> str | None:
    """Walk `root` as if its aliases were copies and charge `left` with the walk (also for a
    document left out, so 500 of them cost no more than the file's budget): "document" past
    MAX_EXPANDED_NODES values, "file" when the file's budget runs out, else None."""
    nodes = chars = 0
    stack = [root]
    while stack:
        value = stack.pop()
        nodes += 1
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict):
            chars += sum(map(len, value))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        if nodes > left.nodes or chars > left.chars:
            return "file"
        if nodes > MAX_EXPANDED_NODES:
            break
    left.nodes -= nodes
    left.chars -= chars
    return "document" if nodes > MAX_EXPANDED_NODES else None


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
