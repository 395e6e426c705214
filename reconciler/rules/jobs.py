"""Job rules: fine-tuning (FT-001…FT-016, FT-101…FT-110) and evaluation (EV-001…EV-008, EV-101…EV-103).

Scale-out (FT-107…FT-110) reads the job's world as `reconciler.scaleout` does, as the backends will
launch it: what a runner cannot run on several processes, more processes than GPUs, and sharded
training (FSDP) the pinned libraries refuse."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.manifests.loader import Manifest
from reconciler.models import Adapter, Dataset, EvaluationJob, FineTuningJob, IdRef
from reconciler.models.base import ConfigSource
from reconciler.models.jobs import FRAMEWORK_TYPES
from reconciler.rules.configs import parse_body
from reconciler.rules.context import RuleContext, Target
from reconciler.scaleout import topology

ADAPTER_NAME_RE = re.compile(r"^[a-zA-Z0-9-]+$")
LEGACY_CONFIG_FIELDS = ("lora_config", "bnb_config", "adapter_bnb_config", "training_arguments")


def check_fine_tuning_jobs(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("FineTuningJob"):
        assert isinstance(m.resource, FineTuningJob)
        yield from _framework(m, m.resource)
        yield from _numbers(ctx, m, m.resource)
        yield from _references(ctx, m, m.resource)
        yield from _scale_out(ctx, m, m.resource)


def _framework(m: Manifest, job: FineTuningJob) -> Iterator[Diagnostic]:
    spec, addr = job.spec, m.address
    if spec.framework_type not in FRAMEWORK_TYPES:
        yield make_diag("FT-001", f"framework_type is {spec.framework_type!r}", location=m.at("spec", "framework_type"), address=addr)
    if not ADAPTER_NAME_RE.fullmatch(job.adapter_name):
        yield make_diag("FT-002", f"adapter_name {job.adapter_name!r} must match ^[a-zA-Z0-9-]+$", location=m.at(*job.adapter_name_path), address=addr)
    if spec.framework_type == "axolotl":
        if spec.axolotl_config is None:
            yield make_diag("FT-012", location=m.at("spec", "framework_type"), address=addr)
        for field_name in LEGACY_CONFIG_FIELDS:
            if getattr(spec, field_name) is not None:
                yield make_diag("FT-105", f"{field_name} is ignored by axolotl jobs", location=m.at("spec", field_name), address=addr)
    elif spec.prompt is None and spec.framework_type == "legacy":
        yield make_diag("FT-101", location=m.at("spec", "prompt"), address=addr)


def _numbers(ctx: RuleContext, m: Manifest, job: FineTuningJob) -> Iterator[Diagnostic]:
    spec, res, addr = job.spec, job.spec.resources, m.address
    checks = [
        ("FT-004", ("resources", "cpu"), res.cpu, res.cpu > 0),
        ("FT-005", ("resources", "gpu"), res.gpu, res.gpu >= 0),
        ("FT-006", ("resources", "memory"), res.memory, res.memory > 0),
        ("FT-007", ("resources", "num_workers"), res.num_workers, res.num_workers > 0),
        ("FT-008", ("num_epochs",), spec.num_epochs, spec.num_epochs is None or spec.num_epochs > 0),
        ("FT-009", ("learning_rate",), spec.learning_rate, spec.learning_rate is None or spec.learning_rate > 0),
        ("FT-010", ("dataset_fraction",), spec.dataset_fraction, 0 < spec.dataset_fraction <= 1),
        ("FT-011", ("train_test_split",), spec.train_test_split, 0 < spec.train_test_split <= 1),
    ]
    for code, path, value, ok in checks:
        if not ok:
            yield make_diag(code, f"{'.'.join(path)} is {value}", location=m.at("spec", *path), address=addr)
    for name in ("dist_cpu", "dist_gpu", "dist_memory"):
        value = getattr(res, name)
        if value is not None and value < (0 if name == "dist_gpu" else 1):
            code = {"dist_cpu": "FT-004", "dist_gpu": "FT-005", "dist_memory": "FT-006"}[name]
            yield make_diag(code, f"resources.{name} is {value}", location=m.at("spec", "resources", name), address=addr)
    if spec.train_test_split == 1:
        yield make_diag("FT-102", location=m.at("spec", "train_test_split"), address=addr)


def _scale_out(ctx: RuleContext, m: Manifest, job: FineTuningJob) -> Iterator[Diagnostic]:
    """What the job's world (workers x processes per worker) cannot run: FT-107…FT-110."""
    spec, res, addr = job.spec, job.spec.resources, m.address
    world = topology(res.model_dump())
    if world.is_distributed and spec.framework_type == "axolotl":
        where = "num_workers" if res.num_workers > 1 else "gpu"
        yield make_diag("FT-107", f"framework_type axolotl with {world.describe()}", location=m.at("spec", "resources", where), address=addr)
    if world.workers > 1 and world.first.gpu != world.others.gpu:
        yield make_diag(
            "FT-108",
            f"worker 0 runs {world.processes_per_worker} process(es) on {world.first.gpu} GPU(s); workers 1-{world.workers - 1} "
            f"would run as many on {world.others.gpu} GPU(s) each",
            location=m.at("spec", "resources", "dist_gpu"), address=addr)
    training = _config_body(ctx, spec.training_arguments, "training_arguments") or {}
    if not training.get("fsdp"):
        return
    if res.gpu == 0:
        yield make_diag("FT-110", f"training_arguments.fsdp {training['fsdp']!r} with resources.gpu 0",
                        location=m.at("spec", "training_arguments"), address=addr)
    bnb = _config_body(ctx, spec.bnb_config, "bitsandbytes_config") or {}
    if bnb.get("load_in_4bit") and not bnb.get("bnb_4bit_quant_storage"):
        yield make_diag("FT-109", "bnb_config.load_in_4bit with training_arguments.fsdp and no bnb_4bit_quant_storage",
                        location=m.at("spec", "bnb_config"), address=addr)


