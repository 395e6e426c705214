"""ModelExport manifests: base model + adapter to the MLflow registry or a CML model endpoint."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from reconciler.models.base import (
    MAX_CPU,
    MAX_GPU,
    MAX_MEMORY_GB,
    MAX_RETRIES,
    ConfigSource,
    Ref,
    Resource,
    Strict,
)

EXPORT_TYPES = ("model_registry", "cml_model")
# The metrics an evaluation reports (runners/evaluate.py `summarize`; a test keeps the two equal), as
# they are for one combination, or as `<label>.<metric>` for several: the names a gate may compare.
EVALUATION_METRICS = ("exact_match", "rougeL", "latency_s", "rows")


class EndpointResources(Strict):
    cpu: int = Field(default=2, le=MAX_CPU)
    memory: int = Field(default=8, le=MAX_MEMORY_GB)
    gpu: int = Field(default=1, le=MAX_GPU)


class Gate(Strict):
    evaluation: str = Field(description="The EvaluationJob whose metric gates this export.")
    metric: str = Field(description="Metric name, e.g. rougeL or exact_match.")
    min: float | None = None
    max: float | None = None


class Select(Strict):
    evaluation: str = Field(description="The EvaluationJob whose results choose the adapter (one that evaluates a sweep).")
    metric: str = Field(description="Metric name, e.g. rougeL or exact_match.")
    mode: Literal["max", "min"] = Field(default="max", description="max: the highest value wins; min: the lowest.")


class ModelExportSpec(Strict):
    type: str = Field(default="model_registry", description="model_registry or cml_model.")
    base_model: Ref | None = None
    adapter: Ref | None = None
    model_name: str | None = Field(default=None, description="Registered model name (default: metadata.name).")
    merge: bool = Field(default=False, description="Merge the adapter into the base weights first.")
    generation_config: ConfigSource | None = None
    bnb_config: ConfigSource | None = None
    resources: EndpointResources = Field(default_factory=EndpointResources)
    gate: Gate | None = None
    select: Select | None = Field(
        default=None,
        description="Export the best adapter an evaluation scored (instead of adapter): the plan names the trial chosen and why.",
    )
    description: str | None = None
    hf_token_env: str | None = None
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES, description="Relaunch a transient failure (killed, network) up to this many times.")
    backend: Literal["local", "cml"] | None = Field(
        default=None, description="Where the job runs: local or cml (default: --backend, FTCTL_BACKEND, or ftctl.toml; else local)."
    )


class ModelExport(Resource):
    KIND: ClassVar[str] = "ModelExport"
    RERUN: ClassVar[str] = "re-export"
    kind: Literal["ModelExport"]
    spec: ModelExportSpec

    @property
    def model_name(self) -> str:
        return self.spec.model_name if self.spec.model_name is not None else self.name
