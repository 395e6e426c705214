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

from reconciler.records import Row, float32
from reconciler.runtime import CONTRACT_VERSION

PREFIX = {"FineTuningJob": "train", "EvaluationJob": "eval", "ModelExport": "export"}
RUNNER_KIND = {"FineTuningJob": "train", "EvaluationJob": "evaluate", "ModelExport": "export"}
DEFAULT_TRACKING_URI = "sqlite:///.app/mlflow.db"
EVALUATION_FOLDER = "evaluation"  # in an evaluation job's folder: the Studio's result files
NAMED_KEYS = ("job_name", "outputs", "tracking")  # follow from the job's name and this machine: not in its digest


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
    def floats(item: Any) -> Any:
        if isinstance(item, float):
            return float32(item) if math.isfinite(item) else repr(item)
        if isinstance(item, list | tuple):
            return [floats(i) for i in item]
        if isinstance(item, Mapping):
            return {str(k): floats(v) for k, v in item.items()}
        return item

    body = {k: v for k, v in document.items() if k not in NAMED_KEYS}
    text = json.dumps(floats(json.loads(json.dumps(body, default=str))), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def _json(text: Any) -> Any:
    if text in (None, ""):
        return None
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None


def model_source(row: Row) -> dict[str, Any]:
    kind = str(row.get("type") or "huggingface")
    if kind == "huggingface":
        return {"type": kind, "name_or_path": str(row.get("huggingface_model_name") or row.get("name") or "")}
    if kind == "model_registry":
        return {"type": kind, "name_or_path": str(row.get("cml_registered_model_id") or "")}
    return {"type": "project", "name_or_path": str(row.get("location") or "")}


def dataset_source(row: Row) -> dict[str, Any]:
    kind = str(row.get("type") or "")
    where = row.get("huggingface_name") if kind == "huggingface" else row.get("location")
    features = _json(row.get("features"))
    return {"type": kind, "name_or_path": str(where or ""), "features": features if isinstance(features, list) else None}


def prompt_templates(row: Row) -> dict[str, str]:
    return {k: str(row.get(k) or "") for k in ("prompt_template", "input_template", "completion_template")}


def _with_token(source: dict[str, Any], row: Row, hf_token_env: str | None, token_envs: Mapping[str, str]) -> dict[str, Any]:
    """A model or dataset source with the variable holding its Hub token: the job's own
    `hf_token_env`, else the one the model's or dataset's manifest names."""
    name = hf_token_env or token_envs.get(str(row.get("id") or ""))
    return {**source, "hf_token_env": name} if name else source


def _base(kind: str, name: str, settings: JobSettings, *, model: Row, dataset: Row | None, prompt: Row | None,
          tracking_group: str | None, hf_token_env: str | None, token_envs: Mapping[str, str]) -> dict[str, Any]:
    folder = settings.job_dir(name)
    source = _with_token(model_source(model), model, hf_token_env, token_envs)
    return {
        "contract_version": CONTRACT_VERSION,
        "kind": kind,
        "job_name": name,
        "seed": 42,
        "model": source,
        "dataset": _with_token(dataset_source(dataset), dataset, hf_token_env, token_envs) if dataset else None,
        "prompt": prompt_templates(prompt) if prompt else None,
        "outputs": {"dir": folder, "result": f"{folder}/result.json", "progress": f"{folder}/progress.json",
                    "adapter_dir": f"{folder}/adapter" if kind == "train" else None,
                    **({"evaluation_dir": settings.evaluation_dir(name)} if kind == "evaluate" else {})},
        "tracking": {"tracking_uri": settings.tracking_uri, "registry_uri": settings.registry_uri,
                     "experiment": settings.experiment, "artifact_location": settings.artifact_location,
                     "run_group": tracking_group},
    }


def _number(value: Any) -> Any:
    return None if value in (None, "") else value


def job_resources(row: Row, dist: Any = None) -> dict[str, Any]:
    """The `resources` block of a job input from a Studio job row (num_cpu, num_memory, num_gpu,
    gpu_label_id, num_workers) and, for distributed training, [dist_cpu, dist_gpu, dist_memory]."""
    out = {"cpu": _number(row.get("num_cpu")), "memory": _number(row.get("num_memory")), "gpu": _number(row.get("num_gpu")),
           "gpu_label_id": _number(row.get("gpu_label_id")), "num_workers": int(row.get("num_workers") or 1)}
    if isinstance(dist, list | tuple) and len(dist) == 3:
        out.update(dist_cpu=dist[0], dist_gpu=dist[1], dist_memory=dist[2])
    return out


def train_input(name: str, job: Row, *, rows: Callable[[str, Any], Row | None], settings: JobSettings,
                hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None, axolotl: Any = None,
                dist: Any = None) -> dict[str, Any] | None:
    model, dataset = rows("models", job.get("base_model_id")), rows("datasets", job.get("dataset_id"))
    prompt = rows("prompts", job.get("prompt_id"))
    if model is None or dataset is None:
        return None
    out = _base("train", name, settings, model=model, dataset=dataset, prompt=prompt, tracking_group=None,
                hf_token_env=hf_token_env, token_envs=token_envs or {})
    out["train"] = {
        "framework_type": job.get("framework_type") or "legacy",
        "adapter_name": job.get("adapter_name") or "",
        "lora_config": _json(job.get("lora_config")),
        "training_arguments": _json(job.get("training_arguments_config")),
        "bnb_config": _json(job.get("model_bnb_config")),
        "adapter_bnb_config": _json(job.get("adapter_bnb_config")),
        "axolotl_config": axolotl,
        "dataset_fraction": float(job.get("dataset_fraction") or 1.0),
        "train_test_split": float(job.get("train_test_split") or 0.9),
        "num_epochs": job.get("num_epochs"),
        "learning_rate": job.get("learning_rate"),
    }
    out["resources"] = job_resources(job, dist)
    return out


def evaluate_input(name: str, evaluation: Row, *, rows: Callable[[str, Any], Row | None], settings: JobSettings,
                   adapter: Row | None, split: float, fraction: float, max_rows: int | None,
                   hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    model, dataset = rows("models", evaluation.get("base_model_id")), rows("datasets", evaluation.get("dataset_id"))
    prompt = rows("prompts", evaluation.get("prompt_id"))
    if model is None or dataset is None or prompt is None:
        return None
    out = _base("evaluate", name, settings, model=model, dataset=dataset, prompt=prompt,
                tracking_group=str(evaluation.get("parent_job_id") or ""), hf_token_env=hf_token_env, token_envs=token_envs or {})
    label = str(adapter.get("name")) if adapter else f"{model.get('name')} (base)"
    out["evaluate"] = {
        "candidates": [{"label": label, "model": out["model"],
                        "adapter_path": str(adapter.get("location")) if adapter else None,
                        "evaluation_id": str(evaluation.get("id"))}],
        "generation_config": _json(evaluation.get("generation_config")),
        "bnb_config": _json(evaluation.get("model_bnb_config")),
        "eval_dataset_fraction": fraction,
        "train_test_split": split,
        "max_rows": max_rows,
    }
    out["resources"] = job_resources(evaluation)
    return out


def export_input(name: str, *, model: Row, adapter: Row | None, registered_model_name: str, merge: bool,
                 export_type: str, generation_config: Any, settings: JobSettings,
                 hf_token_env: str | None = None, token_envs: Mapping[str, str] | None = None,
                 resources: dict[str, Any] | None = None) -> dict[str, Any]:
    out = _base("export", name, settings, model=model, dataset=None, prompt=None, tracking_group=None,
                hf_token_env=hf_token_env, token_envs=token_envs or {})
    out["export"] = {"type": export_type, "registered_model_name": registered_model_name,
                     "adapter_path": str(adapter.get("location")) if adapter else None, "merge": merge,
                     "generation_config": generation_config}
    # An endpoint is deployed with the manifest's resources; a registry export is a plain job (no GPU needed).
    res = (resources or {}) if export_type == "cml_model" else {"cpu": 2, "memory": 8, "gpu": 0}
    out["resources"] = {"cpu": res.get("cpu"), "memory": res.get("memory"), "gpu": res.get("gpu"), "num_workers": 1}
    return out
