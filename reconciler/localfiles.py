"""Gathering `LocalFacts`: which paths the manifests name exist, the columns of local datasets, and
the family of local models.

The I/O edge for rules that concern the local disk. Every file it reads goes through
`safeio.ReadRoots` (inside the project root or a read root, a regular file, a bounded read); a
path it refuses carries a `Refusal` in its `PathFact` and nothing of it is read. Reads each
distinct path once; reads whole dataset files only to count rows, and only when they are small
enough (larger ones: their first MiB, for the columns).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import replace

from reconciler.facts import LocalFacts, PathFact, Refusal, TableFact, model_family, parameter_count
from reconciler.manifests.loader import Manifest
from reconciler.models import Adapter, Dataset, FineTuningJob, Model
from reconciler.safeio import NOT_REGULAR, ReadRoots, UnsafePathError, read_checked

MAX_COUNTED_BYTES = 64 * 1024 * 1024
HEAD_BYTES = 1024 * 1024  # of a dataset too large to count: enough for its columns
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a model's config.json is a few KiB; a bigger one is not read
READ, ADAPTER, PROBE = "read", "adapter", "probe"  # what ftctl does with a path: PROBE only checks it exists


def gather_facts(manifests: Iterable[Manifest], *, roots: ReadRoots) -> LocalFacts:
    paths: dict[str, PathFact] = {}
    tables: dict[str, TableFact] = {}
    families: dict[str, str] = {}
    parameters: dict[str, int] = {}
    seen_models: set[str] = set()
    for m in manifests:
        for path, use in _paths_of(m):
            if path not in paths:
                paths[path] = probe_path(path, None if use == PROBE else roots, adapter=use == ADAPTER)
        table = _table_of(m)
        if table is not None and table[0] not in tables and paths[table[0]].is_file:
            tables[table[0]] = read_table(table[0], table[1], roots=roots)
        model_dir = _model_dir_of(m)
        if model_dir is not None and model_dir not in seen_models and paths[model_dir].is_dir:
            seen_models.add(model_dir)
            try:
                config = read_model_config(model_dir, roots=roots)
            except UnsafePathError as exc:
                paths[model_dir] = replace(paths[model_dir], refusal=Refusal(exc.code, str(exc)))
                continue
            if (family := model_family(config)) is not None:
                families[model_dir] = family
            if (count := parameter_count(config)) is not None:
                parameters[model_dir] = count
    return LocalFacts(paths, tables, families, parameters)


def _paths_of(m: Manifest) -> list[tuple[str, str]]:
    res = m.resource
    out: list[tuple[str, str]] = []
    if (isinstance(res, Dataset) and res.spec.location and res.spec.type != "huggingface") or (isinstance(res, Model) and res.spec.location):
        out.append((m.path(res.spec.location), READ))
    elif isinstance(res, Adapter) and res.spec.location:
        out.append((m.path(res.spec.location), ADAPTER))
    elif isinstance(res, FineTuningJob):  # written and run by the job, never read here
        out.extend((m.path(p), PROBE) for p in (res.spec.out_dir, res.spec.user_script) if p)
    return out


def _table_of(m: Manifest) -> tuple[str, str] | None:
    res = m.resource
    if isinstance(res, Dataset) and res.spec.location and res.spec.type in ("project_csv", "project_json", "project_jsonl"):
        return m.path(res.spec.location), res.spec.type
    return None


def _model_dir_of(m: Manifest) -> str | None:
    res = m.resource
    if isinstance(res, Model) and res.spec.type == "project" and res.spec.location:
        return m.path(res.spec.location)
    return None


def read_model_family(model_dir: str, *, roots: ReadRoots) -> str | None:
    """`architectures[0]` of `<model_dir>/config.json`, as the Studio reads it with AutoConfig; None
    when the file is missing, unreadable, not JSON, or names no architecture. UnsafePathError when
    it is not a regular file inside the roots, or larger than MAX_CONFIG_BYTES."""
    return model_family(read_model_config(model_dir, roots=roots))


def read_model_config(model_dir: str, *, roots: ReadRoots) -> object:
    """`<model_dir>/config.json` parsed (None when missing, unreadable or not JSON); UnsafePathError
    as `read_model_family`."""
    try:
        return json.loads(roots.read(os.path.join(model_dir, "config.json"), limit=MAX_CONFIG_BYTES))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def probe_path(path: str, roots: ReadRoots | None, *, adapter: bool = False) -> PathFact:
    """What is at `path`; with `roots`, also whether ftctl may read it (inside the roots; a file
    that is not a folder must be regular; an adapter folder's adapter_config.json too)."""
    try:
        real = roots.inspect_dir(path) if roots is not None else path
        info = os.stat(real)
    except UnsafePathError as exc:
        return PathFact(exists=True, refusal=Refusal(exc.code, str(exc)))
    except OSError:
        return PathFact(exists=False)
    is_dir = stat.S_ISDIR(info.st_mode)
    if roots is not None and not is_dir and not stat.S_ISREG(info.st_mode):
        return PathFact(exists=True, refusal=Refusal(NOT_REGULAR, _not_regular(path, roots)))
    has_config, refusal = (_has_adapter_config(path, roots) if adapter and is_dir and roots is not None else (False, None))
    return PathFact(exists=True, is_dir=is_dir, is_file=stat.S_ISREG(info.st_mode), has_adapter_config=has_config,
                    refusal=refusal)


def _not_regular(path: str, roots: ReadRoots) -> str:
    try:
        roots.inspect_file(path)
    except UnsafePathError as exc:
        return str(exc)
    return f"{path} is not a regular file"  # it changed since: still refused


def _has_adapter_config(folder: str, roots: ReadRoots) -> tuple[bool, Refusal | None]:
    try:
        roots.inspect_file(os.path.join(folder, "adapter_config.json"))
    except UnsafePathError as exc:
        return False, Refusal(exc.code, str(exc))
    except OSError:
        return False, None
    return True, None


def read_table(path: str, dataset_type: str, *, roots: ReadRoots) -> TableFact:
    """Columns the way the Studio extracts them (CSV header, first JSON object, first JSONL line),
    and the row count of a file of at most MAX_COUNTED_BYTES."""
    try:
        text, counted = _read_text(path, roots)
        if dataset_type == "project_csv":
            return _csv_table(text, counted)
        if dataset_type == "project_json":
            return _json_table(text, counted)
        return _jsonl_table(text, counted)
    except UnsafePathError as exc:
        return TableFact(error=str(exc))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        return TableFact(error=str(exc).splitlines()[0][:200] or type(exc).__name__)


def _read_text(path: str, roots: ReadRoots) -> tuple[str, bool]:
    """The whole text of a file of at most MAX_COUNTED_BYTES (True), else its first HEAD_BYTES
    up to the last line break in them (False)."""
    real, info = roots.inspect_file(path)
    if info.st_size <= MAX_COUNTED_BYTES:
        data = read_checked(path, real, info, limit=MAX_COUNTED_BYTES + 1, head=True)
        if len(data) <= MAX_COUNTED_BYTES:
            return data.decode("utf-8-sig"), True
    data = read_checked(path, real, info, limit=HEAD_BYTES, head=True)
    return data[: data.rfind(b"\n") + 1 or len(data)].decode("utf-8-sig", errors="ignore"), False


def _csv_table(text: str, counted: bool) -> TableFact:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return TableFact(error="the file is empty (no header row)")
    rows, chars = 0, 0
    for row in reader:
        if row:
            rows, chars = rows + 1, chars + sum(len(value) for value in row)
    return TableFact(tuple(header), rows if counted else None, mean_chars=chars / rows if rows else None)


def _json_table(text: str, counted: bool) -> TableFact:
    if counted:
        data = json.loads(text)
    else:  # only the head: the first object of the array
        start = text.lstrip()
        first = json.JSONDecoder().raw_decode(start[1:].lstrip())[0] if start.startswith("[") else None
        data = [first] if first is not None else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return TableFact(error="expected a non-empty JSON array of objects")
    return TableFact(tuple(str(k) for k in data[0]), len(data) if counted else None, mean_chars=_mean_chars(data))


def _jsonl_table(text: str, counted: bool) -> TableFact:
    lines = (line for line in io.StringIO(text) if line.strip())
    first_line = next(lines, None)
    first = json.loads(first_line) if first_line is not None else None
    if not isinstance(first, dict) or first_line is None:
        return TableFact(error="the first line is not a JSON object")
    rows, chars = 1, len(first_line.strip())  # a line's text: its values with their keys and quoting (not parsed)
    for line in lines:
        rows += 1
        chars += len(line.strip())
    return TableFact(tuple(str(k) for k in first), rows if counted else None, mean_chars=chars / rows)


def _chars(row: object) -> int:
    """Characters of a JSON row's values as text (what a prompt template puts in)."""
    if isinstance(row, dict):
        return sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in row.values())
    return len(json.dumps(row))


def _mean_chars(rows: list[object]) -> float | None:
    return sum(_chars(r) for r in rows) / len(rows) if rows else None
