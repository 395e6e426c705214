"""ModelExport: no Studio table. Its binding is the resolved spec the planner keeps and diffs (any
change re-exports), and the export job reads from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.kinds.base import Binding, RenderContext
from reconciler.models.export import ModelExport, ModelExportSpec
from reconciler.plan import Consequence


def resolve(export: ModelExport, scope: RenderContext) -> dict[str, Any]:
    """The spec with references resolved to store ids and config sources to bodies. An export that
    selects its adapter (`select:`) names the one chosen (`sweepselect` sets `adapter` before the
    plan renders it) and keeps `select` (left out otherwise, so no other export's spec changes);
    while nothing is chosen it waits for the evaluation."""
    spec = export.spec
    if spec.select is not None and spec.adapter is None:
        scope.waits_for.append(f"EvaluationJob/{spec.select.evaluation}")
    return {
        "type": spec.type,
        "base_model_id": scope.ref_id(spec.base_model, "Model"),
        "adapter_id": scope.ref_id(spec.adapter, "Adapter"),
        **({"select": spec.select.model_dump()} if spec.select is not None else {}),
        "model_name": export.model_name,
        "merge": spec.merge,
        "generation_config": scope.config_body(spec.generation_config, "generation_config")[0],
        "bnb_config": scope.config_body(spec.bnb_config, "bitsandbytes_config")[0],
        "resources": spec.resources.model_dump(),
        "gate": spec.gate.model_dump() if spec.gate else None,
        "description": spec.description,
    }


def refs(spec: Mapping[str, Any]) -> tuple[str, str]:
    """(base model id, adapter id or '') of a resolved export spec."""
    return str(spec.get("base_model_id") or ""), str(spec.get("adapter_id") or "")


def export_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What `jobinput.export_input` takes from a resolved export spec."""
    return {"registered_model_name": str(spec.get("model_name")), "merge": bool(spec.get("merge")),
            "export_type": str(spec.get("type")), "generation_config": spec.get("generation_config"),
            "resources": spec.get("resources")}


BINDING = Binding(kind="ModelExport", table="", spec_model=ModelExportSpec, rerun=Consequence(ModelExport.RERUN),
                  resolved=lambda manifest, scope: resolve(manifest.resource, scope), delete_rank=0,
                  shown=(("TYPE", ("type",)), ("ADAPTER", ("adapter_id",))))