def _config_body(ctx: RuleContext, source: ConfigSource | None, config_type: str) -> dict[str, Any] | None:
    """The body of a config a job gives inline or names (a Config manifest); None when it is not
    at hand (a store id, a body that is not a mapping: other rules say so)."""
    if isinstance(source, str):
        named = ctx.named("Config", source)
        config = getattr(getattr(named, "resource", None), "spec", None)
        source = getattr(config, "config", None)
    return parse_body(config_type, source)[0] if isinstance(source, dict | str) else None


def _name_it(field_name: str, kind: str) -> str:
    """The hint of a required reference left out (the code's own hint is for one that does not resolve)."""
    return f"Set {field_name}: the name of a {kind} manifest, or {{id: UUID}} of a store row."


def _references(ctx: RuleContext, m: Manifest, job: FineTuningJob) -> Iterator[Diagnostic]:
    spec, addr = job.spec, m.address
    if spec.base_model is None:
        yield make_diag("FT-013", "base_model is required", location=m.at("spec", "base_model"), address=addr, hint=_name_it("base_model", "Model"))
    else:
        yield from ctx.check_ref(m, spec.base_model, "Model", ("spec", "base_model"), "FT-013")[1]
    dataset: Target | None = None
    if spec.dataset is None:
        yield make_diag("FT-014", "dataset is required", location=m.at("spec", "dataset"), address=addr, hint=_name_it("dataset", "Dataset"))
    else:
        dataset, diags = ctx.check_ref(m, spec.dataset, "Dataset", ("spec", "dataset"), "FT-014")
        yield from diags
    if spec.prompt is not None:
        yield from ctx.check_ref(m, spec.prompt, "Prompt", ("spec", "prompt"), "FT-015")[1]
    if spec.out_dir is not None and not ctx.facts.path(m.path(spec.out_dir)).is_dir:
        yield make_diag("FT-003", f"out_dir {spec.out_dir!r} is not a directory", location=m.at("spec", "out_dir"), address=addr)
    if spec.user_script is not None and not ctx.facts.path(m.path(spec.user_script)).is_file:
        yield make_diag("FT-106", f"user_script {spec.user_script!r} is not a file", location=m.at("spec", "user_script"), address=addr)
    yield from _empty_split(ctx, m, job, dataset)


def _empty_split(ctx: RuleContext, m: Manifest, job: FineTuningJob, dataset: Target | None) -> Iterator[Diagnostic]:
    """FT-103: with the dataset's known row count, sampling and splitting leave no training rows."""
    if dataset is None or dataset.manifest is None:
        return
    resource = dataset.manifest.resource
    assert isinstance(resource, Dataset)
    if not resource.spec.location:
        return
    table = ctx.facts.tables.get(dataset.manifest.path(resource.spec.location))
    fraction, split = job.spec.dataset_fraction, job.spec.train_test_split
    if table is None or table.rows is None or not (0 < fraction <= 1 and 0 < split <= 1):
        return
    sampled = int(table.rows * fraction)
    train = sampled - math.ceil(sampled * (1 - split))
    if train < 1:
        yield make_diag(
            "FT-103",
            f"{table.rows} rows x dataset_fraction {fraction} x train_test_split {split} leaves {max(train, 0)} training rows",
            location=m.at("spec", "dataset_fraction"),
            address=m.address,
        )


