"""Fuzzing `validate`: malformed manifests become diagnostics with positions, never exceptions.

Three hypothesis strategies, 400 documents each (1,200 in all), every one validated in a fresh
folder with `reconciler.engine.validate(..., offline=True, environ={})`:

(a) byte-level mutations of the demo manifests (specs/demo/*.yaml): flipped, inserted and deleted
    bytes, tabs, invalid UTF-8, truncation, duplicated and swapped lines, changed indentation;
(b) structural mutations: the demo documents as dicts with leaves replaced by random JSON-ish
    values, keys deleted, renamed or added, kinds and apiVersions changed, dumped back to YAML;
(c) YAML-ish text built from tokens (':', '-', '[', '{', '&a', '*a', '!tag', '---', tabs, quotes,
    unicode), optionally after a valid manifest header so it reaches the schema and rules.

For each: no exception escapes, it returns in bounded time, every code is in the catalog, and every
error has a position (its file, line >= 1, col >= 1, line within the file) unless its code is
file-level (FILE_LEVEL_CODES). Then the real CLI on ~25 nasty inputs: exit 0 or 1, no traceback,
under 20 s each.

Inputs that once broke the loader (found by these fuzzers) are kept as regression tests at the end.

FTCTL_FUZZ_EXAMPLES=N runs N examples per strategy; FTCTL_FUZZ_RANDOM=1 draws new inputs each run
(the default is derandomized, so CI is stable).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.catalog import RULES
from reconciler.diagnostics import Severity
from reconciler.engine import validate
from reconciler.models import MODELS

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "specs" / "demo"
FTCTL = REPO / ".venv" / "bin" / "ftctl"

DEMO_FILES: dict[str, bytes] = {p.name: p.read_bytes() for p in sorted(DEMO.glob("*.yaml"))}
DEMO_DOCS: dict[str, list[Any]] = {
    name: list(yaml.safe_load_all(data.decode("utf-8"))) for name, data in DEMO_FILES.items()
}
DEMO_DATA = DEMO / "data"

# Codes that concern a whole path, not a place in a file: "path cannot be read" (a missing or
# unreadable file or folder has no lines). LD-012 (no manifests found) has no location at all, but
# it is a warning, so it is not listed here.
FILE_LEVEL_CODES = frozenset({"LD-008"})

PER_EXAMPLE_LIMIT_S = 10.0
CLI_LIMIT_S = 20.0

EXAMPLES = int(os.environ.get("FTCTL_FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FTCTL_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

# --- the property checked for every generated folder -------------------------------------------


class _TimeoutError(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a hang (SIGALRM where there is one) and fail a slow return either way."""
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:

        def on_alarm(signum: int, frame: Any) -> None:
            raise _TimeoutError(f"validate did not return within {seconds} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"validate took {elapsed:.1f} s (limit {seconds} s)"


def check_folder(files: dict[str, bytes], limit_s: float = PER_EXAMPLE_LIMIT_S) -> None:
    """Write `files` (relative path -> bytes) into a fresh folder, validate it, check the property."""
    with tempfile.TemporaryDirectory(prefix="ftctl-fuzz-") as tmp:
        root = os.path.join(tmp, "manifests")
        os.makedirs(root)
        shutil.copytree(DEMO_DATA, os.path.join(root, "data"))  # so Dataset locations resolve
        written: dict[str, bytes] = {}
        for rel, data in files.items():
            path = os.path.normpath(os.path.join(root, rel))
            with open(path, "wb") as handle:
                handle.write(data)
            written[path] = data
        with time_limit(limit_s):
            report = validate([root], offline=True, environ={})
        for diag in report.diagnostics:
            assert diag.code in RULES, f"uncatalogued code {diag.code}: {diag}"
            if diag.severity is not Severity.ERROR or diag.code in FILE_LEVEL_CODES:
                continue
            loc = diag.location
            assert loc is not None and loc.file, f"error without a file: {diag}"
            assert loc.file in written, f"error names a file that was not given: {diag}"
            assert loc.line >= 1 and loc.col >= 1, f"error without a position: {diag}"
            line_text = line_of(written[loc.file], loc.line)
            assert line_text is not None, f"error past the last line of its file: {diag}"
            assert loc.col <= len(line_text) + 1, f"error past the end of line {loc.line} {line_text!r}: {diag}"


def line_of(data: bytes, line: int) -> str | None:
    """Line `line` (1-based) of a file as ftctl reads it (UTF-8, BOM dropped, lines end at \\n);
    None past the end. Undecodable bytes count one character each."""
    lines = data.decode("utf-8", "replace").removeprefix("\ufeff").split("\n")
    return lines[line - 1] if 1 <= line <= len(lines) else None


def demo_with(name: str, data: bytes) -> dict[str, bytes]:
    """The demo project with one file replaced (so references and rules across files still run)."""
    return {**DEMO_FILES, name: data}


# --- (a) byte-level mutations ------------------------------------------------------------------

INTERESTING_BYTES = [
    b"\t", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r", b"\n", b" ", b":",
    b": ", b"-", b"- ", b"[", b"]", b"{", b"}", b",", b"#", b"&a ", b"*a", b"!t ", b"!!str ", b"'", b'"',
    b"\\", b"|", b">", b"?", b"%", b"@", b"`", b"---\n", b"...\n", "é".encode(), "\u2028".encode(),
    "😀".encode(), b"\x85", b"\x1b", b"<<: *a\n",
]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


@st.composite
def byte_mutant(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(DEMO_FILES)))
    data = bytearray(DEMO_FILES[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["flip", "insert", "insert_random", "delete", "tab", "truncate", "dup_line", "swap_lines", "indent"]
            )
        )
        n = len(data)
        if op == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.sampled_from(INTERESTING_BYTES))
        elif op == "insert_random":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and n:
            i = draw(st.integers(0, n - 1))
            data[i : i + draw(st.integers(1, 16))] = b""
        elif op == "tab":
            lines = _lines(bytes(data))
            k = draw(st.integers(0, len(lines) - 1))
            lines[k] = b"\t" + lines[k].lstrip(b" ") if draw(st.booleans()) else b"\t" + lines[k]
            data = bytearray(b"".join(lines))
        elif op == "truncate":
            data = data[: draw(st.integers(0, n))]
        elif op == "dup_line":
            lines = _lines(bytes(data))
            k = draw(st.integers(0, len(lines) - 1))
            lines.insert(k, lines[k])
            data = bytearray(b"".join(lines))
        elif op == "swap_lines":
            lines = _lines(bytes(data))
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"".join(lines))
        elif op == "indent":
            lines = _lines(bytes(data))
            k = draw(st.integers(0, len(lines) - 1))
            body = lines[k].lstrip(b" ")
            lines[k] = b" " * draw(st.integers(0, 12)) + body
            data = bytearray(b"".join(lines))
    return name, bytes(data)


