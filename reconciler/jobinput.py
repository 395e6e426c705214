"""Job names and job-input documents, built from the rows a plan writes. Pure.

A job name is deterministic (kind, object name, generation, combination, the store's identity and
the digest of the job's input): the idempotency key of a launch, so an apply that crashed after
launching finds its job instead of starting another, while no two stores and no two inputs ever
share a job (a job found by name ran exactly this input for this store).
The job input carries everything the runner needs (see `contract.py`), resolved from the Studio
rows the plan writes or the store holds: model and dataset sources, prompt templates, config
bodies, split and fraction, output folders, the MLflow store. Secrets travel as variable names.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import kinds
from reconciler.records import Row, float32
from reconciler.runtime import CONTRACT_VERSION

PREFIX = {"FineTuningJob": "train", "EvaluationJob": "eval", "ModelExport": "export"}
DEFAULT_TRACKING_URI = "sqlite:///.app/mlflow.db"
EVALUATION_FOLDER = "evaluation"  # in an evaluation job's folder: the Studio's result files
# Follow from the job's name and this machine, or say where its inputs came from (`lineage`): not in its digest.
NAMED_KEYS = ("job_name", "outputs", "tracking", "lineage")


@dataclass(frozen=True)
class JobSettings:
    """Where jobs put their files and log their runs (the backend's and MLflow's places)."""

    jobs_root: str = ".app/jobs"
    tracking_uri: str = DEFAULT_TRACKING_URI
    registry_uri: str | None = None
    experiment: str = "ftctl"
    artifact_location: str = ".app/mlruns"
    backend: str = "local"

    def job_dir(self, job_name: str) -> str:
        return f"{self.jobs_root.rstrip('/')}/{job_name}"

    def evaluation_dir(self, job_name: str) -> str:
        """An evaluation job's results in the Studio's files: the `evaluation_dir` of its row."""
        return f"{self.job_dir(job_name)}/{EVALUATION_FOLDER}"


def job_prefix(kind: str, name: str, generation: int, index: int | None = None, *, store_id: str) -> str:
    """`ftctl-train-<slug>-<hash>-g<gen>[-<i>]-<store8>-`: what every job of this object's generation
    (and combination) in this store is named with, whatever its input."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"
    tag = hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()[:6]
    suffix = f"-{index}" if index is not None else ""
    store = re.sub(r"[^a-z0-9]", "", store_id.lower())[:8] or "nostore"
    return f"ftctl-{PREFIX[kind]}-{slug}-{tag}-g{generation}{suffix}-{store}-"


def job_name(kind: str, name: str, generation: int, index: int | None = None, *, store_id: str, digest: str) -> str:
    """`<job_prefix><input8>`: stable, readable, safe as a folder or CML job name (`input_digest`)."""
    return f"{job_prefix(kind, name, generation, index, store_id=store_id)}{digest[:8]}"


