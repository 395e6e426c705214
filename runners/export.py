"""The export runner: base model + adapter as a text-generation pipeline in the MLflow model registry.

A program, not a library: `python runners/export.py --input job.json` (or FTCTL_JOB_INPUT). It
reads a job input (schemas/job-input.schema.json, kind "export") and always ends by writing its
job result (schemas/job-result.schema.json) through `jobio.run`. Never imports ftctl.

`export.type: model_registry` (the Studio's `export_model_registry_model`):

1. if a version of `registered_model_name` already carries this job's name (tag `ftctl.job_name`:
   the job name is the launch's idempotency key), that version is the result and nothing is logged
   again: MLflow registration itself is not idempotent, every `log_model` adds a version;
2. the base model is loaded, plus the adapter (`export.adapter_path`) as a PEFT model;
3. the adapter is merged into the base (`merge_and_unload`) when `export.merge` asks for it, and
   also whenever the base is a local directory: MLflow logging a PEFT model over a local base
   saves LoRA-keyed weights that reload as random projections (reference/ml-stack.md §4.4,
   mlflow/mlflow#23761); the result says `merged` and why (`merge_reason`);
4. the pipeline is logged with `mlflow.transformers.log_model(..., registered_model_name=...)`, with
   explicit `pip_requirements` (MLflow's defaults add `torchvision` for every torch model and
   crash where it is not installed) and the generation config as the pipeline's inference
   defaults (`model_config`; the pyfunc returns only the new text: `return_full_text: false`).

`export.type: cml_model` (a CML Model endpoint) needs the CML backend and fails as `unsupported`.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jobio
from jobio import JobFailure
from jobio import hf_token as _token

ARTIFACT_NAME = "model"
# What a logged model needs to load again; the local build label (`+cpu`) is dropped.
REQUIREMENTS = ("torch", "transformers", "accelerate")
LOCAL_BASE_REASON = ("the base model is a local directory: MLflow logging a PEFT model over a local base saves "
                     "LoRA-keyed weights that reload wrong (mlflow/mlflow#23761), so the adapter is merged")


# -- decisions (no ML import needed) ---------------------------------------------------------------


def merge_decision(model: dict[str, Any], spec: dict[str, Any]) -> tuple[bool, str | None]:
    """(merge the adapter into the base?, why)."""
    if not spec.get("adapter_path"):
        return False, None
    if spec.get("merge"):
        return True, "export.merge: true"
    if model["type"] in ("project", "model_registry") or Path(model["name_or_path"]).is_dir():
        return True, LOCAL_BASE_REASON
    return False, None


def pip_requirements(*, peft: bool) -> list[str]:
    """Pinned requirements of the logged model, from what this job runs with."""
    names = [*REQUIREMENTS, "peft"] if peft else list(REQUIREMENTS)
    out = []
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        out.append(f"{name}=={version.split('+')[0]}")
    return out


def inference_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's inference defaults (MLflow `model_config`): the generation config, new text only."""
    return {"return_full_text": False, **(spec.get("generation_config") or {})}


# -- the run ---------------------------------------------------------------------------------------


