"""Desired Studio rows: what each manifest should look like in the Studio's tables.

Pure: `render(manifest, scope)` turns one validated manifest into the rows the Studio would have
written for the same request (features read from the data, configs as `json.dumps` text, model
family of configs tied to a model, job rows with config snapshots), with references resolved to
store ids through `scope`. Only owned columns appear; columns a running job fills in
(`cml_job_id`, `adapter_id`, ...) are left to it. Called by the planner, wave by wave.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.facts import HubFacts, LocalFacts, RegistryFacts
from reconciler.jobinput import JobSettings
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import (
    Adapter,
    Config,
    Dataset,
    EvaluationJob,
    FineTuningJob,
    IdRef,
    Model,
    ModelExport,
    Prompt,
)
from reconciler.records import Row, comparable, config_text, parsed_config
from reconciler.rules.configs import SOURCE_FIELDS, parse_body
from reconciler.runtime import JobObservation

# Job fields whose config content the Studio snapshots into a column of the job row.
SNAPSHOT_COLUMNS: dict[str, dict[str, str]] = {
    "FineTuningJob": {
        "lora_config": "lora_config",
        "bnb_config": "model_bnb_config",
        "adapter_bnb_config": "adapter_bnb_config",
        "training_arguments": "training_arguments_config",
    },
    "EvaluationJob": {
        "generation_config": "generation_config",
        "bnb_config": "model_bnb_config",
        "adapter_bnb_config": "adapter_bnb_config",
    },
}
# Job fields whose config the Studio links by id (there is no snapshot column for them).
ID_COLUMNS = {"axolotl_config": "axolotl_config_id", "user_config": "user_config_id"}
# Columns of a row that a job's result depends on: a change re-runs the jobs that use the object.
# (Not the mlflow_* columns of registry models and adapters: jobs resolve them from
# cml_registered_model_id, and they are known only online, so a digest of them would differ offline.)
RUN_INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "datasets": ("type", "huggingface_name", "location"),
    "models": ("type", "huggingface_model_name", "location", "cml_registered_model_id"),
    "prompts": ("prompt_template", "input_template", "completion_template"),
    "adapters": ("type", "huggingface_name", "location", "cml_registered_model_id", "model_id"),
    "configs": ("type", "config"),
}


@dataclass(frozen=True)
class PlanFacts:
    """What the planner knows beyond manifests and store: local files, the Hub, the CML Model
    Registry, the project root."""

    local: LocalFacts = field(default_factory=LocalFacts)
    hub: HubFacts = field(default_factory=HubFacts)
    registry: RegistryFacts = field(default_factory=RegistryFacts)
    root: str = ""  # local paths under it are stored relative to it (the Studio's project root)
    jobs: JobSettings = field(default_factory=JobSettings)
    observations: dict[str, JobObservation] = field(default_factory=dict)  # job name -> what its backend says


@dataclass(frozen=True)
class DesiredRow:
    table: str
    key: str  # pairs a desired row with a live row of the same object ('' when there is one row)
    values: Row  # owned columns only, in the Studio's storage form; no id

    @cached_property
    def comparable(self) -> Row:
        """The values as the Studio sees them (`records.comparable`), computed once per row."""
        return comparable(self.table, self.values)


@dataclass(frozen=True)
class Desired:
    kind: str
    name: str
    table: str  # '' for kinds without a Studio row
    rows: tuple[DesiredRow, ...]
    spec: dict[str, Any] = field(default_factory=dict)  # resolved spec of a kind without rows
    depends_on: tuple[tuple[str, str], ...] = ()  # (kind, name) whose content feeds a job
    waits_for: tuple[str, ...] = ()  # addresses whose output is not in the store yet


@dataclass
class Scope:
    """How references resolve while rendering: ids decided so far, the store, facts, manifests."""

    ids: dict[tuple[str, str], str]
    snapshot: Snapshot
    facts: PlanFacts
    configs: Mapping[str, Manifest]  # Config manifests by name
    models: Mapping[str, Manifest]  # Model manifests by name
    producers: Mapping[str, str]  # adapter name -> FineTuningJob name
    depends_on: list[tuple[str, str]] = field(default_factory=list)
    waits_for: list[str] = field(default_factory=list)

    def ref_id(self, ref: Any, kind: str) -> str | None:
        if ref is None:
            return None
        if isinstance(ref, IdRef):
            return ref.id
        self.depends_on.append((kind, ref))
        found = self.ids.get((kind, ref))
        if found is None and kind == "Adapter":
            return self._produced_adapter(ref)
        return found

    def _produced_adapter(self, name: str) -> str | None:
        """The registered adapter a job trains, once its current generation has produced it."""
        job = self.producers.get(name)
        current_job = self.ids.get(("FineTuningJob", job)) if job else None
        for row in self.snapshot.rows.get("adapters", {}).values():
            if row.get("name") == name and (current_job is None or row.get("fine_tuning_job_id") == current_job):
                return str(row["id"])
        self.waits_for.append(f"FineTuningJob/{job}" if job else f"Adapter/{name}")
        return None

    def config_body(self, source: Any, config_type: str) -> tuple[Any, str | None]:
        """(parsed body, store id of the config row when there is one) of a job's config field."""
        if source is None:
            return None, None
        if isinstance(source, dict):
            return source, None
        if isinstance(source, IdRef):
            row = self.snapshot.row("configs", source.id) or {}
            text = str(row.get("config") or "")
            return parsed_config(text, yaml=config_type == "axolotl"), source.id
        manifest = self.configs.get(source)
        if manifest is None:  # a managed Config outside a partial plan's manifests: the body it wrote
            config_id = self.ref_id(source, "Config")
            text = str((self.snapshot.row("configs", config_id or "") or {}).get("config") or "")
            return parsed_config(text, yaml=config_type == "axolotl"), config_id
        assert isinstance(manifest.resource, Config)
        body, _, _ = parse_body(config_type, manifest.resource.spec.config)
        return body, self.ref_id(source, "Config")

    def stored_path(self, manifest: Manifest, location: str | None) -> str | None:
        """A manifest path as the Studio stores it: relative to the project root when inside it."""
        if not location:
            return None
        path = manifest.path(location)
        root = self.facts.root.rstrip("/")
        if root and path.startswith(root + "/"):
            return path[len(root) + 1:]
        return path