def check_evaluation_jobs(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("EvaluationJob"):
        assert isinstance(m.resource, EvaluationJob)
        spec, addr = m.resource.spec, m.address
        for field_name, kind, required_code, missing_code in (
            ("dataset", "Dataset", "EV-002", "EV-007"),
            ("prompt", "Prompt", "EV-003", "EV-008"),
        ):
            ref = getattr(spec, field_name)
            if ref is None:
                yield make_diag(required_code, f"{field_name} is required", location=m.at("spec", field_name), address=addr)
            else:
                yield from ctx.check_ref(m, ref, kind, ("spec", field_name), missing_code)[1]
        yield from _eval_resources(m, m.resource)
        if not 0 < spec.eval_dataset_fraction <= 1:
            yield make_diag("EV-103", f"eval_dataset_fraction is {spec.eval_dataset_fraction}", location=m.at("spec", "eval_dataset_fraction"), address=addr)
        yield from _combinations(ctx, m, m.resource)


def _eval_resources(m: Manifest, job: EvaluationJob) -> Iterator[Diagnostic]:
    res = job.spec.resources
    if res is None:
        yield make_diag("EV-004", "resources (cpu, gpu, memory) must be provided", location=m.at("spec", "resources"), address=m.address)
        return
    for name, minimum in (("cpu", 1), ("gpu", 0), ("memory", 1)):
        value = getattr(res, name)
        if value is None or value < minimum:
            got = "missing" if value is None else str(value)
            yield make_diag("EV-004", f"resources.{name} is {got}", location=m.at("spec", "resources", name), address=m.address)


def _combinations(ctx: RuleContext, m: Manifest, job: EvaluationJob) -> Iterator[Diagnostic]:
    combos = job.spec.combinations
    if not combos:
        yield make_diag("EV-001", location=m.at("spec", "combinations"), address=m.address)
    seen: set[tuple[str, str]] = set()
    for index, combo in enumerate(combos):
        path = ("spec", "combinations", index)
        model = None
        if combo.model is None:
            yield make_diag("EV-005", "combination model is required", location=m.at(*path), address=m.address)
        else:
            model, diags = ctx.check_ref(m, combo.model, "Model", (*path, "model"), "EV-005")
            yield from diags
        adapter = None
        if combo.adapter is not None:
            adapter, diags = ctx.check_ref(m, combo.adapter, "Adapter", (*path, "adapter"), "EV-006")
            yield from diags
        key = (_ref_key(combo.model), _ref_key(combo.adapter))
        if key in seen:
            yield make_diag("EV-101", f"combination {index + 1} repeats an earlier model+adapter pair", location=m.at(*path), address=m.address)
        seen.add(key)
        if model is not None and adapter is not None:
            yield from _adapter_model_mismatch(ctx, m, model, adapter, (*path, "adapter"))


def _ref_key(ref: object) -> str:
    return f"id:{ref.id}" if isinstance(ref, IdRef) else str(ref or "")


def adapter_base_model(ctx: RuleContext, adapter: Target) -> Target | None:
    """The model an adapter applies to: its manifest's model, its job's base_model, or the store row's."""
    if adapter.manifest is not None:
        assert isinstance(adapter.manifest.resource, Adapter)
        ref = adapter.manifest.resource.spec.model
        return ctx.resolve(ref, "Model")[0] if ref is not None else None
    if adapter.produced_by is not None:
        assert isinstance(adapter.produced_by.resource, FineTuningJob)
        ref = adapter.produced_by.resource.spec.base_model
        return ctx.resolve(ref, "Model")[0] if ref is not None else None
    if adapter.live is not None and adapter.live.model_id and ctx.snapshot is not None:
        row = ctx.snapshot.by_id(adapter.live.model_id)
        return Target("Model", row.name, live=row) if row is not None else None
    return None


def same_object(a: Target, b: Target) -> bool:
    if a.live is not None and b.live is not None:
        return a.live.id == b.live.id
    return (a.kind, a.name) == (b.kind, b.name) and (a.live is None) == (b.live is None)


def _adapter_model_mismatch(ctx: RuleContext, m: Manifest, model: Target, adapter: Target, path: tuple[str | int, ...]) -> Iterator[Diagnostic]:
    base = adapter_base_model(ctx, adapter)
    if base is not None and not same_object(base, model):
        yield make_diag(
            "EV-102",
            f"adapter {adapter.name!r} applies to model {base.name!r}, not {model.name!r}",
            location=m.at(*path),
            address=m.address,
        )
