"""Read-only inspection, as kubectl's `get` and `describe`: what the store holds of each object.

Pure: a snapshot, the objects' statuses (from a plan, when manifests are given), their jobs as the
backends see them and ftctl's events in; plain values out (`Item` rows, one `describe` document).
The engine reads; `views.inspection` renders (and masks secrets in everything it shows). Kinds are
named as kubectl users expect: case-insensitive, plural and short aliases declared once here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reconciler.adoption import owned_rows
from reconciler.chain import object_chain
from reconciler.health import Health, ObjectStatus, object_health
from reconciler.kinds import BINDINGS, BY_TABLE, product_link
from reconciler.live import ManagedRecord, Snapshot
from reconciler.models import MODELS
from reconciler.records import Row
from reconciler.runtime import JobObservation, JobState

KINDS: tuple[str, ...] = tuple(MODELS)
# Aliases beyond the kind's own name and plural (both case-insensitive), as kubectl's short names.
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "Dataset": ("ds",), "Model": ("mdl",), "Prompt": ("pr",), "Config": ("cfg",), "Adapter": ("ad",),
    "FineTuningJob": ("ftjob", "ftjobs", "jobs"), "EvaluationJob": ("evaljob", "evaljobs", "evals", "ev"),
    "ModelExport": ("export", "exports", "mx"),
}
ALL = "all"
# The columns `get` shows per kind beyond name and state: (header, row columns, first non-empty
# wins); a `*_id` column shows the name of the object it points to.
KEY_FIELDS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {kind: b.shown for kind, b in BINDINGS.items()}
UNMANAGED = "unmanaged"  # the sync state of a Studio row ftctl does not manage
PRODUCED = "produced"  # the sync state of a row a managed job produced (a trained adapter): listed with its kind
# Tables whose rows a managed object's job produces, and the column naming the producing row.
PRODUCED_BY: dict[str, str] = {BINDINGS[b.produces].table: product_link(b.kind) for b in BINDINGS.values() if b.produces}
NOT_COMPARED = "-"  # the sync state when no manifests were given


class InspectError(ValueError):
    """An unknown kind or object: one line, with the closest name as a hint."""


@dataclass(frozen=True)
class JobStatus:
    """One job of a managed object, where it runs and what its backend says (`status`, `describe`)."""

    kind: str
    name: str
    job: str
    backend: str
    state: str
    summary: str
    external_id: str  # local: the job folder; cml: `job id/run id` (endpoints: model, build, deployment)
    links: dict[str, str]
    attempt: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    imported: bool = False  # a run the Studio made before `ftctl import` (`job` is its CML job; `state` as its rows say)

    @property
    def state_text(self) -> str:
        """The state in words: an imported run says so (`succeeded (imported)`)."""
        return f"{self.state} (imported)" if self.imported else self.state


@dataclass(frozen=True)
class Item:
    """One row of `ftctl get`: a managed object (or, asked for, a Studio row ftctl does not manage)."""

    kind: str
    name: str
    managed: bool
    sync: str
    health: str
    store_id: str
    generation: int
    updated_at: float | None
    fields: dict[str, str]  # KEY_FIELDS' headers -> values
    metrics: dict[str, dict[str, float]]  # job name -> its metrics (jobs that reported some)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


def aliases() -> dict[str, str]:
    """Every accepted spelling of a kind (lower case) -> the kind."""
    out = {}
    for kind in KINDS:
        for alias in (kind, f"{kind}s", *SHORT_NAMES.get(kind, ())):
            out[alias.lower()] = kind
    return out


def kinds_named(text: str) -> tuple[str, ...]:
    """The kinds `text` names: one kind by any alias, or every kind for `all`."""
    if text.lower() == ALL:
        return KINDS
    found = aliases().get(text.lower())
    if found is None:
        raise InspectError(f"no kind {text!r}{_hint(text.lower(), [*aliases(), ALL])} (kinds: {', '.join(KINDS)}, or all)")
    return (found,)


def parse_address(text: str) -> tuple[str, str]:
    """`Kind/name` with the kind by any alias (`ds/demo-tickets`)."""
    kind, _, name = text.partition("/")
    if not kind or not name:
        raise InspectError(f"not an address (want Kind/name, e.g. Dataset/demo-tickets): {text!r}")
    kinds = kinds_named(kind)
    if len(kinds) != 1:
        raise InspectError(f"{text}: name one kind, not {kind!r}")
    return kinds[0], name


def _hint(text: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(text, sorted(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def items(snapshot: Snapshot, kinds: Sequence[str], *, statuses: Mapping[tuple[str, str], ObjectStatus],
          jobs: Sequence[JobStatus], updated: Mapping[tuple[str, str], float], unmanaged: bool) -> list[Item]:
    """The objects of `kinds`: managed ones, those the manifests declare (`statuses`, when given),
    and with `unmanaged` every Studio row no managed object owns. By kind, then name."""
    jobs_of: dict[tuple[str, str], list[JobStatus]] = {}
    for job in jobs:
        jobs_of.setdefault((job.kind, job.name), []).append(job)
    keys = [k for k in {*snapshot.managed, *statuses} if k[0] in kinds]
    out = [_managed_item(snapshot, key, statuses.get(key), jobs_of.get(key, []), updated.get(key)) for key in keys]
    produced = {i for r in snapshot.managed.values() for i in r.row_ids}
    history = owned_rows(snapshot)  # a managed job's earlier generations and what they registered
    for table, row in _unowned_rows(snapshot):
        made = (PRODUCED_BY.get(table) and str(row.get(PRODUCED_BY[table]) or "") in produced) or str(row["id"]) in history
        if BY_TABLE[table].kind in kinds and (made or unmanaged):
            out.append(_unmanaged_item(snapshot, table, row, PRODUCED if made else UNMANAGED))
    return sorted(out, key=lambda i: (KINDS.index(i.kind), i.name, i.store_id))


def _managed_item(snapshot: Snapshot, key: tuple[str, str], status: ObjectStatus | None, jobs: list[JobStatus],
                  updated: float | None) -> Item:
    record = snapshot.managed.get(key)
    health = status.health if status else object_health([JobState(j.state) for j in jobs if not j.imported], record, snapshot)
    values = _values(snapshot, record)
    return Item(key[0], key[1], record is not None, status.sync.value if status else NOT_COMPARED, health.value,
                record.store_id if record else "", record.generation if record else 0, updated,
                _fields(snapshot, key[0], values), {j.job: dict(j.metrics) for j in jobs if j.metrics})


def _unmanaged_item(snapshot: Snapshot, table: str, row: Row, sync: str) -> Item:
    kind = BY_TABLE[table].kind
    return Item(kind, BY_TABLE[table].name_of(row) or str(row["id"]), False, sync, Health.HEALTHY.value, str(row["id"]), 0,
                None, _fields(snapshot, kind, row), {})


def _values(snapshot: Snapshot, record: ManagedRecord | None) -> Mapping[str, Any]:
    """What the key fields are read from: the object's first row, or a kind without rows' recorded spec."""
    if record is None:
        return {}
    if not record.store_table:
        return record.spec or {}
    return next((r for r in (snapshot.row(record.store_table, i) for i in record.row_ids) if r is not None), {})


def _fields(snapshot: Snapshot, kind: str, values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for header, columns in KEY_FIELDS[kind]:
        value = next((values[c] for c in columns if values.get(c) not in (None, "")), "")
        out[header] = _named(snapshot, str(value)) if columns[0].endswith("_id") else str(value)
    return out


def _named(snapshot: Snapshot, object_id: str) -> str:
    found = snapshot.by_id(object_id) if object_id else None
    return found.name if found else object_id


def _unowned_rows(snapshot: Snapshot) -> list[tuple[str, Row]]:
    owned = {(r.store_table, i) for r in snapshot.managed.values() for i in r.row_ids}
    return [(table, row) for table, row in snapshot.all_rows() if (table, str(row["id"])) not in owned]


def find(found: Sequence[Item], kind: str, name: str) -> list[Item]:
    """The items of `kind` named `name` (unmanaged rows may share a name), else an error with a hint."""
    matches = [i for i in found if (i.kind, i.name) == (kind, name)]
    if not matches:
        names = [i.name for i in found if i.kind == kind]
        raise InspectError(f"no {kind} named {name!r} in the store{_hint(name, names)}")
    return matches


def describe(snapshot: Snapshot, item: Item, *, status: ObjectStatus | None, jobs: Sequence[JobStatus],
             manifest: Mapping[str, Any] | None, events: Sequence[Any],
             observations: Mapping[str, JobObservation] | None = None) -> dict[str, Any]:
    """Everything about one object: its state, manifest, store rows, jobs, related objects, events,
    and its chain (`chain.object_chain`: manifest -> rows -> jobs -> adapter -> evaluations ->
    registry version). Values as stored: the view masks secrets."""
    record = snapshot.managed.get((item.kind, item.name)) if item.managed else None
    rows = _rows(snapshot, record, item)
    ids = {r["id"] for r in rows} | ({record.store_id} if record and record.store_id else set())
    own_values = [r["values"] for r in rows] or ([record.spec] if record and record.spec else [])
    return {
        "kind": item.kind, "name": item.name, "managed": item.managed, "sync": item.sync, "health": item.health,
        "reason": status.reason if status else "", "store_id": item.store_id, "generation": item.generation,
        "protected": bool(record and record.protected), "origin": record.origin if record else "",
        "backend": (record.backend or "local") if record and record.kind in _JOB_KINDS else "",
        "updated_at": item.updated_at, "fields": item.fields,
        "manifest": dict(manifest) if manifest else ({"source": "ftctl_objects.spec", "spec": record.spec}
                                                     if record and record.spec else None),
        "rows": rows,
        "jobs": [asdict(j) for j in jobs],
        "uses": sorted({ref for values in own_values for ref in _references(snapshot, values)} - {item.address}),
        "used_by": _used_by(snapshot, ids, item.address),
        "events": [asdict(e) for e in events],
        "chain": object_chain(snapshot, item.kind, item.name, observations=observations or {},
                              manifest_at=str((manifest or {}).get("at") or "")) if item.managed else [],
    }


_JOB_KINDS = tuple(kind for kind, b in BINDINGS.items() if b.rerun)  # kinds whose objects run jobs


def _rows(snapshot: Snapshot, record: ManagedRecord | None, item: Item) -> list[dict[str, Any]]:
    if record is None:
        table = BINDINGS[item.kind].table if item.kind in BINDINGS else ""
        row = snapshot.row(table, item.store_id) if table else None
        return [{"table": table, "id": item.store_id, "values": dict(row)}] if row else []
    found = ((i, snapshot.row(record.store_table, i)) for i in record.row_ids) if record.store_table else ()
    return [{"table": record.store_table, "id": i, "values": dict(row)} for i, row in found if row is not None]


def _references(snapshot: Snapshot, values: Mapping[str, Any]) -> list[str]:
    """`Kind/name (column)` of each object a row's (or a recorded spec's) `*_id` values point to."""
    out = []
    for column, value in values.items():
        target = snapshot.by_id(str(value)) if column.endswith("_id") and value else None
        if target is not None:
            out.append(f"{_address(snapshot, target.kind, target.id, target.name)} ({column})")
    return out


def _used_by(snapshot: Snapshot, ids: set[str], own: str) -> list[str]:
    """`Kind/name (column)` of every row, and every recorded spec, whose `*_id` values point at `ids`."""
    out = set()
    for table, row in snapshot.all_rows():
        for column, value in row.items():
            if column.endswith("_id") and value and str(value) in ids:
                user = BY_TABLE[table]
                out.add(f"{_address(snapshot, user.kind, str(row['id']), user.name_of(row) or str(row['id']))} ({column})")
    for record in snapshot.managed.values():
        for column, value in (record.spec or {}).items():
            if column.endswith("_id") and value and str(value) in ids:
                out.add(f"{record.address} ({column})")
    return sorted(out - {a for a in out if a.startswith(own + " ")})


def _address(snapshot: Snapshot, kind: str, row_id: str, name: str) -> str:
    """A row as an address: the managed object that owns it, else `Kind/name` of the row itself."""
    owner = next((r for r in snapshot.managed.values() if row_id in r.row_ids or r.store_id == row_id), None)
    return owner.address if owner else f"{kind}/{name}"