@FUZZ
@given(byte_mutant())
def test_byte_mutations_become_positioned_diagnostics(mutant: tuple[str, bytes]) -> None:
    name, data = mutant
    check_folder(demo_with(name, data))


# --- (b) structural mutations ------------------------------------------------------------------


def _known_keys() -> list[str]:
    keys: set[str] = set()
    stack: list[Any] = [d for docs in DEMO_DOCS.values() for d in docs]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys.update(str(k) for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(keys)


KNOWN_KEYS = _known_keys()
KINDS = sorted(MODELS)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "null", "~", "yes", "0x1F", "0o17", "1e3", ".inf", "{x}", "{", "a/b", "bad name!", "-"])
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(min_size=1, max_size=12)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys | st.integers(), children, max_size=4),
    max_leaves=12,
)


def _slots(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a tree, parents before children."""
    out: list[tuple[Any, Any]] = []
    queue = [tree]
    while queue:
        node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            out.append((node, key))
            queue.append(value)
    return out


def _typo(draw: st.DrawFn, word: str) -> str:
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "case"]))
    if how == "drop":
        return word[:i] + word[i + 1 :] or "x"
    if how == "double":
        return word[:i] + word[i] + word[i:]
    if how == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i].swapcase() + word[i + 1 :]


@st.composite
def structural_mutant(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(DEMO_DOCS)))
    docs = copy.deepcopy(DEMO_DOCS[name])
    for _ in range(draw(st.integers(1, 5))):
        if not docs:
            docs.append(draw(json_values))
            continue
        d = draw(st.integers(0, len(docs) - 1))
        op = draw(
            st.sampled_from(["replace", "replace", "delete", "add", "rename", "kind", "api", "whole", "dup_doc", "drop_doc"])
        )
        slots = _slots(docs[d])
        if op == "replace" and slots:
            container, key = draw(st.sampled_from(slots))
            container[key] = draw(json_values)
        elif op == "delete" and slots:
            container, key = draw(st.sampled_from(slots))
            del container[key]
        elif op == "add":
            dicts = [docs[d]] + [c[k] for c, k in slots if isinstance(c[k], dict)]
            target = draw(st.sampled_from(dicts))
            if isinstance(target, dict):
                target[draw(keys)] = draw(json_values)
        elif op == "rename":
            named = [(c, k) for c, k in slots if isinstance(c, dict) and isinstance(k, str)]
            if named:
                container, key = draw(st.sampled_from(named))
                container[_typo(draw, key)] = container.pop(key)
        elif op == "kind" and isinstance(docs[d], dict):
            docs[d]["kind"] = draw(st.sampled_from(KINDS) | st.sampled_from(["config", "Unknown", ""]) | json_values)
        elif op == "api" and isinstance(docs[d], dict):
            docs[d]["apiVersion"] = draw(st.sampled_from(["ftctl/v2", "v1", "ftctl/V1", ""]) | json_values)
        elif op == "whole":
            docs[d] = draw(json_values)
        elif op == "dup_doc":
            docs.insert(d, copy.deepcopy(docs[d]))
        elif op == "drop_doc":
            docs.pop(d)
    text = yaml.safe_dump_all(
        docs,
        sort_keys=draw(st.booleans()),
        allow_unicode=draw(st.booleans()),
        default_flow_style=draw(st.sampled_from([False, None, True])),
    )
    return name, text.encode("utf-8")


@FUZZ
@given(structural_mutant())
def test_structural_mutations_become_positioned_diagnostics(mutant: tuple[str, bytes]) -> None:
    name, data = mutant
    check_folder(demo_with(name, data))


# --- (c) YAML-ish text from tokens -------------------------------------------------------------

TOKENS = [
    ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "?", "? ", "|", "|-", ">", ">+", "#", "%YAML 1.2\n",
    "&a ", "&b ", "*a", "*b", "*zz", "!tag ", "!", "!!str ", "!!seq ", "!!null ", "!<x> ", "!!python/object:os.system ",
    "!!binary ", "<<: *a", "---", "---\n", "...\n", "\n", "\n  ", "\n    ", "\n- ", "\t", " ", "  ", '"', "'",
    "\\", "\\u", "\\x", "\\U0001F600", "é", "ß", "😀", "\u2028", "\u0085", "\ufeff", "\u200b", "\x00", "\x7f",
    "\r\n", "\r", "~", "null", "true", "False", "yes", "0x1F", "0o17", "-0", "1e999", ".nan", "-.inf", "12",
    "3.5", "apiVersion", "kind", "metadata", "name", "spec", "type", "config", "Config", "Dataset",
    "FineTuningJob", "ftctl/v1", "lora_config", "r", "x", "a",
]
HEADERS = [
    "",
    "apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: fz}\nspec:\n  type: lora_config\n  config:\n    ",
    "apiVersion: ftctl/v1\nkind: Dataset\nmetadata:\n  name: fz\nspec:\n  ",
    "apiVersion: ftctl/v1\nkind: FineTuningJob\nmetadata: {name: fz}\nspec: ",
    "apiVersion: ftctl/v1\nkind: Prompt\nmetadata: {name: fz}\nspec: {dataset: demo-tickets, prompt_template: ",
    "---\n",
]


@st.composite
def token_text(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    parts = draw(st.lists(st.sampled_from(TOKENS) | st.text(max_size=4), min_size=1, max_size=60))
    return (header + "".join(parts)).encode("utf-8")


@FUZZ
@given(token_text())
def test_token_soup_becomes_positioned_diagnostics(data: bytes) -> None:
    check_folder({"fuzz.yaml": data, "resources.yaml": DEMO_FILES["resources.yaml"]})


# --- the real CLI on nasty inputs --------------------------------------------------------------

HEADER = "apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: bomb}\nspec:\n  type: lora_config\n  config:\n"


def billion_laughs(levels: int = 9, indent: str = "") -> str:
    lines = [indent + 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [indent + f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _big_valid_file(size: int) -> bytes:
    block = DEMO_FILES["configs.yaml"] + b"\n---\n"
    return block * (size // len(block) + 1)


NASTY: dict[str, bytes] = {
    "billion-laughs": billion_laughs().encode(),
    "billion-laughs-in-config": (HEADER + billion_laughs(indent="    ")).encode(),
    "recursive-alias": b"apiVersion: ftctl/v1\nkind: Config\nmetadata: &m {name: *m}\nspec: &s [*s]\n",
    "nested-flow-10k": b"[" * 10_000 + b"]" * 10_000 + b"\n",
    "nested-flow-500": b"[" * 500 + b"]" * 500 + b"\n",
    "nested-block-200": "".join("  " * i + "- \n" for i in range(200)).encode(),
    "nested-map-in-config-1k": (HEADER + "    r: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n").encode(),
    "file-9mb": _big_valid_file(9 * 1024 * 1024),
    "nul-byte": b"apiVersion: ftctl/v1\nkind: Config\x00\nmetadata: {name: x}\n",
    "invalid-utf8": b"apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: caf\xe9}\n",
    "encoded-lone-surrogate": b"apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: \xed\xa0\x80}\n",
    "escaped-lone-surrogate": b'apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: "\\ud800"}\n',
    "utf16-with-bom": "apiVersion: ftctl/v1\nkind: Config\n".encode("utf-16"),
    "tab-indented": b"apiVersion: ftctl/v1\nkind: Config\nmetadata:\n\tname: x\nspec:\n\ttype: lora_config\n",
    "python-object-tag": b"apiVersion: ftctl/v1\nkind: !!python/object/apply:os.system ['touch /tmp/ftctl-pwned']\n",
    "python-name-tag": b"apiVersion: ftctl/v1\nkind: Config\nmetadata: {name: !!python/name:os.system }\n",
    "empty-file": b"",
    "bom-only": b"\xef\xbb\xbf",
    "comments-only": b"# nothing here\n# at all\n",
    "ten-thousand-empty-docs": b"---\n" * 10_000,
    "one-mb-key": b"k" * 1_000_000 + b": v\n",
    "crlf-and-lone-cr": DEMO_FILES["configs.yaml"].replace(b"\n", b"\r\n")[:400] + b"\rkind: x\r",
    "unterminated-quote": b'apiVersion: ftctl/v1\nkind: "Config\nmetadata: {name: x}\n',
    "directive-garbage": b"%YAML 9.9\n%TAGX\n--- !<tag:x> a\n",
}


def run_cli(folder: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "FTCTL_DEBUG"}
    return subprocess.run(
        [str(FTCTL), "validate", "--offline", folder],
        capture_output=True,
        timeout=CLI_LIMIT_S,
        env=env,
        check=False,
    )


def check_cli(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="ftctl-nasty-") as tmp:
        Path(tmp, f"{name}.yaml").write_bytes(data)
        start = time.monotonic()
        proc = run_cli(tmp)
        elapsed = time.monotonic() - start
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in (0, 1), f"exit {proc.returncode}; stderr: {stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "internal error" not in stderr, stderr[-2000:]
    assert elapsed < CLI_LIMIT_S
    assert proc.stdout.rstrip().splitlines()[-1].startswith((b"valid:", b"invalid:")), proc.stdout[-500:]


pytestmark_cli = pytest.mark.skipif(not FTCTL.exists(), reason="needs .venv/bin/ftctl (make install)")


@pytestmark_cli
@pytest.mark.parametrize("name", sorted(NASTY))
def test_cli_survives_nasty_input(name: str) -> None:
    check_cli(name, NASTY[name])
    assert not os.path.exists("/tmp/ftctl-pwned")


# --- regressions: inputs these fuzzers once found to break the loader ----------------------------

REGRESSION_INPUTS = [
    pytest.param(b"a: !!int foo\n", id="int-tag-on-word"),
    pytest.param(b"a: !!int\n", id="int-tag-on-empty"),
    pytest.param(b"a: !!float foo\n", id="float-tag-on-word"),
    pytest.param(b"a: !!float\n", id="float-tag-on-empty"),
    pytest.param(b"a: !!bool maybe\n", id="bool-tag-on-word"),
    pytest.param(b"a: !!map foo\n", id="map-tag-on-scalar"),
    pytest.param(b"a: !!map [1, 2]\n", id="map-tag-on-sequence"),
    pytest.param((HEADER + "    r: " + "1" * 4301 + "\n").encode(), id="int-4301-digits"),
    # aliases are checked even when a later document fails to parse
    pytest.param((HEADER + "    r: &a [*a]\n---\n[\n").encode(), id="recursive-alias-then-syntax-error"),
    # a clean parse nested past what json.dump (the parse cache) can write
    pytest.param(b"[" * 3000 + b"]" * 3000 + b"\n", id="flow-seq-3k-parse-cache"),
]


@pytest.mark.parametrize("data", REGRESSION_INPUTS)
def test_constructor_errors_become_diagnostics(data: bytes) -> None:
    check_folder({"bug.yaml": data})


def test_alias_bomb_before_a_syntax_error_is_refused_quickly() -> None:
    data = (HEADER + billion_laughs(indent="    ") + "---\n[\n").encode()
    check_folder({"bug.yaml": data}, limit_s=3.0)


@pytestmark_cli
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000 + b"\n", id="flow-seq-100k"),
        pytest.param(b"[" * 100_000 + b"\n", id="flow-seq-100k-unclosed"),
        pytest.param(b"{a: " * 100_000 + b"1" + b"}" * 100_000 + b"\n", id="flow-map-100k"),
        # block nesting needs no brackets: "- - - ... x" is a sequence 100,000 deep on one line
        pytest.param(b"- " * 100_000 + b"x\n", id="compact-block-seq-100k"),
        # ways past a guard that reads the text rather than the parse (each nests 30,000 deep)
        pytest.param(b"? " * 30_000 + b"x\n", id="compact-explicit-keys-30k"),
        pytest.param(b"- ? " * 15_000 + b"x\n", id="compact-seq-and-keys-30k"),
        pytest.param(b"? x\n: " + b"- " * 30_000 + b"x\n", id="compact-seq-after-colon-30k"),
        pytest.param(b"['x]', " * 30_000 + b"1" + b"]" * 30_000 + b"\n", id="flow-quoted-brackets-30k"),
        pytest.param(b'["]", ' * 30_000 + b"1" + b"]" * 30_000 + b"\n", id="flow-dquoted-brackets-30k"),
        pytest.param(b"[ # ]\n" * 30_000 + b"1" + b"]" * 30_000 + b"\n", id="flow-commented-brackets-30k"),
    ],
)
def test_deep_flow_nesting_is_refused_before_libyaml_recurses(data: bytes) -> None:
    check_cli("deep", data)


def test_depth_built_from_aliases_is_limited() -> None:
    chain = "    a0: &a0 1\n" + "".join(f"    a{i}: &a{i}\n    - *a{i - 1}\n" for i in range(1, 100))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "deep.yaml").write_text(HEADER + chain, encoding="utf-8")
        report = validate([tmp], offline=True, environ={})
    assert "LD-011" in {d.code for d in report.diagnostics}


def test_alias_limit_points_at_the_document_that_expands() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bomb.yaml").write_text("a: 1\n---\n" + billion_laughs(), encoding="utf-8")
        report = validate([tmp], offline=True, environ={})
    (ld005,) = [d for d in report.diagnostics if d.code == "LD-005"]
    assert ld005.location is not None and ld005.location.line == 3  # the second document starts there