def render(manifest: Manifest, scope: Scope, *, own_id: str) -> Desired:
    res = manifest.resource
    renderer = _RENDERERS[type(res)]
    table, rows, spec = renderer(manifest, scope, own_id)
    return Desired(
        res.KIND,
        res.name,
        table,
        tuple(rows),
        spec=spec,
        depends_on=tuple(dict.fromkeys(scope.depends_on)),
        waits_for=tuple(dict.fromkeys(scope.waits_for)),
    )


Rendered = tuple[str, list[DesiredRow], dict[str, Any]]


def _one(table: str, values: Row) -> Rendered:
    return table, [DesiredRow(table, "", values)], {}


def _dataset(m: Manifest, scope: Scope, _own: str) -> Rendered:
    assert isinstance(m.resource, Dataset)
    spec = m.resource.spec
    features: list[str] | None = list(spec.features) if spec.features is not None else None
    description = spec.description
    if spec.type == "huggingface":
        repo = (spec.huggingface_name or "").strip()
        if features is None and repo in scope.facts.hub.dataset_features:
            features = list(scope.facts.hub.dataset_features[repo])
        if description is None:
            description = scope.facts.hub.dataset_descriptions.get(repo)
    elif features is None and spec.type != "project" and spec.location:
        table_fact = scope.facts.local.tables.get(m.path(spec.location))
        if table_fact is not None and table_fact.error is None:
            features = list(table_fact.columns)
    values: Row = {
        "type": spec.type,
        "name": m.name,
        "description": description,
        "huggingface_name": spec.huggingface_name if spec.type == "huggingface" else None,
        "location": scope.stored_path(m, spec.location) if spec.type != "huggingface" else None,
        "features": json.dumps(features) if features is not None else None,
    }
    if spec.type == "huggingface":  # what the Hub did not tell us (offline) is left as the store has it
        values = {k: v for k, v in values.items() if v is not None or k not in ("features", "description")}
    return _one("datasets", values)


