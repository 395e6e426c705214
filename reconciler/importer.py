"""Manifests for Studio rows: what `ftctl import` and `ftctl export-manifests` write.

Pure: a `Snapshot` in, manifest documents (plain dicts) out, grouped by file. Each manifest renders
back to exactly the row it came from (local paths re-expressed relative to the output folder,
features and config bodies spelled out), and carries the `ftctl.io/store-id` annotation so that a
plan adopts that very row instead of creating another. References name the other manifests (or
ftctl's managed objects); rows not exported are referenced by `{id: ...}`. A secret a row holds is
never written: a reference to a variable named after the object and key takes its place
(`{from_env: CONFIG_NAME_HUB_TOKEN}`), and a secret no reference can replace refuses the export.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.live import TABLE_KIND, Snapshot
from reconciler.models.base import API_VERSION
from reconciler.planner import STORE_ID_ANNOTATION
from reconciler.records import Row, parsed_config
from reconciler.secrets import REFERENCE_KEY, holds_secret, is_literal_secret, references

FILES = {
    "Dataset": "datasets.yaml", "Model": "models.yaml", "Prompt": "prompts.yaml", "Adapter": "adapters.yaml",
    "Config": "configs.yaml", "FineTuningJob": "fine-tuning-jobs.yaml", "EvaluationJob": "evaluation-jobs.yaml",
}
ORDER = ("datasets", "models", "configs", "prompts", "fine_tuning_jobs", "adapters", "evaluation_jobs")


@dataclass(frozen=True)
class Layout:
    """Where the manifests go, relative to the project root the store's paths are relative to."""

    root: str  # absolute project root
    out_dir: str  # absolute folder the manifest files are written to


def manifests_for(snapshot: Snapshot, *, layout: Layout, unmanaged_only: bool) -> dict[str, list[dict[str, Any]]]:
    """File name -> manifest documents, for every Studio row (or only those ftctl does not manage)."""
    managed_ids = {r.store_id: (r.kind, r.name) for r in snapshot.managed.values()}
    names = _names(snapshot, managed_ids, unmanaged_only)
    files: dict[str, list[dict[str, Any]]] = {}
    for table in ORDER:
        for store_id, row_group in _objects(snapshot, table):
            if store_id not in names:
                continue
            kind, name = names[store_id]
            spec = _named_secrets(kind, name, _SPECS[table](row_group, names, layout))
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
    if table != "evaluation_jobs":
        yield from ((str(r["id"]), [r]) for r in rows)
        return
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row.get("parent_job_id") or row["id"]), []).append(row)
    yield from sorted(groups.items())


def _names(snapshot: Snapshot, managed: dict[str, tuple[str, str]], unmanaged_only: bool) -> dict[str, tuple[str, str]]:
    """Store id -> (kind, name) for every object exported, and for managed objects (references)."""
    out: dict[str, tuple[str, str]] = {}
    taken: set[tuple[str, str]] = set(managed.values())
    for table in ORDER:
        kind, name_column = TABLE_KIND[table]
        for store_id, rows in _objects(snapshot, table):
            if store_id in managed:
                if not unmanaged_only:
                    out[store_id] = managed[store_id]
                continue
            base = _base_name(table, rows[0], store_id, name_column)
            name, n = base, 2
            while (kind, name) in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add((kind, name))
            out[store_id] = (kind, name)
    return out


def _base_name(table: str, row: Row, store_id: str, name_column: str) -> str:
    if table == "configs":
        return f"{row.get('type') or 'config'}-{store_id[:8]}"
    if table == "evaluation_jobs":
        return f"evaluation-{store_id[:8]}"
    value = str(row.get(name_column) or "").strip()
    return value or f"{TABLE_KIND[table][0].lower()}-{store_id[:8]}"


def _ref(value: Any, names: dict[str, tuple[str, str]]) -> Any:
    if not value:
        return None
    return names[value][1] if value in names else {"id": str(value)}


def _path(value: Any, layout: Layout) -> str | None:
    if not value:
        return None
    absolute = value if os.path.isabs(value) else os.path.join(layout.root, value)
    return os.path.relpath(absolute, layout.out_dir) if not os.path.isabs(value) else str(value)


def _clean(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if v not in (None, "")}


def _dataset(rows: list[Row], _names: dict[str, tuple[str, str]], layout: Layout) -> dict[str, Any]:
    row = rows[0]
    features = parsed_config(str(row["features"])) if row.get("features") else None
    return _clean({
        "type": row.get("type"), "huggingface_name": row.get("huggingface_name"),
        "location": _path(row.get("location"), layout), "description": row.get("description"),
        "features": features if isinstance(features, list) else None,
    })