def export(job: dict[str, Any], progress: jobio.Progress) -> tuple[dict[str, float], dict[str, Any]]:
    spec = job.get("export")
    if not spec:
        raise JobFailure("config", "an export job needs an `export` section")
    if spec.get("type", "model_registry") == "cml_model":
        raise JobFailure("unsupported", "the cml_model route needs the CML backend")
    name = spec["registered_model_name"]
    adapter = spec.get("adapter_path")
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise JobFailure("data", f"adapter {adapter} not found: no adapter_config.json there")

    progress.update(stage="loading")
    import mlflow

    tracking = job["tracking"]
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    if tracking.get("registry_uri"):
        mlflow.set_registry_uri(tracking["registry_uri"])
    client = mlflow.MlflowClient()
    existing = existing_version(client, name, job["job_name"])
    if existing is not None:
        print(f"{name} version {existing.version} already holds job {job['job_name']}: reused", flush=True)
        return {}, {**version_artifacts(existing), "reused": True}

    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    base = local_base(job, mlflow)
    merge, reason = merge_decision(job["model"], spec)
    model, tokenizer = load(base, _token(job["model"]), adapter)
    if merge:
        progress.update(stage="merging")
        model = model.merge_and_unload()

    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    defaults = inference_defaults(spec)
    experiment = jobio.open_experiment(mlflow, tracking)
    tags = {"ftctl.job_name": job["job_name"], "ftctl.kind": "export", "ftctl.adapter": adapter or "base",
            "ftctl.merged": str(merge).lower(), **jobio.lineage_tags(job)}
    if tracking.get("run_group"):
        tags["ftctl.run_group"] = tracking["run_group"]
    progress.update(stage="logging")
    with mlflow.start_run(run_name=job["job_name"], tags=tags):
        mlflow.log_params({"base_model": job["model"]["name_or_path"], "adapter": adapter or "base",
                           "merged": merge, "registered_model_name": name,
                           "generation_config": json.dumps(defaults, sort_keys=True)})
        info = mlflow.transformers.log_model(
            transformers_model=pipe,
            name=ARTIFACT_NAME,
            task="text-generation",
            registered_model_name=name,
            pip_requirements=pip_requirements(peft=bool(adapter) and not merge),
            model_config=defaults,
            signature=signature(defaults),
            metadata={"ftctl.job_name": job["job_name"], "ftctl.merged": merge},
        )
    version = str(info.registered_model_version)
    for key, value in {**tags, "ftctl.base_model": job["model"]["name_or_path"]}.items():
        client.set_model_version_tag(name, version, key, value)
    registered = client.get_model_version(name, version)
    artifacts = {**version_artifacts(registered), "mlflow_experiment_id": experiment.experiment_id,
                 "logged_model_uri": info.model_uri, "merged": merge, "merge_reason": reason, "reused": False}
    print(json.dumps({"event": "exported", **{k: v for k, v in artifacts.items() if k != "merge_reason"}}), flush=True)
    return {}, artifacts


def existing_version(client: Any, name: str, job_name: str) -> Any:
    """The ready version of `name` a previous launch of this job registered, if any."""
    quoted = name.replace("'", "\\'")
    versions = client.search_model_versions(f"name = '{quoted}'")
    mine = [v for v in versions if (v.tags or {}).get("ftctl.job_name") == job_name and v.status == "READY"]
    return max(mine, key=lambda v: int(v.version)) if mine else None


def version_artifacts(version: Any) -> dict[str, Any]:
    return {
        "registered_model_name": version.name,
        "registered_model_version": str(version.version),
        "model_uri": f"models:/{version.name}/{version.version}",
        "mlflow_run_id": version.run_id,
        "merged": (version.tags or {}).get("ftctl.merged") == "true",
    }


def signature(defaults: dict[str, Any]) -> Any:
    """Text in, text out; the inference defaults as parameters a caller may override."""
    from mlflow.models import infer_signature

    params = {k: v for k, v in defaults.items() if isinstance(v, (bool, int, float, str))}
    return infer_signature(["prompt"], ["completion"], params=params or None)


def local_base(job: dict[str, Any], mlflow: Any) -> str:
    """Where the base model loads from: a Hub id or a directory; a registry model is fetched first."""
    source = job["model"]
    kind, where = source["type"], source["name_or_path"]
    if kind == "model_registry":
        try:
            components = mlflow.transformers.load_model(where, return_type="components")
        except mlflow.exceptions.MlflowException as exc:
            raise JobFailure("data", f"cannot load model {where} from the registry: {exc}") from exc
        local = Path(job["outputs"]["dir"]) / "base-model"
        components["model"].save_pretrained(local)
        components["tokenizer"].save_pretrained(local)
        return str(local)
    if kind == "project" and not Path(where).is_dir():
        raise JobFailure("data", f"model project: {where} is not a directory")
    return where


def load(base: str, token: str | None, adapter: str | None) -> tuple[Any, Any]:
    model, _, tokenizer = jobio.load_model(base, adapter, token, dtype="auto")  # weights as stored
    return model.eval(), tokenizer


def main() -> None:
    sys.exit(jobio.run("export", export))


if __name__ == "__main__":
    main()