def _model(m: Manifest, scope: Scope, _own: str) -> Rendered:
    assert isinstance(m.resource, Model)
    spec = m.resource.spec
    return _one("models", {
        "type": spec.type,
        "framework": spec.framework,
        "name": m.name,
        "description": spec.description,
        "huggingface_model_name": spec.huggingface_model_name,
        "location": scope.stored_path(m, spec.location),
        "cml_registered_model_id": spec.cml_registered_model_id,
        **_registry_columns(spec.type, spec.cml_registered_model_id, scope),
    })


def _adapter(m: Manifest, scope: Scope, _own: str) -> Rendered:
    assert isinstance(m.resource, Adapter)
    spec = m.resource.spec
    # The Studio writes '' for unset request strings on adapters.
    return _one("adapters", {
        "type": spec.type,
        "name": m.name,
        "description": spec.description or "",
        "huggingface_name": spec.huggingface_name or "",
        "model_id": scope.ref_id(spec.model, "Model") or "",
        "location": scope.stored_path(m, spec.location) or "",
        "fine_tuning_job_id": scope.ref_id(spec.fine_tuning_job, "FineTuningJob") or "",
        "prompt_id": scope.ref_id(spec.prompt, "Prompt") or "",
        "cml_registered_model_id": spec.cml_registered_model_id or "",
        **_registry_columns(spec.type, spec.cml_registered_model_id, scope),
    })


def _registry_columns(source_type: str | None, model_id: str | None, scope: Scope) -> Row:
    """The MLflow experiment and run of a model_registry object's first registered version, as the
    Studio records them; what the registry did not tell us (offline) is left as the store has it."""
    fact = scope.facts.registry.models.get((model_id or "").strip()) if source_type == "model_registry" else None
    if fact is None or not fact.versions:
        return {}
    return {"mlflow_experiment_id": fact.experiment_id, "mlflow_run_id": fact.run_id}


def _prompt(m: Manifest, scope: Scope, _own: str) -> Rendered:
    assert isinstance(m.resource, Prompt)
    spec = m.resource.spec
    return _one("prompts", {
        "type": spec.type,
        "name": m.name,
        "description": spec.description,
        "dataset_id": scope.ref_id(spec.dataset, "Dataset"),
        "prompt_template": spec.prompt_template,
        "input_template": spec.input_template,
        "completion_template": spec.completion_template,
    })


def _config(m: Manifest, scope: Scope, _own: str) -> Rendered:
    assert isinstance(m.resource, Config)
    spec = m.resource.spec
    config_type = spec.type or ""
    body, _, _ = parse_body(config_type, spec.config)
    if spec.model is not None:
        scope.ref_id(spec.model, "Model")
    values: Row = {
        "type": config_type,
        "description": spec.description if spec.description is not None else m.name,
        "config": config_text(config_type, body),
        "model_family": spec.model_family if spec.model_family is not None else _family(m, scope),
        "is_default": 0,
    }
    if values["model_family"] is None and spec.model is not None:  # unknown (offline): left as the store has it
        del values["model_family"]
    return _one("configs", values)


def _family(m: Manifest, scope: Scope) -> str | None:
    """The architecture of the config's model, as the Studio's ModelMetadataFinder reads it."""
    assert isinstance(m.resource, Config)
    ref = m.resource.spec.model
    model = scope.models.get(ref) if isinstance(ref, str) else None
    if model is None:
        return None
    assert isinstance(model.resource, Model)
    spec = model.resource.spec
    if spec.type == "huggingface" and spec.huggingface_model_name:
        return scope.facts.hub.model_families.get(spec.huggingface_model_name.strip())
    if spec.location:
        return scope.facts.local.model_families.get(model.path(spec.location))
    return None


