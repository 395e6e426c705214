"""Policy gates: what a project's ftctl.toml `[policy]` allows a plan to launch, checked before apply.

Pure. `read_settings` turns the `[policy]` and `[estimates]` tables of ftctl.toml (parsed by the
engine, with the file's text for line numbers) into `PolicySettings` and `EstimateSettings`, refusing
an unknown key with a did-you-mean (`SettingsError`, naming file:line). `check_manifests` finds
what the manifests break (PO-003 max_gpus, PO-004 max_workers, PO-005 allowed_base_models, PO-006
allowed_backends, PO-007 export_requires_gate) as diagnostics at the manifest's field:
`validate` reports them as errors; `plan` turns those of objects it changes or launches into
blockers (`blockers_of`), with the plan totals' PO-001 max_gpu_hours and PO-002 max_cost
(`check_totals`, at the key's line in ftctl.toml). A blocked plan exits 3; `apply --override-policy
KEY --reason TEXT` waives the blockers of those keys (`waive`), and the executor records who and why.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, Location
from reconciler.estimates import DEFAULT_DEVICES, DeviceRate, EstimateSettings
from reconciler.manifests.loader import Manifest
from reconciler.models import EvaluationJob, FineTuningJob, Model, ModelExport
from reconciler.plan import Blocker, Change, CostEstimate, Plan
from reconciler.scaleout import topology

POLICY_KEYS = ("max_gpu_hours", "max_cost", "max_gpus", "max_workers", "allowed_base_models", "allowed_backends",
               "export_requires_gate")
ESTIMATE_KEYS = ("chars_per_token", "scale_efficiency", "inference_speedup", "currency", "accelerator_labels", "devices")
DEVICE_KEYS = ("tokens_per_second", "parameters", "price_per_hour")
CODE = {"max_gpu_hours": "PO-001", "max_cost": "PO-002", "max_gpus": "PO-003", "max_workers": "PO-004",
        "allowed_base_models": "PO-005", "allowed_backends": "PO-006", "export_requires_gate": "PO-007"}
KEY_OF = {code: key for key, code in CODE.items()}


class SettingsError(ValueError):
    """A `[policy]` or `[estimates]` setting ftctl does not know, or of the wrong type: file:line: what."""


@dataclass(frozen=True)
class PolicySettings:
    max_gpu_hours: float | None = None
    max_cost: float | None = None
    max_gpus: int | None = None
    max_workers: int | None = None
    allowed_base_models: tuple[str, ...] | None = None
    allowed_backends: tuple[str, ...] | None = None
    export_requires_gate: bool = False
    file: str = ""  # the ftctl.toml they were read from
    lines: Mapping[str, int] = field(default_factory=dict)  # key -> its line there


def read_settings(data: Mapping[str, Any], *, text: str = "", file: str = "ftctl.toml") -> tuple[PolicySettings, EstimateSettings]:
    """The `[policy]` and `[estimates]` tables of a parsed ftctl.toml (`text`: the file, for lines)."""
    lines = key_lines(text)
    policy = _table(data.get("policy", {}), "policy", POLICY_KEYS, file, lines)
    estimates = _table(data.get("estimates", {}), "estimates", ESTIMATE_KEYS, file, lines)
    values: dict[str, Any] = {}
    for key, value in policy.items():
        where = f"{file}:{lines.get(f'policy.{key}', 0)}"
        values[key] = _typed(key, value, where)
    settings = PolicySettings(**values, file=file, lines={k: lines.get(f"policy.{k}", 0) for k in policy})
    return settings, _estimate_settings(estimates, file, lines)


def _table(value: Any, name: str, known: tuple[str, ...], file: str, lines: Mapping[str, int]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SettingsError(f"{file}:{lines.get(name, 0)}: [{name}] must be a table")
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise SettingsError(f"{file}:{lines.get(f'{name}.{key}', 0)}: unknown {name} key {key!r}{hint}")
    return value


def _typed(key: str, value: Any, where: str) -> Any:
    if key in ("max_gpu_hours", "max_cost"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SettingsError(f"{where}: policy.{key} must be a number >= 0, not {value!r}")
        return float(value)
    if key in ("max_gpus", "max_workers"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SettingsError(f"{where}: policy.{key} must be an integer >= 0, not {value!r}")
        return value
    if key == "export_requires_gate":
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: policy.{key} must be true or false, not {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{where}: policy.{key} must be a list of names, not {value!r}")
    return tuple(value)


def _estimate_settings(table: Mapping[str, Any], file: str, lines: Mapping[str, int]) -> EstimateSettings:
    out: dict[str, Any] = {}
    for key in ("chars_per_token", "scale_efficiency", "inference_speedup"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SettingsError(f"{file}:{lines.get(f'estimates.{key}', 0)}: estimates.{key} must be a number > 0, not {value!r}")
            out[key] = float(value)
    if "currency" in table:
        out["currency"] = str(table["currency"])
    labels = table.get("accelerator_labels", {})
    if not isinstance(labels, dict) or not all(str(k).isdigit() and isinstance(v, str) for k, v in labels.items()):
        raise SettingsError(f"{file}:{lines.get('estimates.accelerator_labels', 0)}: estimates.accelerator_labels maps "
                            "CML accelerator label ids to device kinds, e.g. { 3 = \"a100\" }")
    out["accelerator_labels"] = {int(k): v for k, v in labels.items()}
    devices = dict(DEFAULT_DEVICES)
    for name, body in _table(table.get("devices", {}), "estimates.devices", tuple(table.get("devices", {})), file, lines).items():
        checked = _table(body, f"estimates.devices.{name}", DEVICE_KEYS, file, lines)
        base = devices.get(name)
        missing = [k for k in DEVICE_KEYS if k not in checked and base is None]
        if missing:
            raise SettingsError(f"{file}:{lines.get(f'estimates.devices.{name}', 0)}: device kind {name!r} needs {', '.join(missing)}")
        for key, value in checked.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (key != "price_per_hour" and value == 0):
                raise SettingsError(f"{file}:{lines.get(f'estimates.devices.{name}.{key}', 0)}: "
                                    f"estimates.devices.{name}.{key} must be a positive number, not {value!r}")
        merged = {**(vars(base) if base else {}), **checked}
        devices[name] = DeviceRate(float(merged["tokens_per_second"]), int(merged["parameters"]), float(merged["price_per_hour"]))
    return EstimateSettings(devices=devices, **out)


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """`table.key` (and `table`) -> its 1-based line in a TOML text: what a diagnostic points at."""
    out: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            table = ".".join(part.strip().strip("\"'") for part in header.group(1).split("."))
            out.setdefault(table, number)
        elif key := _KEY.match(line):
            out.setdefault(f"{table}.{key.group(1).strip(chr(34) + chr(39))}" if table else key.group(1), number)
    return out


# -- the manifests ------------------------------------------------------------------------------


def check_manifests(manifests: Iterable[Manifest], settings: PolicySettings, *, default_backend: str = "local") -> list[Diagnostic]:
    """What the manifests break of the policy, each at the field that breaks it."""
    models = {m.name: m.resource for m in manifests if isinstance(m.resource, Model)}
    out: list[Diagnostic] = []
    for manifest in manifests:
        out += _job_checks(manifest, settings, default_backend)
        out += _base_model_checks(manifest, settings, models)
        job = manifest.resource
        if settings.export_requires_gate and isinstance(job, ModelExport) and job.spec.gate is None \
                and getattr(job.spec, "select", None) is None:
            out.append(_violation("export_requires_gate", f"{manifest.address} exports without an evaluation gate "
                                  "(policy export_requires_gate)", manifest.at("spec"), manifest, settings))
    return out


def _job_checks(manifest: Manifest, settings: PolicySettings, default_backend: str) -> list[Diagnostic]:
    job = manifest.resource
    if not isinstance(job, FineTuningJob | EvaluationJob):
        return []
    out = []
    if isinstance(job, FineTuningJob):
        world = topology(job.spec.resources.model_dump())
        gpus, workers = world.first.gpu + (world.workers - 1) * world.others.gpu, world.workers
    else:
        gpus, workers = (job.spec.resources.gpu or 0) if job.spec.resources else 0, job.spec.num_workers or 1
    if settings.max_gpus is not None and gpus > settings.max_gpus:
        out.append(_violation("max_gpus", f"{manifest.address} asks for {gpus} GPUs, more than policy max_gpus "
                              f"{settings.max_gpus}", manifest.at("spec", "resources"), manifest, settings))
    if settings.max_workers is not None and workers > settings.max_workers:
        out.append(_violation("max_workers", f"{manifest.address} asks for {workers} workers, more than policy max_workers "
                              f"{settings.max_workers}", manifest.at("spec", "resources" if isinstance(job, FineTuningJob) else "num_workers"),
                              manifest, settings))
    backend = job.spec.backend or default_backend
    if settings.allowed_backends is not None and backend not in settings.allowed_backends:
        out.append(_violation("allowed_backends", f"{manifest.address} runs on backend {backend!r}, which policy "
                              f"allowed_backends ({', '.join(settings.allowed_backends) or 'none'}) does not allow",
                              manifest.at("spec", "backend") if job.spec.backend else manifest.at("spec"), manifest, settings))
    return out


def _base_model_checks(manifest: Manifest, settings: PolicySettings, models: Mapping[str, Any]) -> list[Diagnostic]:
    allowed = settings.allowed_base_models
    if allowed is None:
        return []
    job = manifest.resource
    refs: list[tuple[Any, Location]] = []
    if isinstance(job, FineTuningJob | ModelExport):
        refs.append((job.spec.base_model, manifest.at("spec", "base_model")))
    elif isinstance(job, EvaluationJob):
        refs += [(c.model, manifest.at("spec", "combinations", i, "model")) for i, c in enumerate(job.spec.combinations)]
    out, seen = [], set()
    for ref, where in refs:
        names = _model_names(ref, models)
        if (where.line, *names) in seen:  # combinations a sweep expands share their line and model: said once
            continue
        seen.add((where.line, *names))
        if names and not any(n in allowed for n in names):
            out.append(_violation("allowed_base_models", f"{manifest.address} uses base model {' / '.join(names)}, which policy "
                                  f"allowed_base_models does not list", where, manifest, settings))
    return out


def _model_names(ref: Any, models: Mapping[str, Any]) -> list[str]:
    """A model reference's names: its manifest's and its Hub id ([] for a store id: not judged here)."""
    if not isinstance(ref, str):
        return []
    model = models.get(ref)
    hub = model.spec.huggingface_model_name if model is not None else None
    return [ref, *([hub] if hub else [])]


def _violation(key: str, summary: str, location: Location, manifest: Manifest, settings: PolicySettings) -> Diagnostic:
    line = settings.lines.get(key, 0)
    return make_diag(CODE[key], summary, location=location, address=manifest.address,
                     detail=f"policy key {key} ({settings.file}:{line})" if settings.file else f"policy key {key}")


# -- the plan -----------------------------------------------------------------------------------


def blockers_of(diagnostics: Iterable[Diagnostic], changes: Iterable[Change]) -> list[Blocker]:
    """The policy diagnostics of objects the plan changes or launches (now or later), as blockers."""
    acting = {c.address for c in changes if c.action.is_change() or c.launches or c.waits_for}
    out = []
    for diag in diagnostics:
        if diag.code in KEY_OF and diag.address in acting:
            loc = diag.location
            out.append(Blocker(diag.address or "plan", diag.code, diag.summary, KEY_OF[diag.code],
                               loc.file if loc else "", loc.line if loc else 0))
    return out


def check_totals(estimate: CostEstimate | None, settings: PolicySettings) -> list[Blocker]:
    """The plan's GPU-hours and cost against max_gpu_hours and max_cost (at their lines in ftctl.toml)."""
    if estimate is None:
        return []
    out = []
    if settings.max_gpu_hours is not None and estimate.gpu_hours > settings.max_gpu_hours:
        out.append(Blocker("plan", CODE["max_gpu_hours"], f"the plan's jobs take {estimate.gpu_hours:.3g} GPU-hours, more than "
                           f"policy max_gpu_hours {settings.max_gpu_hours:g}", "max_gpu_hours", settings.file,
                           settings.lines.get("max_gpu_hours", 0)))
    if settings.max_cost is not None and estimate.cost > settings.max_cost:
        out.append(Blocker("plan", CODE["max_cost"], f"the plan's jobs cost {estimate.cost:.3g} {estimate.currency}, more than "
                           f"policy max_cost {settings.max_cost:g}", "max_cost", settings.file, settings.lines.get("max_cost", 0)))
    return out


