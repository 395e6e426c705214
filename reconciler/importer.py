"""Manifests for Studio rows: what `ftctl import` and `ftctl export-manifests` write.

Pure: a `Snapshot` in, manifest documents (plain dicts) out, grouped by file. Each spec is read
from the row by its kind's binding (`reconciler.kinds.import_spec`), the same declaration that
renders manifests into rows, so each manifest renders back to exactly the row it came from
(local paths re-expressed relative to the output folder, features and config bodies spelled
out; for runs outside ftctl, their CML job ids, result folders and row ids too), and carries the `ftctl.io/store-id` annotation so that a
plan adopts that very row instead of creating another. References name the other manifests and
ftctl's managed objects (by their manifest names, also when only unmanaged rows are written; a
managed training's current adapter by the name the job trains it as); only a row no manifest
names (a managed job's older adapter version) is referenced by `{id: ...}`. A secret a row holds is
never written: a reference to a variable named after the object and key takes its place
(`{from_env: CONFIG_NAME_HUB_TOKEN}`), and a secret no reference can replace refuses the export.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.adoption import current_products, owned_rows
from reconciler.kinds import BY_TABLE, TABLE_ORDER, ImportContext, config, import_spec
from reconciler.live import Snapshot
from reconciler.models.base import API_VERSION
from reconciler.planner import STORE_ID_ANNOTATION
from reconciler.records import Row
from reconciler.secrets import REFERENCE_KEY, holds_secret, is_literal_secret, references

FILES = {
    "Dataset": "datasets.yaml", "Model": "models.yaml", "Prompt": "prompts.yaml", "Adapter": "adapters.yaml",
    "Config": "configs.yaml", "FineTuningJob": "fine-tuning-jobs.yaml", "EvaluationJob": "evaluation-jobs.yaml",
}
ORDER = TABLE_ORDER


@dataclass(frozen=True)
class Layout:
    """Where the manifests go, relative to the project root the store's paths are relative to."""

    root: str  # absolute project root
    out_dir: str  # absolute folder the manifest files are written to


def manifests_for(snapshot: Snapshot, *, layout: Layout, unmanaged_only: bool) -> dict[str, list[dict[str, Any]]]:
    """File name -> manifest documents, for every Studio row (or only those ftctl does not manage)."""
    managed_ids = {r.store_id: (r.kind, r.name) for r in snapshot.managed.values()}
    owned = owned_rows(snapshot)
    names = _names(snapshot, managed_ids, owned)
    files: dict[str, list[dict[str, Any]]] = {}
    for table in ORDER:
        for store_id, row_group in _objects(snapshot, table):
            if store_id not in names or store_id in owned or (unmanaged_only and store_id in managed_ids):
                continue  # not written: a managed job's history (`adoption.owned_rows`), or managed already
            kind, name = names[store_id]
            context = ImportContext(names, root=layout.root, out_dir=layout.out_dir, name=name)
            history = store_id not in managed_ids  # a run outside ftctl: its job ids and result folders are kept
            spec = _named_secrets(kind, name, import_spec(BY_TABLE[table], row_group, context, history=history))
            doc = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "annotations": {STORE_ID_ANNOTATION: store_id}}, "spec": spec}
            files.setdefault(FILES[kind], []).append(doc)
    return files


def variables_to_set(files: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The environment variables the manifests' secret references name (jobs need them set)."""
    return sorted(set().union(*(references(doc["spec"]) for docs in files.values() for doc in docs)))


def unnamed_secrets(files: dict[str, list[dict[str, Any]]]) -> list[str]:
    """`Kind/name` of each manifest that still holds a secret no reference can replace (a token in
    text, a URL with credentials): such a manifest is never written."""
    return [f"{doc['kind']}/{doc['metadata']['name']}" for docs in files.values() for doc in docs if holds_secret(doc["spec"])]


def _named_secrets(kind: str, name: str, spec: Any, path: tuple[str, ...] = ()) -> Any:
    """The spec with each literal secret (a Studio row's token) replaced by a reference to a variable
    named after the object and the key: the manifest names the secret, never holds it."""
    if isinstance(spec, dict):
        return {k: {REFERENCE_KEY: _variable(kind, name, (*path, str(k)))} if is_literal_secret(k, v)
                else _named_secrets(kind, name, v, (*path, str(k))) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_named_secrets(kind, name, v, (*path, str(i))) for i, v in enumerate(spec)]
    return spec


def _variable(kind: str, name: str, path: tuple[str, ...]) -> str:
    words = [kind, name, *(p for p in path if p != "config")]
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(words).upper()).strip("_")


def to_yaml(documents: list[dict[str, Any]], *, header: str) -> str:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=120) for d in documents)
    return f"# {header}\n{body}"


def _objects(snapshot: Snapshot, table: str) -> Iterator[tuple[str, list[Row]]]:
    rows = sorted(snapshot.rows.get(table, {}).values(), key=lambda r: str(r["id"]))
    binding = BY_TABLE[table]
    if not binding.fan_out:
        yield from ((str(r["id"]), [r]) for r in rows)
        return
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row.get(binding.owner_column) or row["id"]), []).append(row)
    yield from sorted(groups.items())


def _names(snapshot: Snapshot, managed: dict[str, tuple[str, str]], owned: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Store id -> (kind, name) of every object: the manifest name of a managed one (references to
    it name it, whether or not it is exported), the row's own name (numbered on a clash) of the
    rest, and, for the current adapter a managed training registered, the name its job trains it
    as (a reference the job resolves: `adoption.owned_rows` rows are never exported themselves)."""
    out: dict[str, tuple[str, str]] = {**managed, **current_products(snapshot)}
    taken: set[tuple[str, str]] = set(out.values())
    for table in ORDER:
        kind = BY_TABLE[table].kind
        for store_id, rows in _objects(snapshot, table):
            if store_id in out or store_id in owned:
                continue  # managed, or a managed job's earlier run or older adapter version: the job's history
            base = _base_name(table, rows[0], store_id)
            name, n = base, 2
            while (kind, name) in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add((kind, name))
            out[store_id] = (kind, name)
    return out


def _base_name(table: str, row: Row, store_id: str) -> str:
    if table == "configs":
        return f"{config.kind_of(row) or 'config'}-{store_id[:8]}"
    if table == "evaluation_jobs":
        return f"evaluation-{store_id[:8]}"
    value = BY_TABLE[table].name_of(row).strip()
    return value or f"{BY_TABLE[table].kind.lower()}-{store_id[:8]}"