def _model(rows: list[Row], _names: dict[str, tuple[str, str]], layout: Layout) -> dict[str, Any]:
    row = rows[0]
    return _clean({
        "type": row.get("type"), "huggingface_model_name": row.get("huggingface_model_name"),
        "location": _path(row.get("location"), layout), "cml_registered_model_id": row.get("cml_registered_model_id"),
        "framework": row.get("framework"), "description": row.get("description"),
    })


def _adapter(rows: list[Row], names: dict[str, tuple[str, str]], layout: Layout) -> dict[str, Any]:
    row = rows[0]
    return _clean({
        "type": row.get("type"), "model": _ref(row.get("model_id"), names), "location": _path(row.get("location"), layout),
        "huggingface_name": row.get("huggingface_name"), "cml_registered_model_id": row.get("cml_registered_model_id"),
        "fine_tuning_job": _ref(row.get("fine_tuning_job_id"), names), "prompt": _ref(row.get("prompt_id"), names),
        "description": row.get("description"),
    })


def _prompt(rows: list[Row], names: dict[str, tuple[str, str]], _layout: Layout) -> dict[str, Any]:
    row = rows[0]
    return _clean({
        "dataset": _ref(row.get("dataset_id"), names), "prompt_template": row.get("prompt_template"),
        "input_template": row.get("input_template"), "completion_template": row.get("completion_template"),
        "description": row.get("description"),
    })


def _config(rows: list[Row], _names: dict[str, tuple[str, str]], _layout: Layout) -> dict[str, Any]:
    row = rows[0]
    body = parsed_config(str(row.get("config") or ""), yaml=row.get("type") == "axolotl")
    spec = _clean({"type": row.get("type"), "config": body, "model_family": row.get("model_family")})
    return {**spec, "description": row.get("description") or ""}  # '' kept: the default is the manifest name


def _snapshot(text: Any) -> Any:
    return json.loads(text) if text else None


def _fine_tuning_job(rows: list[Row], names: dict[str, tuple[str, str]], layout: Layout) -> dict[str, Any]:
    row = rows[0]
    resources = _clean({"cpu": row.get("num_cpu"), "memory": row.get("num_memory"), "gpu": row.get("num_gpu"),
                        "num_workers": row.get("num_workers"), "gpu_label_id": row.get("gpu_label_id")})
    return _clean({
        "framework_type": row.get("framework_type"), "base_model": _ref(row.get("base_model_id"), names),
        "dataset": _ref(row.get("dataset_id"), names), "prompt": _ref(row.get("prompt_id"), names),
        "adapter_name": row.get("adapter_name"), "out_dir": _path(row.get("out_dir"), layout),
        "num_epochs": row.get("num_epochs"), "learning_rate": row.get("learning_rate"),
        "dataset_fraction": row.get("dataset_fraction"), "train_test_split": row.get("train_test_split"),
        "lora_config": _snapshot(row.get("lora_config")), "bnb_config": _snapshot(row.get("model_bnb_config")),
        "adapter_bnb_config": _snapshot(row.get("adapter_bnb_config")),
        "training_arguments": _snapshot(row.get("training_arguments_config")),
        "axolotl_config": _ref(row.get("axolotl_config_id"), names), "user_script": _path(row.get("user_script"), layout),
        "user_config": _ref(row.get("user_config_id"), names), "resources": resources,
    })


def _evaluation_job(rows: list[Row], names: dict[str, tuple[str, str]], _layout: Layout) -> dict[str, Any]:
    row = rows[0]
    combos = [_clean({"model": _ref(r.get("base_model_id"), names), "adapter": _ref(r.get("adapter_id"), names)}) for r in rows]
    return _clean({
        "type": row.get("type") or "mlflow", "combinations": combos, "dataset": _ref(row.get("dataset_id"), names),
        "prompt": _ref(row.get("prompt_id"), names), "generation_config": _snapshot(row.get("generation_config")),
        "bnb_config": _snapshot(row.get("model_bnb_config")), "adapter_bnb_config": _snapshot(row.get("adapter_bnb_config")),
        "resources": _clean({"cpu": row.get("num_cpu"), "memory": row.get("num_memory"), "gpu": row.get("num_gpu")}),
    })


_SPECS = {
    "datasets": _dataset, "models": _model, "adapters": _adapter, "prompts": _prompt, "configs": _config,
    "fine_tuning_jobs": _fine_tuning_job, "evaluation_jobs": _evaluation_job,
}
