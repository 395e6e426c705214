"""Gathering `LocalFacts`: which paths the manifests name exist, the columns of local datasets, and
the family of local models.

The I/O edge for rules that concern the local disk. Reads each distinct path once; reads whole
dataset files only to count rows, and only when they are small enough.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable

from reconciler.facts import LocalFacts, PathFact, TableFact, model_family
from reconciler.manifests.loader import Manifest
from reconciler.models import Adapter, Dataset, FineTuningJob, Model

MAX_COUNTED_BYTES = 64 * 1024 * 1024
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a model's config.json is a few KiB; a bigger one is not read


def gather_facts(manifests: Iterable[Manifest]) -> LocalFacts:
    paths: dict[str, PathFact] = {}
    tables: dict[str, TableFact] = {}
    families: dict[str, str] = {}
    seen_models: set[str] = set()
    for m in manifests:
        for path, want_adapter in _paths_of(m):
            if path not in paths:
                paths[path] = probe_path(path, adapter=want_adapter)
        table = _table_of(m)
        if table is not None and table[0] not in tables and paths[table[0]].is_file:
            tables[table[0]] = read_table(table[0], table[1])
        model_dir = _model_dir_of(m)
        if model_dir is not None and model_dir not in seen_models:
            seen_models.add(model_dir)
            family = read_model_family(model_dir) if paths[model_dir].is_dir else None
            if family is not None:
                families[model_dir] = family
    return LocalFacts(paths, tables, families)


def _paths_of(m: Manifest) -> list[tuple[str, bool]]:
    res = m.resource
    out: list[tuple[str, bool]] = []
    if (isinstance(res, Dataset) and res.spec.location and res.spec.type != "huggingface") or (isinstance(res, Model) and res.spec.location):
        out.append((m.path(res.spec.location), False))
    elif isinstance(res, Adapter) and res.spec.location:
        out.append((m.path(res.spec.location), True))
    elif isinstance(res, FineTuningJob):
        out.extend((m.path(p), False) for p in (res.spec.out_dir, res.spec.user_script) if p)
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


def read_model_family(model_dir: str) -> str | None:
    """`architectures[0]` of `<model_dir>/config.json`, as the Studio reads it with AutoConfig; None
    when the file is missing, unreadable, not JSON, or names no architecture."""
    path = os.path.join(model_dir, "config.json")
    try:
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            return None
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return model_family(config)


def probe_path(path: str, *, adapter: bool = False) -> PathFact:
    if not os.path.exists(path):
        return PathFact(exists=False)
    is_dir = os.path.isdir(path)
    return PathFact(
        exists=True,
        is_dir=is_dir,
        is_file=os.path.isfile(path),
        has_adapter_config=adapter and is_dir and os.path.isfile(os.path.join(path, "adapter_config.json")),
    )


def read_table(path: str, dataset_type: str) -> TableFact:
    """Columns the way the Studio extracts them (CSV header, first JSON object, first JSONL line)."""
    count = os.path.getsize(path) <= MAX_COUNTED_BYTES
    try:
        if dataset_type == "project_csv":
            return _csv_table(path, count)
        if dataset_type == "project_json":
            return _json_table(path)
        return _jsonl_table(path, count)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        return TableFact(error=str(exc).splitlines()[0][:200] or type(exc).__name__)


def _csv_table(path: str, count: bool) -> TableFact:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            return TableFact(error="the file is empty (no header row)")
        rows = sum(1 for row in reader if row) if count else None
    return TableFact(tuple(header), rows)


def _json_table(path: str) -> TableFact:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return TableFact(error="expected a non-empty JSON array of objects")
    return TableFact(tuple(str(k) for k in data[0]), len(data))


def _jsonl_table(path: str, count: bool) -> TableFact:
    with open(path, encoding="utf-8") as handle:
        first = None
        rows = 0
        for line in handle:
            if not line.strip():
                continue
            if first is None:
                first = json.loads(line)
            rows += 1
            if not count:
                break
    if not isinstance(first, dict):
        return TableFact(error="the first line is not a JSON object")
    return TableFact(tuple(str(k) for k in first), rows if count else None)
