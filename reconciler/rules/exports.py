"""Export rules: the Studio's EX-001…EX-005 and ftctl's EX-101 (gates), EX-102 (route), EX-103
(the adapter's own base model), EX-104 (endpoint resources), EX-105 (a gate that can never pass),
EX-106 (a gate metric no evaluation reports), EX-107 / EX-108 (`select:`, the best adapter an
evaluation scored, instead of `adapter`)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.manifests.loader import Manifest
from reconciler.models import Adapter, EvaluationJob, Model, ModelExport
from reconciler.models.export import EVALUATION_METRICS, EXPORT_TYPES
from reconciler.rules.context import RuleContext, Target
from reconciler.rules.jobs import adapter_base_model, same_object


def check_exports(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("ModelExport"):
        assert isinstance(m.resource, ModelExport)
        spec, addr = m.resource.spec, m.address
        if spec.type not in EXPORT_TYPES:
            yield make_diag("EX-102", f"export type is {spec.type!r}", location=m.at("spec", "type"), address=addr)
        model = adapter = None
        if spec.base_model is None and spec.select is None:  # with select: the chosen adapter's own model
            yield make_diag("EX-001", "base_model is required", location=m.at("spec", "base_model"), address=addr)
        elif spec.base_model is not None:
            model, diags = ctx.check_ref(m, spec.base_model, "Model", ("spec", "base_model"), "EX-001")
            yield from diags
        if spec.select is not None:
            yield from _select(ctx, m)
        elif spec.adapter is None:
            yield make_diag("EX-002", "adapter is required", location=m.at("spec", "adapter"), address=addr)
        if spec.adapter is not None:
            adapter, diags = ctx.check_ref(m, spec.adapter, "Adapter", ("spec", "adapter"), "EX-002")
            yield from diags
        if model is not None and adapter is not None:
            yield from _adapter_of_another_model(ctx, m, model, adapter)
        if not m.resource.model_name.strip():
            yield make_diag("EX-003", location=m.at("spec", "model_name"), address=addr)
        if spec.type == "cml_model":
            yield from _endpoint_constraints(m, model, adapter)
            yield from _endpoint_resources(m)
        if spec.gate is not None:
            yield from _gate(ctx, m, adapter)
            yield from _gate_values(m)


def _adapter_of_another_model(ctx: RuleContext, m: Manifest, model: Target, adapter: Target) -> Iterator[Diagnostic]:
    """A LoRA adapter loaded onto a model it was not trained on fails to load or exports garbage. A
    warning, not an error: two Model rows may hold the same weights (a cml_model export needs the Hub
    model, EX-005, while training ran on a local copy of it)."""
    base = adapter_base_model(ctx, adapter)
    if base is not None and not same_object(base, model):
        yield make_diag("EX-103", f"adapter {adapter.name!r} applies to model {base.name!r}, not {model.name!r}",
                        location=m.at("spec", "adapter"), address=m.address)


def _endpoint_constraints(m: Manifest, model: Target | None, adapter: Target | None) -> Iterator[Diagnostic]:
    adapter_type = _adapter_type(adapter)
    if adapter_type is not None and adapter_type != "project":
        yield make_diag("EX-004", f"adapter {adapter.name!r} is a {adapter_type} adapter", location=m.at("spec", "adapter"), address=m.address)  # type: ignore[union-attr]
    model_type = _model_type(model)
    if model_type is not None and model_type != "huggingface":
        yield make_diag("EX-005", f"model {model.name!r} is a {model_type} model", location=m.at("spec", "base_model"), address=m.address)  # type: ignore[union-attr]


def _endpoint_resources(m: Manifest) -> Iterator[Diagnostic]:
    """The CML model deployment's size: the API refuses it only once the build has run."""
    res = m.resource.spec.resources
    for name, minimum in (("cpu", 1), ("memory", 1), ("gpu", 0)):
        value = getattr(res, name)
        if value < minimum:
            yield make_diag("EX-104", f"resources.{name} is {value}", location=m.at("spec", "resources", name), address=m.address)


