"""What every rule reads: the manifests indexed by kind and name, local facts, the store snapshot,
and the config-body schemas; plus reference resolution, shared by all rules, with a "did you mean"
over the names of the kind a reference wants.

Pure: built from values, never touches the disk, the network or the store.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.facts import LocalFacts
from reconciler.graph import Graph, build_graph
from reconciler.kinds import adapter, fine_tuning_job
from reconciler.live import LiveObject, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import FineTuningJob, IdRef


@dataclass(frozen=True)
class Target:
    """What a reference resolved to: a manifest, a job's produced adapter, or a store row."""

    kind: str
    name: str
    manifest: Manifest | None = None
    produced_by: Manifest | None = None  # a FineTuningJob whose adapter_name this is
    live: LiveObject | None = None


@dataclass
class RuleContext:
    manifests: list[Manifest]
    facts: LocalFacts = field(default_factory=LocalFacts)
    snapshot: Snapshot | None = None
    body_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_kind: dict[str, dict[str, list[Manifest]]] = field(default_factory=dict)
    validators: dict[tuple[str, str], Any] = field(default_factory=dict)  # compiled once per (body, key)
    produced: dict[str, list[Manifest]] = field(default_factory=dict)
    partial: bool = False  # the manifests are some files of a project: other names may be in other files

    def __post_init__(self) -> None:
        for m in self.manifests:
            self.by_kind.setdefault(m.kind, {}).setdefault(m.name, []).append(m)
            if isinstance(m.resource, FineTuningJob):
                self.produced.setdefault(m.resource.adapter_name, []).append(m)

    @cached_property
    def graph(self) -> Graph:
        """The reference graph of the manifests (the planner reuses it)."""
        return build_graph(self.manifests)

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for group in self.by_kind.get(kind, {}).values() for m in group]

    def named(self, kind: str, name: str) -> Manifest | None:
        found = self.by_kind.get(kind, {}).get(name)
        return found[0] if found else None

    def resolve(self, ref: Any, kind: str) -> tuple[Target | None, str]:
        """Resolve a reference to `kind`. Returns (target, problem), problem one of
        '' (found), 'missing', 'wrong-kind:<Kind,...>', 'unchecked' (id reference, no store)."""
        if isinstance(ref, IdRef):
            return self._resolve_id(ref.id, kind)
        if not isinstance(ref, str):
            return None, "missing"
        manifest = self.named(kind, ref)
        if manifest is not None:
            return Target(kind, ref, manifest=manifest), ""
        if kind == "Adapter" and ref in self.produced:
            return Target(kind, ref, produced_by=self.produced[ref][0]), ""
        managed = self._managed(kind, ref)
        if managed is not None:
            return managed, ""
        others = {k for k, names in self.by_kind.items() if k != kind and ref in names}
        if self.snapshot is not None:
            others |= {k for k, n in self.snapshot.managed if k != kind and n == ref}
        return None, ("wrong-kind:" + ",".join(sorted(others))) if others and not self.partial else "missing"

    def _managed(self, kind: str, ref: str) -> Target | None:
        """An object outside the manifests that ftctl manages in the store (its row, when it has
        one), or the adapter a managed FineTuningJob trains: what a plan of these manifests uses."""
        if self.snapshot is None:
            return None
        record = self.snapshot.managed.get((kind, ref))
        if record is not None:
            return Target(kind, ref, live=self.snapshot.by_id(record.store_id))
        if kind != "Adapter":
            return None
        for (job_kind, _), job in self.snapshot.managed.items():
            row = self.snapshot.row(fine_tuning_job.BINDING.table, job.store_id) if job_kind == "FineTuningJob" else None
            if row is not None and fine_tuning_job.adapter_name(row) == ref:
                trained = [str(r["id"]) for r in self.snapshot.rows.get(adapter.BINDING.table, {}).values()
                           if adapter.name(r) == ref and adapter.trained_by(r) == job.store_id]
                return Target(kind, ref, live=self.snapshot.by_id(trained[0]) if trained else None)
        return None

    def similar(self, kind: str, ref: str) -> str | None:
        """The name of `kind` closest to a reference that does not resolve, if one is close: over
        the manifests (and the adapters their jobs train) and the objects ftctl manages in the store."""
        names = set(self.by_kind.get(kind, {}))
        if kind == "Adapter":
            names |= set(self.produced)
        if self.snapshot is not None:
            names |= {n for k, n in self.snapshot.managed if k == kind}
        close = difflib.get_close_matches(ref, sorted(names), n=1)
        return close[0] if close else None

    def _resolve_id(self, object_id: str, kind: str) -> tuple[Target | None, str]:
        if self.snapshot is None:
            return None, "unchecked"
        row = self.snapshot.by_id(object_id)
        if row is None:
            return None, "missing"
        if row.kind != kind:
            return None, f"wrong-kind:{row.kind}"
        return Target(kind, row.name, live=row), ""

    def check_ref(
        self,
        manifest: Manifest,
        ref: Any,
        kind: str,
        path: tuple[str | int, ...],
        missing_code: str = "RF-001",
    ) -> tuple[Target | None, list[Diagnostic]]:
        """Resolve a reference and report it under `missing_code` when it does not resolve."""
        target, problem = self.resolve(ref, kind)
        if not problem:
            return target, []
        location = manifest.at(*path)  # built only when there is something to report
        label = f"id {ref.id}" if isinstance(ref, IdRef) else repr(ref)
        field_name = ".".join(str(p) for p in path[1:])
        close = self.similar(kind, ref) if isinstance(ref, str) else None
        hint = f"Did you mean {close!r}?" if close else None
        if problem == "unchecked":
            summary = f"{field_name}: {kind} {label} is a store id; not checked without --store"
            return None, [make_diag("RF-004", summary, location=location, address=manifest.address)]
        if problem.startswith("wrong-kind:"):
            others = problem.split(":", 1)[1]
            summary = f"{field_name}: {label} is {' and '.join(_a(k) for k in others.split(','))}, not {_a(kind)}"
            return None, [make_diag("RF-002", summary, location=location, address=manifest.address, hint=hint)]
        if self.partial:  # some files of a project: the name may be declared in others
            where = "not managed in the store" if self.snapshot is not None else "no store was read (--store)"
            summary = f"{field_name}: {kind} {label} is not in the files given, and {where}"
        else:
            where = " in the manifests or the store" if self.snapshot is not None else " in the manifests"
            summary = f"{field_name}: {kind} {label} not found{where}"
        return None, [make_diag(missing_code, summary, location=location, address=manifest.address, hint=hint)]


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


def unknown_type(m: Manifest, code: str, what: str, value: str | None) -> Diagnostic:
    """The Studio's "type must be one of" rules (DS-001, MD-001, CF-001)."""
    got = "missing" if value is None else repr(value)
    return make_diag(code, f"{what} type is {got}", location=m.at("spec", "type"), address=m.address)
