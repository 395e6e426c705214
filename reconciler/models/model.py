"""Model manifests: a base model from the Hugging Face Hub, a local directory, or the CML registry."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from reconciler.models.base import Resource, Strict

MODEL_TYPES = ("huggingface", "project", "model_registry")
MODEL_FRAMEWORKS = ("pytorch", "tensorflow", "onnx")


class ModelSpec(Strict):
    type: str | None = Field(default=None, description="One of: " + ", ".join(MODEL_TYPES))
    huggingface_model_name: str | None = Field(default=None, description="Hub model id (huggingface type).")
    location: str | None = Field(default=None, description="Local model directory (project type).")
    cml_registered_model_id: str | None = Field(
        default=None, description="CML Model Registry id (model_registry type)."
    )
    framework: Literal["pytorch", "tensorflow", "onnx"] | None = None
    description: str | None = None
    mlflow_experiment_id: str | None = Field(
        default=None, description="(model_registry type) The MLflow experiment of its first version; read from the registry when left out."
    )
    mlflow_run_id: str | None = Field(
        default=None, description="(model_registry type) The MLflow run of its first version; read from the registry when left out."
    )
    hf_token_env: str | None = Field(
        default=None, description="Name of the environment variable holding a Hub token (gated models)."
    )


class Model(Resource):
    KIND: ClassVar[str] = "Model"
    kind: Literal["Model"]
    spec: ModelSpec
