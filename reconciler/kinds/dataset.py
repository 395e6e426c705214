"""Dataset ↔ the Studio's `datasets` table, and what a job reads of a dataset row.

Features and description a manifest leaves out come from the facts (the Hub, the local file);
what the Hub did not tell (offline) is left as the store has it.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.kinds.base import OMIT, TEXT, Binding, Column, JsonList, Path, Rendering, RowView
from reconciler.models.dataset import DatasetSpec
from reconciler.records import parsed_config


def _features(r: Rendering) -> Any:
    spec = r.source
    if spec.type == "huggingface":
        found = r.scope.facts.hub.dataset_features.get((spec.huggingface_name or "").strip())
        return json.dumps(list(found)) if found is not None else OMIT
    if spec.type == "project" or not spec.location:
        return None
    table = r.scope.facts.local.tables.get(r.manifest.path(spec.location))
    return json.dumps(list(table.columns)) if table is not None and table.error is None else None


def _description(r: Rendering) -> Any:
    spec = r.source
    if spec.type != "huggingface":
        return None
    found = r.scope.facts.hub.dataset_descriptions.get((spec.huggingface_name or "").strip())
    return found if found is not None else OMIT


BINDING = Binding(
    kind="Dataset",
    table="datasets",
    spec_model=DatasetSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT),
        Column("name", derived="name"),
        Column("description", ("description",), TEXT, fallback=_description),
        Column("huggingface_name", ("huggingface_name",), TEXT),
        Column("location", ("location",), Path()),
        Column("features", ("features",), JsonList(), fallback=_features),
    ),
    name_column="name",
    unique=("name", "huggingface_name"),
    run_inputs=("type", "huggingface_name", "location"),
    delete_rank=6,
    lends_token=True,
    live_fields={"type": "type", "features": "features"},
    shown=(("TYPE", ("type",)), ("SOURCE", ("huggingface_name", "location"))),
)


def source(row: RowView) -> dict[str, Any]:
    """A job input's `dataset` block: where the data is, and its columns."""
    kind = str(row.get("type") or "")
    where = row.get("huggingface_name") if kind == "huggingface" else row.get("location")
    features = parsed_config(str(row["features"])) if row.get("features") else None
    return {"type": kind, "name_or_path": str(where or ""), "features": features if isinstance(features, list) else None}


def name(row: RowView) -> str:
    return str(row.get("name") or "")


def feature_text(row: RowView) -> str:
    """The features column as stored (JSON list text, '' when unknown)."""
    return str(row.get("features") or "")
