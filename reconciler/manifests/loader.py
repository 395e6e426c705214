"""Loading manifests: files and folders in, `Manifest` values and diagnostics out.

Fast path first: libyaml parses without positions, pydantic validates each document. Diagnostics
carry a field path; `resolve_positions` re-reads, with marks, only the files that have something to
report (perf.md: positions cost 2-3x the parse). Nothing here raises for bad input: every problem
becomes a diagnostic naming the file, and where possible the line and column. A document with
schema errors is still checked by the rules, as far as it parsed (`salvage`), so errors come at once.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath, Location
from reconciler.manifests import yamlsafe
from reconciler.manifests.cache import ParseCache, digest
from reconciler.manifests.events import compose_positions, index_at
from reconciler.manifests.salvage import salvage
from reconciler.manifests.schema_errors import schema_diagnostics
from reconciler.models import API_VERSION, MODELS, Resource
from reconciler.safeio import TOO_LARGE, ReadRoots, UnsafePathError, project_root, read_checked

MAX_FILE_BYTES = 8 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Manifest:
    """One validated document: the resource, where it came from, and the folder paths resolve from.
    A document with schema errors gives a salvaged manifest (`LoadResult.salvaged`): the fields
    that failed are left out of `resource` and listed in `unknown`."""

    resource: Resource
    location: Location
    base_dir: str
    unknown: frozenset[FieldPath] = frozenset()

    # Read for every object many times over (pairing, graph, rules): computed once each.
    @cached_property
    def kind(self) -> str:
        return self.resource.KIND

    @cached_property
    def name(self) -> str:
        return self.resource.name

    @cached_property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    def at(self, *path: str | int) -> Location:
        return self.location.at(*path)

    def path(self, relative: str) -> str:
        """A path from the manifest, resolved against the manifest file's folder."""
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(relative)))

    def stored_path(self, relative: str, root: str) -> str:
        """A path from the manifest as the Studio stores it: relative to the project root when
        inside it (the job inputs' `name_or_path`), else as resolved."""
        path = self.path(relative)
        base = root.rstrip("/")
        return path[len(base) + 1:] if base and path.startswith(base + "/") else path


class SourceTexts(dict[str, str]):
    """Manifest texts by display path: those the loader read, and on first use those it did not
    need to (`deferred`: unchanged files the parse cache answered by their stat signature, read
    through the same `roots`). Any other path, or a deferred file that cannot be read now, is
    missing (KeyError)."""

    def __init__(self, roots: ReadRoots | None = None) -> None:
        super().__init__()
        self.deferred: set[str] = set()
        self.roots = roots

    def __missing__(self, path: str) -> str:
        if path not in self.deferred or self.roots is None:
            raise KeyError(path)
        try:
            text = _decoded(self.roots.read(path, limit=MAX_FILE_BYTES))
        except (OSError, UnicodeDecodeError, UnsafePathError):
            raise KeyError(path) from None
        self[path] = text
        return text


@dataclass
class LoadResult:
    manifests: list[Manifest] = field(default_factory=list)
    # Documents with schema errors, as far as they parsed: checked by the rules, never planned.
    salvaged: list[Manifest] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: SourceTexts = field(default_factory=SourceTexts)  # display path -> text
    files: list[str] = field(default_factory=list)
    documents: int = 0  # non-empty YAML documents read, valid or not


def load_paths(paths: Sequence[str], *, cache: ParseCache | None = None, roots: ReadRoots | None = None) -> LoadResult:
    """Every manifest in `paths`; each file is read through `roots` (default: the project root of
    `paths` alone), so a manifest that is a symlink out of it, a FIFO or a device is refused."""
    roots = roots if roots is not None else ReadRoots.of(project_root(paths))
    result = LoadResult(sources=SourceTexts(roots))
    for path, walked in expand_paths(paths, result.diagnostics):
        _load_file(path, result, cache, walked=walked, roots=roots)
    if cache is not None:
        cache.save()
    if not result.files and all(d.code == NOT_A_MANIFEST for d in result.diagnostics):
        result.diagnostics.append(make_diag("LD-012", f"no manifests found in {', '.join(paths)}"))
    return result


