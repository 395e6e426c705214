"""Cost estimates: how many tokens each job a plan launches processes, how long that takes on its
device kind, the device-hours (GPU-hours, or CPU-hours on `cpu`) and what they cost.

Pure: the plan's changes, the manifests, the local facts and `EstimateSettings` in; a
`plan.CostEstimate` out. The engine reads the settings from ftctl.toml (`[estimates]`) and attaches
the estimate to the plan; `reconciler.policy` gates on it; `views.plan` shows it.

The arithmetic, each number shown in the job's `basis`:
- tokens per row: (the row's characters, averaged over the dataset file, + the prompt template's own
  text) / `chars_per_token` (4: no tokenizer on the command path), capped at the training
  arguments' max_length;
- a training: rows x dataset_fraction x train_test_split x epochs x tokens per row (or, with
  max_steps, steps x batch x gradient accumulation x world size x tokens per row);
- an evaluation: per combination, rows x eval_dataset_fraction x (1 - the trained split) x (tokens
  per row + max_new_tokens), at `inference_speedup` x the training throughput (a forward pass is
  about a third of a training step's compute: 2 vs 6 x parameters per token);
- throughput: a device kind's measured tokens/s at its reference size, scaled by parameters
  (reference parameters / the model's): compute per token grows with the model;
- a job on N devices (`scaleout.topology`: GPUs, or CPU processes) runs N x `scale_efficiency` as fast
  (1 device: 1); device-hours = wall-clock hours x N; cost = device-hours x the kind's price per hour.
A job whose model size or dataset rows are unknown (a Hub dataset, a model named by store id) is
listed with `known` False and counts 0 in the totals.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.facts import LocalFacts, parameters_from_name
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, Dataset, EvaluationJob, FineTuningJob, Model, Prompt
from reconciler.plan import Change, CostEstimate, JobEstimate
from reconciler.scaleout import topology

DEFAULT_EPOCHS = 3  # transformers' TrainingArguments.num_train_epochs
DEFAULT_SPLIT = 0.9  # the Studio's train_test_split


@dataclass(frozen=True)
class DeviceRate:
    """One device kind: its training throughput (tokens/s) measured at `parameters`, and its price."""

    tokens_per_second: float
    parameters: int
    price_per_hour: float

    def throughput(self, parameters: int) -> float:
        return self.tokens_per_second * self.parameters / parameters


# cpu: `make bench` (tests/bench/train_throughput.py), the runner on the demo's tiny model (139,264
# parameters by `facts.parameter_count`) on one CPU thread of the 2-core VM: 5571 tokens/s.
# gpu: an assumption until measured (no GPU was lent to the sessions that wrote this): 8,000 tokens/s
# of bf16 LoRA training on a 1B model, an A100-class card at ~30% of its peak; priced as on-demand.
DEFAULT_DEVICES = {
    "cpu": DeviceRate(5571.0, 139_264, 0.10),
    "gpu": DeviceRate(8000.0, 1_000_000_000, 2.50),
}


@dataclass(frozen=True)
class EstimateSettings:
    devices: Mapping[str, DeviceRate] = field(default_factory=lambda: dict(DEFAULT_DEVICES))
    accelerator_labels: Mapping[int, str] = field(default_factory=dict)  # CML accelerator label id -> device kind
    chars_per_token: float = 4.0
    scale_efficiency: float = 0.9
    inference_speedup: float = 3.0
    currency: str = "USD"


@dataclass(frozen=True)
class _Inputs:
    """What a job's estimate is computed from, each None when unknown (with why in `missing`)."""

    rows: int | None
    tokens_per_row: float | None
    parameters: int | None
    missing: tuple[str, ...]
    basis: tuple[str, ...]


def estimate_plan(changes: Iterable[Change], manifests: Iterable[Manifest], facts: LocalFacts,
                  settings: EstimateSettings) -> CostEstimate | None:
    """The estimate of every training and evaluation the changes launch now or later; None when
    they launch none."""
    by_key = {(m.kind, m.name): m for m in manifests}
    book = _Book(by_key, facts, settings)
    jobs = []
    for change in changes:
        if not (change.launches or change.waits_for) or change.kind not in ("FineTuningJob", "EvaluationJob"):
            continue
        manifest = by_key.get((change.kind, change.name))
        if manifest is None:
            continue
        later = bool(change.waits_for)
        if isinstance(manifest.resource, FineTuningJob):
            jobs.append(book.training(manifest, later=later))
        elif isinstance(manifest.resource, EvaluationJob):
            jobs.append(book.evaluation(manifest, later=later, launches=len(change.launches)))
    return CostEstimate.of(tuple(jobs), currency=settings.currency) if jobs else None


