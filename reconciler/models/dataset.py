"""Dataset manifests: a Hugging Face Hub dataset or a local CSV/JSON/JSONL file or directory."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from reconciler.models.base import Resource, Strict

DATASET_TYPES = ("huggingface", "project", "project_csv", "project_json", "project_jsonl")
LOCAL_FILE_SUFFIX = {"project_csv": ".csv", "project_json": ".json", "project_jsonl": ".jsonl"}


class DatasetSpec(Strict):
    type: str | None = Field(default=None, description="One of: " + ", ".join(DATASET_TYPES))
    huggingface_name: str | None = Field(default=None, description="Hub dataset id (huggingface type).")
    location: str | None = Field(
        default=None, description="Local path, relative to the manifest file (project types)."
    )
    description: str | None = None
    features: list[str] | None = Field(
        default=None,
        description="Column names, when they cannot be read offline (Hub datasets); checked against the data.",
    )
    hf_token_env: str | None = Field(
        default=None, description="Name of the environment variable holding a Hub token (gated datasets)."
    )


class Dataset(Resource):
    KIND: ClassVar[str] = "Dataset"
    kind: Literal["Dataset"]
    spec: DatasetSpec