@dataclass(frozen=True)
class Override:
    """`apply --override-policy KEY --reason TEXT`: the policy keys whose blockers apply waives, why, and who."""

    keys: tuple[str, ...]
    reason: str
    actor: str = ""

    def record(self, waived: Iterable[Blocker]) -> dict[str, Any]:
        """What the journal keeps of it."""
        return {"policy_override": list(self.keys), "reason": self.reason, "actor": self.actor,
                "waived": [f"{b.code} {b.address}: {b.message}" for b in waived]}


def unknown_keys(keys: Iterable[str]) -> list[str]:
    """Override keys that are no policy key, each with a did-you-mean."""
    out = []
    for key in keys:
        if key not in POLICY_KEYS:
            close = difflib.get_close_matches(key, POLICY_KEYS, n=1)
            out.append(f"{key!r} is no policy key" + (f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(POLICY_KEYS)})"))
    return out


def waive(plan: Plan, override: Override | None) -> tuple[Plan, list[Blocker]]:
    """The plan less the policy blockers the override names, and those blockers; other blockers
    (protection, mass deletion, dependants, other policy keys) stay."""
    if override is None:
        return plan, []
    waived = [b for b in plan.blockers if b.policy_key and b.policy_key in override.keys]
    return replace(plan, blockers=tuple(b for b in plan.blockers if b not in waived)), waived
