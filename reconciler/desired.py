"""Desired Studio rows: what each manifest should look like in the Studio's tables.

Pure: `render(manifest, scope)` turns one validated manifest into the rows the Studio would have
written for the same request, reading its kind's binding (`reconciler.kinds`: every column, its
manifest field and value format is declared there), with references resolved to store ids
through `Scope`. Only owned columns appear; columns a running job fills in (`cml_job_id`,
`adapter_id`, ...) are left to it unless the manifest carries them (imported history). Called by
the planner, wave by wave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.facts import HubFacts, LocalFacts, RegistryFacts
from reconciler.jobinput import JobSettings
from reconciler.kinds import BINDINGS, adapter, config, render_rows
from reconciler.lineage import Provenance
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, IdRef
from reconciler.models.base import STORE_ID_ANNOTATION
from reconciler.records import Row, comparable
from reconciler.rules.configs import parse_body
from reconciler.runtime import JobObservation

# Columns of a row that a job's result depends on: a change re-runs the jobs that use the object.
# (Not the mlflow_* columns of registry models and adapters: jobs resolve them from
# cml_registered_model_id, and they are known only online, so a digest of them would differ offline.)
RUN_INPUT_COLUMNS: dict[str, tuple[str, ...]] = {b.table: b.run_inputs for b in BINDINGS.values() if b.run_inputs}


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
    provenance: Provenance = field(default_factory=Provenance)  # the manifests' commit, data digests: jobs' lineage


@dataclass(frozen=True)
class DesiredRow:
    table: str
    key: str  # pairs a desired row with a live row of the same object ('' when there is one row)
    values: Row  # owned columns only, in the Studio's storage form; no id
    row_id: str | None = None  # the id the manifest declares for a new row (an imported combination's)

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
        for row in self.snapshot.rows.get(adapter.BINDING.table, {}).values():
            if adapter.name(row) == name and (current_job is None or adapter.trained_by(row) == current_job):
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
            row = self.snapshot.row(config.BINDING.table, source.id) or {}
            return config.parsed_body(row, yaml=config_type == "axolotl"), source.id
        manifest = self.configs.get(source)
        if manifest is None:  # a managed Config outside a partial plan's manifests: the body it wrote
            config_id = self.ref_id(source, "Config")
            row = self.snapshot.row(config.BINDING.table, config_id or "") or {}
            return config.parsed_body(row, yaml=config_type == "axolotl"), config_id
        assert isinstance(manifest.resource, Config)
        body, _, _ = parse_body(config_type, manifest.resource.spec.config)
        return body, self.ref_id(source, "Config")

    def stored_path(self, manifest: Manifest, location: str | None) -> str | None:
        """A manifest path as the Studio stores it: relative to the project root when inside it."""
        return manifest.stored_path(location, self.facts.root) if location else None


def render(manifest: Manifest, scope: Scope, *, own_id: str) -> Desired:
    """The rows one manifest should have, read from its kind's binding (`reconciler.kinds`)."""
    binding = BINDINGS[manifest.kind]
    rows = render_rows(binding, manifest, scope, own_id=own_id) if binding.table else []
    return Desired(
        binding.kind,
        manifest.name,
        binding.table,
        tuple(DesiredRow(binding.table, r.key, r.values, r.row_id) for r in rows),
        spec=binding.resolved(manifest, scope) if binding.resolved is not None else {},
        depends_on=tuple(dict.fromkeys(scope.depends_on)),
        waits_for=tuple(dict.fromkeys(scope.waits_for)),
    )


def declared_id(manifest: Manifest) -> str | None:
    """The store id a manifest declares (`ftctl.io/store-id`): the row it adopts, or the id its
    row is created with in a store that does not hold it (an import applied to an empty store)."""
    return manifest.resource.metadata.annotations.get(STORE_ID_ANNOTATION) or None
