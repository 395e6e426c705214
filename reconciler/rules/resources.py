"""Rules for the imported resources: datasets (DS-*), models (MD-*) and adapters (AD-*).

Hub existence (DS-002, MD-002) is checked online by `reconciler.online`, not here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.models import Adapter, Dataset, Model
from reconciler.models.dataset import DATASET_TYPES, LOCAL_FILE_SUFFIX
from reconciler.models.model import MODEL_TYPES
from reconciler.rules.context import RuleContext, unknown_type


def check_datasets(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("Dataset"):
        assert isinstance(m.resource, Dataset)
        spec, addr = m.resource.spec, m.address
        if spec.type not in DATASET_TYPES:
            yield unknown_type(m, "DS-001", "dataset", spec.type)
            continue
        if spec.type == "huggingface":
            if not (spec.huggingface_name or "").strip():
                yield make_diag("DS-101", "huggingface dataset needs huggingface_name", location=m.at("spec", "huggingface_name"), address=addr)
            continue
        if not (spec.location or "").strip():
            yield make_diag("DS-101", f"{spec.type} dataset needs location", location=m.at("spec", "location"), address=addr)
            continue
        yield from _local_dataset(ctx, m, spec.type, spec.location or "")


def _local_dataset(ctx: RuleContext, m, dataset_type: str, location: str) -> Iterator[Diagnostic]:  # type: ignore[no-untyped-def]
    path = m.path(location)
    fact = ctx.facts.path(path)
    loc = m.at("spec", "location")
    if fact.refusal is not None:  # nothing of it was read
        yield make_diag(fact.refusal.code, fact.refusal.message, location=loc, address=m.address)
        return
    if dataset_type == "project":
        if not fact.is_dir:
            yield make_diag("DS-003", f"dataset directory {location!r} does not exist", location=loc, address=m.address)
        return
    suffix = LOCAL_FILE_SUFFIX[dataset_type]
    if not location.lower().endswith(suffix):
        yield make_diag("DS-003", f"{dataset_type} location must end with {suffix}: {location!r}", location=loc, address=m.address)
    elif not fact.is_file:
        yield make_diag("DS-003", f"dataset file {location!r} does not exist", location=loc, address=m.address)
    else:
        table = ctx.facts.tables.get(path)
        if table is not None and table.error:
            yield make_diag("DS-102", f"cannot read columns of {location!r}: {table.error}", location=loc, address=m.address)


def check_models(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("Model"):
        assert isinstance(m.resource, Model)
        spec, addr = m.resource.spec, m.address
        if spec.type not in MODEL_TYPES:
            yield unknown_type(m, "MD-001", "model", spec.type)
        elif spec.type == "huggingface" and not (spec.huggingface_model_name or "").strip():
            yield make_diag("MD-101", "huggingface model needs huggingface_model_name", location=m.at("spec", "huggingface_model_name"), address=addr)
        elif spec.type == "model_registry" and not (spec.cml_registered_model_id or "").strip():
            yield make_diag("MD-003", "model_registry model needs cml_registered_model_id", location=m.at("spec", "cml_registered_model_id"), address=addr)
        elif spec.type == "project":
            if not (spec.location or "").strip():
                yield make_diag("MD-101", "project model needs location", location=m.at("spec", "location"), address=addr)
            elif (refusal := (fact := ctx.facts.path(m.path(spec.location or ""))).refusal) is not None:
                yield make_diag(refusal.code, refusal.message, location=m.at("spec", "location"), address=addr)
            elif not fact.exists:
                yield make_diag("MD-104", f"model directory {spec.location!r} does not exist here", location=m.at("spec", "location"), address=addr)
            elif not fact.is_dir:
                yield make_diag("MD-102", f"model location {spec.location!r} is not a directory", location=m.at("spec", "location"), address=addr)


def check_adapters(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("Adapter"):
        assert isinstance(m.resource, Adapter)
        spec, addr = m.resource.spec, m.address
        if spec.model is None:
            yield make_diag("AD-002", "adapter model is required", location=m.at("spec", "model"), address=addr)
        else:
            yield from ctx.check_ref(m, spec.model, "Model", ("spec", "model"), "AD-002")[1]
        if spec.fine_tuning_job is not None:
            yield from ctx.check_ref(m, spec.fine_tuning_job, "FineTuningJob", ("spec", "fine_tuning_job"), "AD-004")[1]
        if spec.prompt is not None:
            yield from ctx.check_ref(m, spec.prompt, "Prompt", ("spec", "prompt"), "AD-005")[1]
        yield from _adapter_source(ctx, m)


def _adapter_source(ctx: RuleContext, m) -> Iterator[Diagnostic]:  # type: ignore[no-untyped-def]
    spec, addr = m.resource.spec, m.address
    needs = {"project": "location", "huggingface": "huggingface_name", "model_registry": "cml_registered_model_id"}
    field_name = needs[spec.type]
    value = getattr(spec, field_name)
    if not (value or "").strip():
        yield make_diag("AD-101", f"{spec.type} adapter needs {field_name}", location=m.at("spec", field_name), address=addr)
        return
    if spec.type != "project":
        return
    fact = ctx.facts.path(m.path(value))
    loc = m.at("spec", "location")
    if fact.refusal is not None:
        yield make_diag(fact.refusal.code, fact.refusal.message, location=loc, address=addr)
    elif not fact.is_dir:
        yield make_diag("AD-003", f"adapter directory {value!r} does not exist", location=loc, address=addr)
    elif not fact.has_adapter_config:
        where = os.path.join(value, "adapter_config.json")
        yield make_diag("AD-102", f"{where!r} not found", location=loc, address=addr)