def _snapshots(kind: str, spec: Any, scope: Scope) -> Row:
    values: Row = {}
    for field_name, column in SNAPSHOT_COLUMNS[kind].items():
        body, _ = scope.config_body(getattr(spec, field_name), SOURCE_FIELDS[kind][field_name])
        values[column] = json.dumps(body) if body is not None else None
    return values


def _fine_tuning_job(m: Manifest, scope: Scope, _own: str) -> Rendered:
    job = m.resource
    assert isinstance(job, FineTuningJob)
    spec, res = job.spec, job.spec.resources
    values: Row = {
        "base_model_id": scope.ref_id(spec.base_model, "Model"),
        "dataset_id": scope.ref_id(spec.dataset, "Dataset"),
        "prompt_id": scope.ref_id(spec.prompt, "Prompt") or "",
        "num_workers": res.num_workers,
        "num_cpu": res.cpu,
        "num_gpu": res.gpu,
        "num_memory": res.memory,
        "num_epochs": spec.num_epochs,
        "learning_rate": spec.learning_rate,
        "out_dir": scope.stored_path(m, spec.out_dir) or "",
        **_snapshots("FineTuningJob", spec, scope),
        "dataset_fraction": float(spec.dataset_fraction),
        "train_test_split": float(spec.train_test_split),
        "user_script": scope.stored_path(m, spec.user_script) or "",
        "framework_type": spec.framework_type,
        "gpu_label_id": res.gpu_label_id,
        "adapter_name": job.adapter_name,
    }
    for field_name, column in ID_COLUMNS.items():
        _, config_id = scope.config_body(getattr(spec, field_name), SOURCE_FIELDS["FineTuningJob"][field_name])
        values[column] = config_id or ""
    extra = {"dist": [res.dist_cpu, res.dist_gpu, res.dist_memory]} if res.num_workers > 1 else {}
    return "fine_tuning_jobs", [DesiredRow("fine_tuning_jobs", "", values)], extra


def _evaluation_job(m: Manifest, scope: Scope, own_id: str) -> Rendered:
    job = m.resource
    assert isinstance(job, EvaluationJob)
    spec = job.spec
    res = spec.resources
    common: Row = {
        "type": spec.type,
        "parent_job_id": own_id,
        "dataset_id": scope.ref_id(spec.dataset, "Dataset"),
        "prompt_id": scope.ref_id(spec.prompt, "Prompt"),
        "num_cpu": res.cpu if res else None,
        "num_gpu": res.gpu if res else None,
        "num_memory": res.memory if res else None,
        **_snapshots("EvaluationJob", spec, scope),
    }
    rows = []
    for combo in spec.combinations:
        model_id = scope.ref_id(combo.model, "Model") or ""
        adapter_id = scope.ref_id(combo.adapter, "Adapter") or "" if combo.adapter is not None else ""
        values = {**common, "base_model_id": model_id, "adapter_id": adapter_id}
        rows.append(DesiredRow("evaluation_jobs", f"{model_id}|{adapter_id}", values))
    extra = {"eval_dataset_fraction": spec.eval_dataset_fraction, "selected_features": spec.selected_features}
    return "evaluation_jobs", rows, extra


def _model_export(m: Manifest, scope: Scope, _own: str) -> Rendered:
    export = m.resource
    assert isinstance(export, ModelExport)
    spec = export.spec
    resolved = {
        "type": spec.type,
        "base_model_id": scope.ref_id(spec.base_model, "Model"),
        "adapter_id": scope.ref_id(spec.adapter, "Adapter"),
        "model_name": export.model_name,
        "merge": spec.merge,
        "generation_config": scope.config_body(spec.generation_config, "generation_config")[0],
        "bnb_config": scope.config_body(spec.bnb_config, "bitsandbytes_config")[0],
        "resources": spec.resources.model_dump(),
        "gate": spec.gate.model_dump() if spec.gate else None,
        "description": spec.description,
    }
    return "", [], resolved


_RENDERERS = {
    Dataset: _dataset,
    Model: _model,
    Adapter: _adapter,
    Prompt: _prompt,
    Config: _config,
    FineTuningJob: _fine_tuning_job,
    EvaluationJob: _evaluation_job,
    ModelExport: _model_export,
}
