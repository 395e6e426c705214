"""Manifest models, one module per kind; `MODELS` maps a kind name to its pydantic class."""

from __future__ import annotations

from reconciler.models.adapter import Adapter
from reconciler.models.base import API_VERSION, IdRef, Resource
from reconciler.models.config import Config
from reconciler.models.dataset import Dataset
from reconciler.models.export import ModelExport
from reconciler.models.jobs import EvaluationJob, FineTuningJob
from reconciler.models.model import Model
from reconciler.models.prompt import Prompt

MODELS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (Dataset, Model, Prompt, Config, Adapter, FineTuningJob, EvaluationJob, ModelExport)
}

__all__ = [
    "API_VERSION",
    "MODELS",
    "Adapter",
    "Config",
    "Dataset",
    "EvaluationJob",
    "FineTuningJob",
    "IdRef",
    "Model",
    "ModelExport",
    "Prompt",
    "Resource",
]