def expand_paths(paths: Sequence[str], diagnostics: list[Diagnostic]) -> list[tuple[str, bool]]:
    """(file, found by walking a folder): files as given; folders walked in sorted order for
    *.yaml/*.yml in any letter case (*.YAML too), skipping hidden entries."""
    out: list[tuple[str, bool]] = []
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(
                    (os.path.normpath(os.path.join(folder, f)), True)
                    for f in sorted(files)
                    if f.lower().endswith(YAML_SUFFIXES) and not f.startswith(".")
                )
        elif os.path.isfile(path):
            out.append((os.path.normpath(path), False))
        else:
            diagnostics.append(make_diag("LD-008", f"{path}: no such file or folder", location=Location(path)))
    return out


NOT_A_MANIFEST = "LD-013"


def _other_yaml(docs: list[Any]) -> bool:
    """YAML that is not trying to be a manifest: no document has an apiVersion or a kind (a CI
    workflow, an Axolotl config, a compose file kept beside the manifests)."""
    found = [d for d in docs if d is not None]
    return bool(found) and all(isinstance(d, dict) and "apiVersion" not in d and "kind" not in d for d in found)


def _load_file(path: str, result: LoadResult, cache: ParseCache | None, *, walked: bool, roots: ReadRoots) -> None:
    """Load one file's manifests into `result`. A file found by walking a folder that holds other
    YAML (`_other_yaml`) is skipped with an info (LD-013); one named on the command line is not."""
    checked = _inspect(path, roots, result.diagnostics)
    if checked is None:
        result.files.append(path)
        return
    real, stat = checked  # the parse cache's stat signature too: one stat per file
    unchanged = cache.unchanged(path, stat) if cache is not None else None
    if unchanged is not None:  # not even read: its text is read on demand (`SourceTexts`)
        if walked and _other_yaml(unchanged):
            result.diagnostics.append(_skipped(path))
            return
        result.files.append(path)
        result.sources.deferred.add(path)
        _add_documents(unchanged, path, result, check_depth=False)
        return
    text = _read_text(path, real, stat, result.diagnostics)
    if text is None:
        result.files.append(path)
        return
    result.sources[path] = text
    key = digest(text) if cache is not None else ""
    cached = cache.get(key) if cache is not None else None
    problems: list[yamlsafe.YamlProblem] = []
    error: Exception | None = None
    if cached is not None:
        docs = cached
    else:
        docs, problems, error = yamlsafe.load_documents(text)
        if cache is not None and not problems and error is None:
            cache.put(key, docs)
    # The depth check needs the text (aliases can build more nesting than the parser allowed): a
    # file with anchors is always read.
    check_depth = "&" in text
    if cache is not None and not check_depth:
        cache.remember(path, stat, key)
    if walked and not problems and error is None and _other_yaml(docs):
        result.diagnostics.append(_skipped(path))
        return
    result.files.append(path)
    for problem in problems:
        result.diagnostics.append(
            make_diag(problem.code, problem.message, location=Location(path, doc=problem.doc, line=problem.line, col=problem.col))
        )
    if error is not None:
        result.diagnostics.append(_syntax_diagnostic(path, error, text))
    _add_documents(docs, path, result, check_depth=check_depth)


def _skipped(path: str) -> Diagnostic:
    return make_diag(NOT_A_MANIFEST, f"{path} is not an ftctl manifest (no apiVersion or kind): skipped",
                     location=Location(path, line=1, col=1))


def _add_documents(docs: list[Any], path: str, result: LoadResult, *, check_depth: bool) -> None:
    base_dir = os.path.dirname(os.path.abspath(path))
    for index, doc in enumerate(docs):
        if doc is not None:
            result.documents += 1
            _load_document(doc, Location(path, doc=index), base_dir, result, check_depth=check_depth)


def _inspect(path: str, roots: ReadRoots, diagnostics: list[Diagnostic]) -> tuple[str, os.stat_result] | None:
    """(real path, stat) of a manifest file ftctl may read, else None and a diagnostic saying why."""
    try:
        return roots.inspect_file(path)
    except UnsafePathError as exc:
        diagnostics.append(make_diag(exc.code, str(exc), location=Location(path)))
    except OSError as exc:
        diagnostics.append(make_diag("LD-008", f"cannot read {path}: {exc.strerror}", location=Location(path)))
    return None


