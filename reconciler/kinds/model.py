"""Model ↔ the Studio's `models` table, and what a job reads of a model row.

The MLflow experiment and run of a model_registry Model are the registry's first version's, as
the Studio records them: given in the manifest, or read from the registry (online); offline and
not given, they are left as the store has them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.kinds.base import OMIT, TEXT, Binding, Column, Path, Rendering, RowView
from reconciler.models.model import ModelSpec


def registry_fact(attribute: str) -> Callable[[Rendering], Any]:
    """A fallback reading the registry fact of a model_registry object's registered model."""
    def fallback(r: Rendering) -> Any:
        spec = r.source
        model_id = (spec.cml_registered_model_id or "").strip()
        fact = r.scope.facts.registry.models.get(model_id) if spec.type == "model_registry" else None
        if fact is None or not fact.versions:
            return OMIT
        return getattr(fact, attribute)
    return fallback


BINDING = Binding(
    kind="Model",
    table="models",
    spec_model=ModelSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT),
        Column("framework", ("framework",), TEXT),
        Column("name", derived="name"),
        Column("description", ("description",), TEXT),
        Column("huggingface_model_name", ("huggingface_model_name",), TEXT),
        Column("location", ("location",), Path()),
        Column("cml_registered_model_id", ("cml_registered_model_id",), TEXT),
        Column("mlflow_experiment_id", ("mlflow_experiment_id",), TEXT, fallback=registry_fact("experiment_id")),
        Column("mlflow_run_id", ("mlflow_run_id",), TEXT, fallback=registry_fact("run_id")),
    ),
    name_column="name",
    unique=("huggingface_model_name",),
    run_inputs=("type", "huggingface_model_name", "location", "cml_registered_model_id"),
    delete_rank=7,
    shown=(("TYPE", ("type",)), ("SOURCE", ("huggingface_model_name", "location"))),
    lends_token=True,
)


def source(row: RowView) -> dict[str, Any]:
    """A job input's `model` block: where the weights come from."""
    kind = str(row.get("type") or "huggingface")
    if kind == "huggingface":
        return {"type": kind, "name_or_path": str(row.get("huggingface_model_name") or row.get("name") or "")}
    if kind == "model_registry":
        return {"type": kind, "name_or_path": str(row.get("cml_registered_model_id") or "")}
    return {"type": "project", "name_or_path": str(row.get("location") or "")}


def name(row: RowView) -> str:
    return str(row.get("name") or "")