@dataclass
class _Book:
    manifests: Mapping[tuple[str, str], Manifest]
    facts: LocalFacts
    settings: EstimateSettings

    def training(self, manifest: Manifest, *, later: bool) -> JobEstimate:
        job = manifest.resource
        assert isinstance(job, FineTuningJob)
        spec = job.spec
        args = self._body(spec.training_arguments)
        world = topology(spec.resources.model_dump()).world_size
        inputs = self._inputs(spec.dataset, spec.base_model, spec.prompt, cap=_int(args.get("max_length") or args.get("max_seq_length")))
        device = self._device(spec.resources.gpu, spec.resources.gpu_label_id)
        basis = list(inputs.basis)
        max_steps = _int(args.get("max_steps"))
        if max_steps and max_steps > 0:
            batch = (_int(args.get("per_device_train_batch_size")) or 8) * (_int(args.get("gradient_accumulation_steps")) or 1)
            rows: float | None = max_steps * batch * world
            basis.append(f"max_steps {max_steps} x batch {batch} x world {world} = {rows:g} rows")
        elif inputs.rows is not None:
            epochs = spec.num_epochs or _number(args.get("num_train_epochs")) or DEFAULT_EPOCHS
            rows = inputs.rows * spec.dataset_fraction * spec.train_test_split * epochs
            basis.append(f"{inputs.rows} rows x fraction {spec.dataset_fraction:g} x split {spec.train_test_split:g} "
                         f"x {epochs:g} epochs = {rows:g} rows")
        else:
            rows = None
        return self._job(manifest.address, "train", device, world, rows, inputs, basis, rate=1.0, later=later)

    def evaluation(self, manifest: Manifest, *, later: bool, launches: int) -> JobEstimate:
        job = manifest.resource
        assert isinstance(job, EvaluationJob)
        spec = job.spec
        combos = launches or len(spec.combinations) or 1
        first = spec.combinations[0] if spec.combinations else None
        inputs = self._inputs(spec.dataset, first.model if first else None, spec.prompt, cap=None, template="input_template")
        generated = _int(self._body(spec.generation_config).get("max_new_tokens")) or 0
        split = self._trained_split(next((c.adapter for c in spec.combinations if c.adapter is not None), None))  # base and adapter: the adapter's test rows
        resources = spec.resources
        gpu = resources.gpu if resources and resources.gpu else 0
        device = self._device(gpu, None)
        basis = list(inputs.basis)
        rows: float | None = None
        if inputs.rows is not None:
            rows = inputs.rows * spec.eval_dataset_fraction * (1 - split) * combos
            basis.append(f"{inputs.rows} rows x fraction {spec.eval_dataset_fraction:g} x test split {1 - split:g} "
                         f"x {combos} combination{'s' if combos != 1 else ''} = {rows:g} rows")
        if inputs.tokens_per_row is not None:
            inputs = _Inputs(inputs.rows, inputs.tokens_per_row + generated, inputs.parameters, inputs.missing, inputs.basis)
            basis.append(f"+ {generated} generated tokens a row")
        devices = combos * max(1, gpu)
        return self._job(manifest.address, "evaluate", device, devices, rows, inputs, basis,
                         rate=self.settings.inference_speedup, later=later, parallel=combos)

    def _job(self, address: str, job: str, device: str, devices: int, rows: float | None, inputs: _Inputs, basis: list[str],
             *, rate: float, later: bool, parallel: int = 1) -> JobEstimate:
        known_device = device in self.settings.devices
        if not known_device:
            basis.append(f"device kind {device!r} has no [estimates.devices.{device}] in ftctl.toml")
        if rows is None or inputs.tokens_per_row is None or inputs.parameters is None or not known_device:
            why = "; ".join(inputs.missing) or "inputs unknown"
            return JobEstimate(address, job, device, devices, 0, 0.0, 0.0, 0.0, 0.0, f"unknown: {why}; " + "; ".join(basis),
                               later=later, known=False)
        tokens = math.ceil(rows * inputs.tokens_per_row)
        per_device = self.settings.devices[device].throughput(inputs.parameters) * rate
        per_job = devices // parallel  # devices one job of it holds (an evaluation runs its combinations side by side)
        efficiency = self.settings.scale_efficiency if per_job > 1 else 1.0
        hours = tokens / (per_device * devices * efficiency) / 3600
        device_hours = hours * devices
        cost = device_hours * self.settings.devices[device].price_per_hour
        basis.append(f"{tokens:,} tokens at {per_device:,.0f} tokens/s per {device} ({_size(inputs.parameters)} parameters"
                     + (f", x{rate:g} for inference" if rate != 1.0 else "") + f") on {devices} {device}"
                     + (f" at {efficiency:g} scaling" if efficiency != 1.0 else "")
                     + f" = {hours:.3g} h, {device_hours:.3g} {device}-hours x {self.settings.devices[device].price_per_hour:g}"
                     f"/h = {cost:.3g} {self.settings.currency}")
        return JobEstimate(address, job, device, devices, tokens, per_device, hours, device_hours, cost, "; ".join(basis), later=later)

    def _inputs(self, dataset: Any, model: Any, prompt: Any, *, cap: int | None, template: str = "prompt_template") -> _Inputs:
        missing: list[str] = []
        basis: list[str] = []
        rows, chars = self._dataset(dataset, missing)
        parameters = self._parameters(model, missing, basis)
        text = self._template(prompt, template)
        tokens_per_row = None
        if chars is not None:
            tokens_per_row = (chars + len(text)) / self.settings.chars_per_token
            basis.append(f"({chars:.0f} chars a row + {len(text)} of template) / {self.settings.chars_per_token:g} = "
                         f"{tokens_per_row:.1f} tokens a row" + (f", at most max_length {cap}" if cap else ""))
            tokens_per_row = min(tokens_per_row, cap) if cap else tokens_per_row
        return _Inputs(rows, tokens_per_row, parameters, tuple(missing), tuple(basis))

    def _dataset(self, ref: Any, missing: list[str]) -> tuple[int | None, float | None]:
        manifest = self.manifests.get(("Dataset", ref)) if isinstance(ref, str) else None
        if manifest is None or not isinstance(manifest.resource, Dataset) or not manifest.resource.spec.location \
                or manifest.resource.spec.type == "huggingface":
            missing.append(f"rows of dataset {_shown(ref)} (not a local file of the manifests)")
            return None, None
        fact = self.facts.tables.get(manifest.path(manifest.resource.spec.location))
        if fact is None or fact.rows is None or fact.mean_chars is None:
            missing.append(f"rows of dataset {_shown(ref)} (its file was not counted)")
            return None, None
        return fact.rows, fact.mean_chars

    def _parameters(self, ref: Any, missing: list[str], basis: list[str]) -> int | None:
        manifest = self.manifests.get(("Model", ref)) if isinstance(ref, str) else None
        spec = manifest.resource.spec if manifest is not None and isinstance(manifest.resource, Model) else None
        if manifest is not None and spec is not None and spec.location and manifest.path(spec.location) in self.facts.model_parameters:
            local = self.facts.model_parameters[manifest.path(spec.location)]
            basis.append(f"model {ref}: {_size(local)} parameters (config.json)")
            return local
        name = spec.huggingface_model_name if spec is not None else None
        named = parameters_from_name(name) if name else None
        if named is not None:
            basis.append(f"model {ref}: {_size(named)} parameters (from the name {name})")
            return named
        missing.append(f"size of model {_shown(ref)} (no config.json read, no size in its name)")
        return None

    def _template(self, ref: Any, which: str) -> str:
        """The template's own text (its {placeholders} left out): what each row adds besides its values."""
        manifest = self.manifests.get(("Prompt", ref)) if isinstance(ref, str) else None
        if manifest is None or not isinstance(manifest.resource, Prompt):
            return ""
        text = getattr(manifest.resource.spec, which) or manifest.resource.spec.prompt_template or ""
        try:
            return "".join(literal for literal, *_ in string.Formatter().parse(text))
        except ValueError:
            return text

    def _body(self, source: Any) -> dict[str, Any]:
        if isinstance(source, dict):
            return source
        manifest = self.manifests.get(("Config", source)) if isinstance(source, str) else None
        if manifest is not None and isinstance(manifest.resource, Config) and isinstance(manifest.resource.spec.config, dict):
            return manifest.resource.spec.config
        return {}

    def _trained_split(self, adapter: Any) -> float:
        """The train_test_split of the manifests' training that produces `adapter` (the Studio's default otherwise)."""
        return self._splits.get(adapter, DEFAULT_SPLIT) if adapter is not None else DEFAULT_SPLIT

    @cached_property
    def _splits(self) -> dict[str, float]:
        """Each adapter name's train_test_split, from the first training (in manifest order) producing it:
        indexed once per plan, not scanned per evaluation."""
        splits: dict[str, float] = {}
        for manifest in self.manifests.values():
            job = manifest.resource
            if isinstance(job, FineTuningJob):
                splits.setdefault(job.adapter_name, job.spec.train_test_split)
        return splits

    def _device(self, gpu: int, label: int | None) -> str:
        if not gpu:
            return "cpu"
        return self.settings.accelerator_labels.get(label, "gpu") if label is not None else "gpu"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _shown(ref: Any) -> str:
    return repr(ref) if isinstance(ref, str) else "(a store id)" if ref is not None else "(none)"


def _size(parameters: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if parameters >= scale:
            return f"{parameters / scale:.3g}{unit}"
    return str(parameters)
