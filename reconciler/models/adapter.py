"""Adapter manifests: an existing PEFT LoRA adapter (local directory, Hub, or CML registry).

Adapters that a FineTuningJob trains are not declared here: the job's `adapter_name` names them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from reconciler.models.base import Ref, Resource, Strict

ADAPTER_TYPES = ("project", "huggingface", "model_registry")


class AdapterSpec(Strict):
    type: Literal["project", "huggingface", "model_registry"] = "project"
    model: Ref | None = Field(default=None, description="The base Model this adapter applies to.")
    location: str | None = Field(default=None, description="Adapter directory (project type).")
    huggingface_name: str | None = Field(default=None, description="Hub adapter id (huggingface type).")
    cml_registered_model_id: str | None = Field(default=None, description="(model_registry type)")
    fine_tuning_job: Ref | None = Field(default=None, description="The job that produced it, if any.")
    prompt: Ref | None = Field(default=None, description="The prompt it was trained with, if any.")
    description: str | None = None
    mlflow_experiment_id: str | None = Field(
        default=None, description="(model_registry type) The MLflow experiment of its first version; read from the registry when left out."
    )
    mlflow_run_id: str | None = Field(
        default=None, description="(model_registry type) The MLflow run of its first version; read from the registry when left out."
    )
    hf_token_env: str | None = None


class Adapter(Resource):
    KIND: ClassVar[str] = "Adapter"
    kind: Literal["Adapter"]
    spec: AdapterSpec
