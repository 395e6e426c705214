"""The job contract: what a runner is given (`JobInput`) and what it hands back (`JobResult`).

The only link between ftctl and `runners/`: ftctl writes a job-input JSON file, a runner reads it,
does the work, and writes progress and a job-result JSON file; runners never import ftctl and
never call back. Both shapes are versioned and published as JSON Schemas in `schemas/`
(`job-input.schema.json`, `job-result.schema.json`), which the runners validate against. Secrets
travel only as names of environment variables (`*_env`), never as values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.runtime import CONTRACT_VERSION, RETRYABLE

__all__ = ["CONTRACT_VERSION", "RETRYABLE", "JobInput", "JobResult", "contract_schemas"]

JobKind = Literal["train", "evaluate", "export"]
JobStatus = Literal["succeeded", "failed"]
# Error classes a runner reports. Only those in RETRYABLE are retried (`retries: N`).
ErrorClass = Literal["data", "config", "unsupported", "resources", "dependency", "transient", "killed", "cancelled", "internal"]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(Contract):
    type: Literal["huggingface", "project", "model_registry"]
    name_or_path: str = Field(description="Hub id, local directory, or registry URI (models:/name/version).")
    hf_token_env: str | None = None


class DatasetSource(Contract):
    type: Literal["huggingface", "project", "project_csv", "project_json", "project_jsonl"]
    name_or_path: str
    features: list[str] | None = None
    hf_token_env: str | None = None


class PromptTemplates(Contract):
    prompt_template: str
    input_template: str = ""
    completion_template: str = ""


class Outputs(Contract):
    dir: str = Field(description="The job's own folder: logs, progress, result, artifacts.")
    result: str = Field(description="Where the runner writes its job-result JSON.")
    progress: str = Field(description="Where the runner keeps its progress JSON (step, epoch, loss, ETA).")
    adapter_dir: str | None = Field(default=None, description="train: where the adapter is saved.")
    evaluation_dir: str | None = Field(
        default=None, description="evaluate: where the Studio's result files go (aggregregated_results.csv, "
                                  "result_evaluation.csv); the evaluation row's evaluation_dir.")


class Tracking(Contract):
    tracking_uri: str
    registry_uri: str | None = None
    experiment: str = "ftctl"
    artifact_location: str | None = Field(default=None, description="Where a new experiment keeps its artifacts.")
    run_group: str | None = Field(default=None, description="Groups runs of one request (the Studio's parent_job_id).")


class TrainSpec(Contract):
    framework_type: Literal["legacy", "axolotl"] = "legacy"
    adapter_name: str
    lora_config: dict[str, Any] | None = None
    training_arguments: dict[str, Any] | None = None
    bnb_config: dict[str, Any] | None = None
    adapter_bnb_config: dict[str, Any] | None = None
    axolotl_config: dict[str, Any] | None = None
    dataset_fraction: float = 1.0
    train_test_split: float = 0.9
    num_epochs: int | None = None
    learning_rate: float | None = None


class Candidate(Contract):
    """One model+adapter combination of an evaluation."""

    label: str
    model: ModelSource
    adapter_path: str | None = None
    evaluation_id: str = Field(description="The Studio evaluation_jobs row this combination is.")


class EvaluateSpec(Contract):
    candidates: list[Candidate]
    generation_config: dict[str, Any] | None = None
    bnb_config: dict[str, Any] | None = None
    eval_dataset_fraction: float = 1.0
    train_test_split: float = 0.9
    max_rows: int | None = Field(default=None, description="Evaluate at most this many test rows.")


class ExportSpec(Contract):
    type: Literal["model_registry", "cml_model"] = "model_registry"
    registered_model_name: str
    adapter_path: str | None = None
    merge: bool = False
    generation_config: dict[str, Any] | None = None


class Resources(Contract):
    """What the job asks of the machine: used by backends that schedule (CML), ignored locally."""

    cpu: float | None = None
    memory: float | None = Field(default=None, description="GB.")
    gpu: int | None = None
    gpu_label_id: int | None = Field(default=None, description="CML accelerator label id.")
    num_workers: int = 1
    dist_cpu: float | None = Field(default=None, description="Per additional worker (distributed training).")
    dist_memory: float | None = None
    dist_gpu: int | None = None


class Lineage(Contract):
    """Where the job's output comes from (`reconciler.lineage`): recorded in ftctl's `ftctl_lineage`
    table at launch and logged by the runner as `ftctl.lineage.*` MLflow tags on its runs and
    registered versions. Not part of the job's identity (its name's input digest leaves it out)."""

    commit: str = Field(description="Git commit of the manifests' repository: <sha>, <sha>-dirty, or unknown.")
    dataset_digest: str = Field(description="sha256 of the dataset file's bytes, or unknown (a Hub dataset, no dataset).")
    base_revision: str = Field(description="The base model's revision, or unknown.")
    config_digests: dict[str, str] = Field(default_factory=dict, description="sha256 of each config body, by its key.")
    ftctl_version: str
    input_digest: str = Field(description="sha256 of this input less its name, folders, tracking and lineage.")
    reuse_key: str = Field(description="sha256 of the input digest, dataset digest and base revision: equal keys, "
                                       "equal outputs; ftctl reuses a succeeded job's output for an equal key.")


class JobInput(Contract):
    contract_version: Literal[1] = CONTRACT_VERSION
    kind: JobKind
    job_name: str = Field(description="Deterministic: the idempotency key of the launch.")
    seed: int = 42
    model: ModelSource
    dataset: DatasetSource | None = None
    prompt: PromptTemplates | None = None
    train: TrainSpec | None = None
    evaluate: EvaluateSpec | None = None
    export: ExportSpec | None = None
    outputs: Outputs
    tracking: Tracking
    resources: Resources = Field(default_factory=Resources)
    lineage: Lineage | None = None


class JobError(Contract):
    error_class: ErrorClass
    type: str
    message: str


class JobResult(Contract):
    contract_version: Literal[1] = CONTRACT_VERSION
    job_name: str
    status: JobStatus
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    started_at: float
    finished_at: float


def contract_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of each contract document."""
    return {
        "job-input.schema.json": {"$schema": "https://json-schema.org/draft/2020-12/schema", **JobInput.model_json_schema()},
        "job-result.schema.json": {"$schema": "https://json-schema.org/draft/2020-12/schema", **JobResult.model_json_schema()},
    }
