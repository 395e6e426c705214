"""Job manifests: FineTuningJob (legacy trl or axolotl) and EvaluationJob (model+adapter pairs)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from reconciler.models.base import (
    MAX_CPU,
    MAX_EPOCHS,
    MAX_GPU,
    MAX_MEMORY_GB,
    MAX_RETRIES,
    MAX_WORKERS,
    ConfigSource,
    Ref,
    Resource,
    Strict,
)

FRAMEWORK_TYPES = ("legacy", "axolotl")
DEFAULT_TRAIN_TEST_SPLIT = 0.9
DEFAULT_DATASET_FRACTION = 1.0


class TrainingResources(Strict):
    cpu: int = Field(default=2, le=MAX_CPU, description="CPU cores of the (first) training worker.")
    memory: int = Field(default=8, le=MAX_MEMORY_GB, description="Memory in GB of the (first) training worker.")
    gpu: int = Field(default=0, le=MAX_GPU, description="GPUs of the (first) training worker.")
    num_workers: int = Field(default=1, le=MAX_WORKERS, description="Training workers (accelerate distributed).")
    gpu_label_id: int | None = Field(default=None, description="CML accelerator label id.")
    dist_cpu: int | None = Field(default=None, le=MAX_CPU, description="CPU per additional worker.")
    dist_gpu: int | None = Field(default=None, le=MAX_GPU, description="GPU per additional worker.")
    dist_memory: int | None = Field(default=None, le=MAX_MEMORY_GB, description="Memory (GB) per additional worker.")


class FineTuningJobSpec(Strict):
    framework_type: str = Field(default="legacy", description="legacy (trl SFTTrainer) or axolotl.")
    base_model: Ref | None = None
    dataset: Ref | None = None
    prompt: Ref | None = None
    adapter_name: str | None = Field(
        default=None, description="Name of the adapter this job trains (default: metadata.name)."
    )
    out_dir: str | None = Field(default=None, description="Existing directory for the adapter output.")
    num_epochs: int | None = Field(default=None, le=MAX_EPOCHS, description="Overrides training_arguments.num_train_epochs.")
    learning_rate: float | None = Field(default=None, description="Overrides training_arguments.learning_rate.")
    dataset_fraction: float = DEFAULT_DATASET_FRACTION
    train_test_split: float = DEFAULT_TRAIN_TEST_SPLIT
    lora_config: ConfigSource | None = None
    bnb_config: ConfigSource | None = Field(default=None, description="BitsAndBytes config of the base model.")
    adapter_bnb_config: ConfigSource | None = None
    training_arguments: ConfigSource | None = None
    axolotl_config: ConfigSource | None = None
    user_script: str | None = Field(default=None, description="A custom training script (path).")
    user_config: ConfigSource | None = Field(default=None, description="A custom config passed to user_script.")
    resources: TrainingResources = Field(default_factory=TrainingResources)
    cml_job_id: str | None = Field(default=None, description="The CML job that ran it. Recorded by the Studio for a run that already happened (`ftctl import`); leave it out otherwise.")
    adapter_id: Ref | None = Field(default=None, description="The adapter its run registered. Recorded by the Studio for a run that already happened (`ftctl import`); leave it out otherwise.")
    hf_token_env: str | None = None
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES, description="Relaunch a transient failure (killed, network) up to this many times.")
    backend: Literal["local", "cml"] | None = Field(
        default=None, description="Where the job runs: local or cml (default: --backend, FTCTL_BACKEND, or ftctl.toml; else local)."
    )
    matrix: dict[str, list[Any]] | None = Field(
        default=None,
        description="A sweep: values for settings of this job, each key a dotted path into the spec (learning_rate, "
        "training_arguments.learning_rate, lora_config.r, dataset, base_model). The job becomes one trial per combination "
        "of values, each a FineTuningJob of its own named <name>-<slug of its values> with its own adapter.",
    )


class FineTuningJob(Resource):
    KIND: ClassVar[str] = "FineTuningJob"
    RERUN: ClassVar[str] = "new-adapter-version"
    kind: Literal["FineTuningJob"]
    spec: FineTuningJobSpec

    @property
    def adapter_name(self) -> str:
        return self.spec.adapter_name if self.spec.adapter_name is not None else self.name

    @property
    def adapter_name_path(self) -> tuple[str, str]:
        """Where the adapter name is written: spec.adapter_name, or metadata.name by default."""
        return ("spec", "adapter_name") if self.spec.adapter_name is not None else ("metadata", "name")


class Combination(Strict):
    model: Ref | None = Field(default=None, description="The base model (with sweep: left out, each trial's own).")
    adapter: Ref | None = Field(default=None, description="Leave out to evaluate the base model alone.")
    sweep: str | None = Field(
        default=None, description="A FineTuningJob with a matrix: one combination per trial, each with the adapter it trains (instead of adapter)."
    )
    store_id: str | None = Field(default=None, description="The Studio row id of this combination. Recorded by the Studio for a run that already happened (`ftctl import`); leave it out otherwise.")
    cml_job_id: str | None = Field(default=None, description="The CML job that evaluated it. Recorded by the Studio for a run that already happened (`ftctl import`); leave it out otherwise.")
    evaluation_dir: str | None = Field(default=None, description="Where its results are (the Studio's evaluation page reads them): a folder relative to this file, as out_dir is. Recorded by the Studio for a run that already happened (`ftctl import`); leave it out otherwise.")


class EvaluationResources(Strict):
    cpu: int | None = Field(default=None, le=MAX_CPU)
    memory: int | None = Field(default=None, le=MAX_MEMORY_GB)
    gpu: int | None = Field(default=None, le=MAX_GPU)


class EvaluationJobSpec(Strict):
    type: Literal["mlflow"] = "mlflow"
    combinations: list[Combination] = Field(default_factory=list)
    dataset: Ref | None = None
    prompt: Ref | None = None
    generation_config: ConfigSource | None = None
    bnb_config: ConfigSource | None = None
    adapter_bnb_config: ConfigSource | None = None
    eval_dataset_fraction: float = 1.0
    selected_features: list[str] | None = None
    resources: EvaluationResources | None = None
    num_workers: int | None = Field(default=1, le=MAX_WORKERS, description="The Studio's num_workers column (the Studio writes 1; its home page lists it). Not used to run the evaluation: a change updates the rows in place.")
    hf_token_env: str | None = None
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES, description="Relaunch a transient failure (killed, network) up to this many times.")
    backend: Literal["local", "cml"] | None = Field(
        default=None, description="Where the job runs: local or cml (default: --backend, FTCTL_BACKEND, or ftctl.toml; else local)."
    )


class EvaluationJob(Resource):
    KIND: ClassVar[str] = "EvaluationJob"
    RERUN: ClassVar[str] = "rerun"
    kind: Literal["EvaluationJob"]
    spec: EvaluationJobSpec