def _read_text(path: str, real: str, stat: os.stat_result, diagnostics: list[Diagnostic]) -> str | None:
    try:
        data = read_checked(path, real, stat, limit=MAX_FILE_BYTES)
    except UnsafePathError as exc:
        too_large = exc.code == TOO_LARGE
        size = f"{stat.st_size:,} bytes" if stat.st_size > MAX_FILE_BYTES else "larger than its size says"
        summary = f"file is {size}; the limit is {MAX_FILE_BYTES:,}" if too_large else str(exc)
        diagnostics.append(make_diag("LD-006" if too_large else exc.code, summary, location=Location(path, line=1, col=1)))
        return None
    except OSError as exc:
        diagnostics.append(make_diag("LD-008", f"cannot read {path}: {exc.strerror}", location=Location(path)))
        return None
    try:
        return _decoded(data)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        diagnostics.append(
            make_diag(
                "LD-001",
                f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                location=Location(path, line=line, col=col),
            )
        )
        return None


def _decoded(data: bytes) -> str:
    return data.decode("utf-8").removeprefix("\ufeff")


def _syntax_diagnostic(path: str, error: Exception, text: str) -> Diagnostic:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line, col = yamlsafe.Lines(text).position(mark.index) if mark is not None else (1, 1)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    summary = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    hint = "Indent with spaces: YAML forbids tabs in indentation." if "tab" in problem else None
    return make_diag("LD-002", summary, location=Location(path, line=line, col=col), hint=hint)


def _load_document(doc: Any, location: Location, base_dir: str, result: LoadResult, *, check_depth: bool) -> None:
    out = result.diagnostics
    if not isinstance(doc, dict):
        out.append(make_diag("LD-007", f"document is a {type(doc).__name__}, not a mapping", location=location))
        return
    kind = doc.get("kind")
    name = doc["metadata"].get("name") if isinstance(doc.get("metadata"), dict) else None
    address = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else None
    api = doc.get("apiVersion")
    if api != API_VERSION:
        summary = "apiVersion is missing" if api is None else f"apiVersion {api!r} is not supported"
        out.append(make_diag("LD-009", summary, location=location.at("apiVersion") if api is not None else location, address=address))
        return
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        close = difflib.get_close_matches(str(kind), list(MODELS), n=1)
        hint = f"Did you mean {close[0]!r}?" if close else None
        summary = "kind is missing" if kind is None else f"unknown kind {kind!r}"
        out.append(make_diag("LD-010", summary, location=location.at("kind") if kind is not None else location, hint=hint))
        return
    if check_depth and yamlsafe.depth_exceeds(doc):
        out.append(make_diag("LD-011", location=location, address=address))
        return
    try:
        resource = model.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        out.extend(schema_diagnostics(model, errors, location, address or str(kind)))
        salvaged, unknown = salvage(model, doc, errors)
        if salvaged is not None:
            result.salvaged.append(Manifest(salvaged, location, base_dir, unknown=unknown))
        return
    result.manifests.append(Manifest(resource, location, base_dir))


def resolve_positions(diagnostics: list[Diagnostic], sources: Mapping[str, str]) -> list[Diagnostic]:
    """Fill in line and column for diagnostics that carry only a field path (`sources`: text by
    file; a `SourceTexts` reads files on demand).

    Each file with such a diagnostic is composed once, with marks; others are never re-read.
    """
    trees: dict[str, list[Any]] = {}
    lines: dict[str, yamlsafe.Lines] = {}  # each file's line starts, found once
    last_doc: dict[str, int] = {}  # compose each file only as far as its last diagnostic
    for diag in diagnostics:
        if diag.location is not None and not diag.location.line:
            last_doc[diag.location.file] = max(last_doc.get(diag.location.file, 0), diag.location.doc)
    out: list[Diagnostic] = []
    for diag in diagnostics:
        loc = diag.location
        text = _text_of(sources, loc.file) if loc is not None and not loc.line else None
        if loc is None or text is None:
            out.append(diag)
            continue
        if loc.file not in trees:
            trees[loc.file] = compose_positions(text, upto=last_doc[loc.file])
            lines[loc.file] = yamlsafe.Lines(text)
        docs = trees[loc.file]
        index = index_at(docs[loc.doc] if loc.doc < len(docs) else None, loc.path)
        if index is None:
            out.append(replace(diag, location=replace(loc, line=1, col=1)))
            continue
        line, col = lines[loc.file].position(index)
        out.append(replace(diag, location=replace(loc, line=line, col=col)))
    return out


def _text_of(sources: Mapping[str, str], file: str) -> str | None:
    try:
        return sources[file]
    except KeyError:
        return None  # not a manifest file, or unreadable now: the diagnostic keeps its field path