def input_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of a job input as launched, less what follows from its name or this machine (the
    job's name, its output folder, where MLflow logs): what the job computes from. Floats count at
    float32, as the Studio's rows keep them, so a plan made from the rows a crashed apply wrote
    derives the same digest as the plan that launched."""
    body = {k: v for k, v in document.items() if k not in NAMED_KEYS}
    try:
        canonical = _plain(body)
    except _NotPlainError:  # a value JSON writes otherwise (str() of an object, a non-str key): as JSON reads it back
        canonical = _floats(json.loads(json.dumps(body, default=str)))
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _NotPlainError(Exception):
    """A value outside plain JSON types: `input_digest` takes the JSON round trip."""


def _floats(item: Any) -> Any:
    """Floats at float32 (non-finite ones as their repr), tuples as lists, keys as strings."""
    if isinstance(item, float):
        return float32(item) if math.isfinite(item) else repr(item)
    if isinstance(item, list | tuple):
        return [_floats(i) for i in item]
    if isinstance(item, Mapping):
        return {str(k): _floats(v) for k, v in item.items()}
    return item


_SCALARS = (str, int, bool, type(None))


def _plain(item: Any) -> Any:
    """`_floats` of an input made of plain JSON types only (dicts with str keys, lists, tuples, str,
    int, float, bool, None), whose JSON round trip changes nothing else: that round trip (~half of
    the digest's time, which a large plan pays thousands of times) is skipped. _NotPlainError otherwise."""
    kind = type(item)
    if kind in _SCALARS:
        return item
    if kind is float:
        return float32(item) if math.isfinite(item) else repr(item)
    if kind is dict:
        if not all(type(k) is str for k in item):
            raise _NotPlainError
        return {k: _plain(v) for k, v in item.items()}
    if kind is list or kind is tuple:
        return [_plain(i) for i in item]
    raise _NotPlainError


def records_its_input(job_name: str, document: Mapping[str, Any] | None) -> bool:
    """Whether a job's recorded input (its folder's input.json, a CML job's FTCTL_JOB_INPUT) has the
    digest its name ends with: a backend adopts a job found under a name only when it does."""
    return isinstance(document, Mapping) and job_name.rpartition("-")[2] == input_digest(document)[:8]


def named_input(kind: str, name: str, generation: int, index: int | None = None, *, store_id: str,
                build: Callable[[str], dict[str, Any] | None]) -> tuple[str, dict[str, Any] | None]:
    """(job name, job input under that name): `build(job name)` makes the input; the name carries
    the digest of what it builds (which leaves the name out), so it is built twice."""
    draft = build(job_prefix(kind, name, generation, index, store_id=store_id))
    if draft is None:
        return job_prefix(kind, name, generation, index, store_id=store_id).rstrip("-"), None
    final = job_name(kind, name, generation, index, store_id=store_id, digest=input_digest(draft))
    return final, build(final)


def _with_token(source: dict[str, Any], row: Row, hf_token_env: str | None, token_envs: Mapping[str, str]) -> dict[str, Any]:
    """A model or dataset source with the variable holding its Hub token: the job's own
    `hf_token_env`, else the one the model's or dataset's manifest names."""
    name = hf_token_env or token_envs.get(str(row.get("id") or ""))
    return {**source, "hf_token_env": name} if name else source


def _base(kind: str, name: str, settings: JobSettings, *, model: Row, dataset: Row | None, prompt: Row | None,
          tracking_group: str | None, hf_token_env: str | None, token_envs: Mapping[str, str]) -> dict[str, Any]:
    folder = settings.job_dir(name)
    source = _with_token(kinds.model.source(model), model, hf_token_env, token_envs)
    return {
        "contract_version": CONTRACT_VERSION,
        "kind": kind,
        "job_name": name,
        "seed": 42,
        "model": source,
        "dataset": _with_token(kinds.dataset.source(dataset), dataset, hf_token_env, token_envs) if dataset else None,
        "prompt": kinds.prompt.templates(prompt) if prompt else None,
        "outputs": {"dir": folder, "result": f"{folder}/result.json", "progress": f"{folder}/progress.json",
                    "adapter_dir": f"{folder}/adapter" if kind == "train" else None,
                    **({"evaluation_dir": settings.evaluation_dir(name)} if kind == "evaluate" else {})},
        "tracking": {"tracking_uri": settings.tracking_uri, "registry_uri": settings.registry_uri,
                     "experiment": settings.experiment, "artifact_location": settings.artifact_location,
                     "run_group": tracking_group},
    }


def train_input(name: str, job: Row, *, rows: Callable[[str, Any], Row | None], settings: JobSettings,
                hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None, axolotl: Any = None,
                dist: Any = None) -> dict[str, Any] | None:
    model_id, dataset_id, prompt_id = kinds.fine_tuning_job.inputs(job)
    model, dataset, prompt = rows("models", model_id), rows("datasets", dataset_id), rows("prompts", prompt_id)
    if model is None or dataset is None:
        return None
    out = _base("train", name, settings, model=model, dataset=dataset, prompt=prompt, tracking_group=None,
                hf_token_env=hf_token_env, token_envs=token_envs or {})
    out["train"] = kinds.fine_tuning_job.train_block(job, axolotl=axolotl)
    out["resources"] = kinds.fine_tuning_job.resources(job, dist)
    return out


def evaluate_input(name: str, evaluation: Row, *, rows: Callable[[str, Any], Row | None], settings: JobSettings,
                   adapter: Row | None, split: float, fraction: float, max_rows: int | None,
                   hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    model_id, dataset_id, prompt_id = kinds.evaluation_job.inputs(evaluation)
    model, dataset, prompt = rows("models", model_id), rows("datasets", dataset_id), rows("prompts", prompt_id)
    if model is None or dataset is None or prompt is None:
        return None
    out = _base("evaluate", name, settings, model=model, dataset=dataset, prompt=prompt,
                tracking_group=kinds.evaluation_job.parent(evaluation), hf_token_env=hf_token_env, token_envs=token_envs or {})
    out["evaluate"] = kinds.evaluation_job.evaluate_block(evaluation, model=model, adapter=adapter, model_source=out["model"],
                                                          fraction=fraction, split=split, max_rows=max_rows)
    out["resources"] = kinds.evaluation_job.resources(evaluation)
    return out


def export_input(name: str, *, model: Row, adapter: Row | None, registered_model_name: str, merge: bool,
                 export_type: str, generation_config: Any, settings: JobSettings,
                 hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None,
                 resources: dict[str, Any] | None = None) -> dict[str, Any]:
    out = _base("export", name, settings, model=model, dataset=None, prompt=None, tracking_group=None,
                hf_token_env=hf_token_env, token_envs=token_envs or {})
    out["export"] = {"type": export_type, "registered_model_name": registered_model_name,
                     "adapter_path": kinds.adapter.location(adapter) if adapter else None, "merge": merge,
                     "generation_config": generation_config}
    # An endpoint is deployed with the manifest's resources; a registry export is a plain job (no GPU needed).
    res = (resources or {}) if export_type == "cml_model" else {"cpu": 2, "memory": 8, "gpu": 0}
    out["resources"] = {"cpu": res.get("cpu"), "memory": res.get("memory"), "gpu": res.get("gpu"), "num_workers": 1}
    return out