def _adapter_type(adapter: Target | None) -> str | None:
    if adapter is None:
        return None
    if adapter.produced_by is not None:
        return "project"  # trained adapters are written to the project's files
    if adapter.manifest is not None:
        assert isinstance(adapter.manifest.resource, Adapter)
        return adapter.manifest.resource.spec.type
    return adapter.live.type if adapter.live is not None else None


def _model_type(model: Target | None) -> str | None:
    if model is None:
        return None
    if model.manifest is not None:
        assert isinstance(model.manifest.resource, Model)
        return model.manifest.resource.spec.type
    return model.live.type if model.live is not None else None


def _gate_values(m: Manifest) -> Iterator[Diagnostic]:
    """Thresholds no metric value can meet (NaN, infinite, min above max), and metric names that no
    evaluation reports: the gate would stay closed forever and the export never run."""
    gate = m.resource.spec.gate
    for name in ("min", "max"):
        value = getattr(gate, name)
        if value is not None and not math.isfinite(value):
            yield make_diag("EX-105", f"gate {name} is {value}", location=m.at("spec", "gate", name), address=m.address)
    if gate.min is not None and gate.max is not None and gate.min > gate.max:
        yield make_diag("EX-105", f"gate min {gate.min:g} is above max {gate.max:g}", location=m.at("spec", "gate", "min"), address=m.address)
    if not any(gate.metric == known or gate.metric.endswith("." + known) for known in EVALUATION_METRICS):
        yield make_diag("EX-106", f"gate metric {gate.metric!r} is not one an evaluation reports", location=m.at("spec", "gate", "metric"),
                        address=m.address, detail="metrics: " + ", ".join(EVALUATION_METRICS))


def _select(ctx: RuleContext, m: Manifest) -> Iterator[Diagnostic]:
    """`select:` chooses the adapter from an evaluation's results (`sweepselect`): it replaces
    `adapter`, and needs an evaluation of adapters that reports its metric."""
    select, addr = m.resource.spec.select, m.address
    if m.resource.spec.adapter is not None:
        yield make_diag("EX-107", location=m.at("spec", "select"), address=addr)
    evaluation = ctx.named("EvaluationJob", select.evaluation)
    if evaluation is None:
        yield make_diag("EX-108", f"select evaluation {select.evaluation!r} is not an EvaluationJob in the manifests",
                        location=m.at("spec", "select", "evaluation"), address=addr)
    elif not any(c.adapter is not None for c in evaluation.resource.spec.combinations):
        yield make_diag("EX-108", f"EvaluationJob {select.evaluation!r} evaluates no adapter", location=m.at("spec", "select", "evaluation"),
                        address=addr)
    if not any(select.metric == known or select.metric.endswith("." + known) for known in EVALUATION_METRICS):
        yield make_diag("EX-108", f"select metric {select.metric!r} is not one an evaluation reports", location=m.at("spec", "select", "metric"),
                        address=addr, detail="metrics: " + ", ".join(EVALUATION_METRICS))


def _gate(ctx: RuleContext, m: Manifest, adapter: Target | None) -> Iterator[Diagnostic]:
    gate = m.resource.spec.gate
    evaluation = ctx.named("EvaluationJob", gate.evaluation)
    loc = m.at("spec", "gate", "evaluation")
    if evaluation is None:
        yield make_diag("EX-101", f"gate evaluation {gate.evaluation!r} is not an EvaluationJob in the manifests", location=loc, address=m.address)
        return
    if gate.min is None and gate.max is None:
        yield make_diag("EX-101", "gate needs min or max", location=m.at("spec", "gate"), address=m.address)
    if adapter is None:
        return
    assert isinstance(evaluation.resource, EvaluationJob)
    for combo in evaluation.resource.spec.combinations:
        target = ctx.resolve(combo.adapter, "Adapter")[0] if combo.adapter is not None else None
        if target is not None and same_object(target, adapter):
            return
    yield make_diag("EX-101", f"EvaluationJob {gate.evaluation!r} does not evaluate adapter {adapter.name!r}", location=loc, address=m.address)
