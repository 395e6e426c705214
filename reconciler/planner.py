"""`build_plan`: pair each manifest with what the store holds and decide what apply must do.

Pure: manifests, a `Snapshot`, facts and a `Policy` in; a `Plan` out. No I/O, no clock, no
randomness: ids of new rows are UUIDs derived from `seed`, which the engine draws once per plan.

Pairing (gitops-engine's `(live?, target?)`): a manifest with no managed record is a create; a
record with no manifest is a delete (only with `--prune`); both present are compared column by
column on the columns ftctl owns. Which changes update in place and which force a replacement is
declared in `REPLACE_COLUMNS` and `RERUN_KINDS` below. A live row that differs from what ftctl
last wrote is drift: the plan shows it before/after and puts the manifest's value back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from reconciler.desired import RUN_INPUT_COLUMNS, Desired, DesiredRow, PlanFacts, Scope, render
from reconciler.evaluations import compare
from reconciler.graph import Graph, build_graph
from reconciler.lifecycle import JobContext, advance
from reconciler.live import KIND_TABLE, ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import MODELS, Config, Dataset, FineTuningJob, Model
from reconciler.models.base import PROTECTED_ANNOTATION, STORE_ID_ANNOTATION
from reconciler.plan import (
    Action,
    Blocker,
    Change,
    Consequence,
    FieldDiff,
    Plan,
    Policy,
    Record,
    RowOp,
    Selection,
)
from reconciler.records import JSON_COLUMNS, Row, as_shown, comparable, digest

# Read from the declarations beside each model (`RERUN`, `REPLACE_COLUMNS`).
RERUN_KINDS = {kind: Consequence(model.RERUN) for kind, model in MODELS.items() if model.RERUN}
REPLACE_COLUMNS: dict[str, frozenset[str]] = {
    KIND_TABLE[kind]: model.REPLACE_COLUMNS for kind, model in MODELS.items() if model.REPLACE_COLUMNS
}
# Deletion order: what uses others goes first.
DELETE_ORDER = ("ModelExport", "EvaluationJob", "FineTuningJob", "Adapter", "Prompt", "Config", "Dataset", "Model")
# Columns by which other rows reference a kind's rows (to refuse deleting what is still used).
REFERRERS: dict[str, tuple[tuple[str, str], ...]] = {
    "datasets": (("prompts", "dataset_id"), ("fine_tuning_jobs", "dataset_id"), ("evaluation_jobs", "dataset_id")),
    "models": (("adapters", "model_id"), ("fine_tuning_jobs", "base_model_id"), ("evaluation_jobs", "base_model_id")),
    "prompts": (("fine_tuning_jobs", "prompt_id"), ("evaluation_jobs", "prompt_id"), ("adapters", "prompt_id")),
    "adapters": (("evaluation_jobs", "adapter_id"),),
}
# Studio columns that are unique by application code, per kind (a second row would break the Studio).
UNIQUE_COLUMNS = {
    "Dataset": ("name", "huggingface_name"),
    "Model": ("huggingface_model_name",),
    "Adapter": ("name",),
    "Prompt": ("name",),
    "FineTuningJob": ("adapter_name",),
}
# A config row ftctl shares with others (a Studio default, another tool's row) is owned only this far.
SHARED_COLUMNS = ("type", "config")
NAMESPACE = uuid.UUID("6f1c2b1e-4d0a-4a57-9d0e-0f7c7c1a2b3c")


def build_plan(
    manifests: list[Manifest],
    snapshot: Snapshot,
    *,
    policy: Policy,
    facts: PlanFacts,
    seed: str,
    graph: Graph | None = None,
    partial: Selection | None = None,
    replace_addresses: tuple[str, ...] = (),
) -> Plan:
    """The plan for `manifests` against `snapshot`. `graph` is the manifests' reference graph when
    the caller already built it (validation does); otherwise it is built here. A `partial` plan
    covers only `manifests`: references to other objects resolve to the store's managed objects, and
    nothing else is deleted or listed as an orphan. `replace_addresses` are replaced (a row written
    anew, a job run as a new generation) even when nothing changed."""
    planner = _Planner(manifests, snapshot, policy, facts, seed, graph or build_graph(manifests),
                       partial=partial is not None, forced=frozenset(replace_addresses))
    changes = [_readable(c) for c in planner.pair_all() + planner.deletions()]
    blockers = planner.blockers + _mass_deletion(changes, policy)
    return Plan(
        labels=_labels(changes, planner.ids, snapshot),
        store=snapshot.source,
        store_id=snapshot.store_id,
        serial=snapshot.serial,
        read=dict(snapshot.fingerprints),
        changes=tuple(changes),
        blockers=tuple(blockers),
        policy=policy,
        partial=partial,
        replace=replace_addresses,
        evaluations=tuple(compare(snapshot, facts.observations, names={c.name for c in changes if c.kind == "EvaluationJob"})),
    )


def _labels(changes: list[Change], ids: dict[tuple[str, str], str], snapshot: Snapshot) -> dict[str, str]:
    """Kind/name of every store id that a field diff shows, so people read names, not UUIDs."""
    known = {store_id: f"{kind}/{name}" for (kind, name), store_id in ids.items()}
    shown = {v for c in changes for f in c.fields for v in (f.before, f.after) if isinstance(v, str) and len(v) == 36}
    out = {}
    for value in sorted(shown):
        if value in known:
            out[value] = known[value]
        else:
            live = snapshot.by_id(value)
            if live is not None:
                out[value] = f"{live.kind}/{live.name or live.id} (not managed)"
    return out


def new_id(seed: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "\0".join([seed, *map(str, parts)])))


def is_protected(manifest: Manifest, record: ManagedRecord | None) -> bool:
    """The annotation when the manifest has one; otherwise what the store says (`ftctl protect`)."""
    value = manifest.resource.metadata.annotations.get(PROTECTED_ANNOTATION)
    if value is None:
        return record.protected if record else False
    return value.strip().lower() in ("true", "yes", "1")


@dataclass
class _Planner:
    manifests: list[Manifest]
    snapshot: Snapshot
    policy: Policy
    facts: PlanFacts
    seed: str
    graph: Graph
    partial: bool = False  # plan only `manifests`; delete nothing, list no orphans
    forced: frozenset[str] = frozenset()  # addresses to replace whether or not they changed
    blockers: list[Blocker] = field(default_factory=list)
    ids: dict[tuple[str, str], str] = field(default_factory=dict)
    desired: dict[tuple[str, str], Desired] = field(default_factory=dict)
    content: dict[tuple[str, str], str] = field(default_factory=dict)  # run-input digest per object
    new_configs: dict[str, str] = field(default_factory=dict)  # config content key -> id created here
    deleted_ids: set[str] = field(default_factory=set)
    changed: set[tuple[str, str]] = field(default_factory=set)  # objects this plan changes
    rows_by_id: dict[tuple[str, str], Row] = field(default_factory=dict)  # (table, id) -> row as this plan writes it
    token_envs: dict[str, str] = field(default_factory=dict)  # model/dataset store id -> its manifest's hf_token_env

    @cached_property
    def _managed_ids(self) -> set[str]:
        return {r.store_id for r in self.snapshot.managed.values()}

    def pair_all(self) -> list[Change]:
        by_key = {(m.kind, m.name): m for m in self.manifests}
        self.scope_configs = {m.name: m for m in self.manifests if isinstance(m.resource, Config)}
        self.scope_models = {m.name: m for m in self.manifests if isinstance(m.resource, Model)}
        self.producers = {
            **self._managed_producers(by_key),
            **{m.resource.adapter_name: m.name for m in self.manifests if isinstance(m.resource, FineTuningJob)},
        }
        for key, record in self.snapshot.managed.items():  # what the manifests reference outside them
            if key not in by_key:
                self.ids[key] = record.store_id
        ordered, stuck = self.graph.order
        changes: list[Change] = []
        for wave_no, wave in enumerate(ordered):
            changes.extend(self.pair(by_key[node], wave_no) for node in wave)
        changes.extend(self.pair(by_key[node], len(ordered)) for node in sorted(stuck))
        return changes

    def _managed_producers(self, by_key: dict[tuple[str, str], Manifest]) -> dict[str, str]:
        """Adapter name -> managed FineTuningJob outside the manifests that trains it."""
        out = {}
        for (kind, name), record in self.snapshot.managed.items():
            row = self.snapshot.row("fine_tuning_jobs", record.store_id) if kind == "FineTuningJob" else None
            if row is not None and (kind, name) not in by_key and row.get("adapter_name"):
                out[str(row["adapter_name"])] = name
        return out

    def _scope(self) -> Scope:
        return Scope(self.ids, self.snapshot, self.facts, configs=self.scope_configs, models=self.scope_models, producers=self.producers)

    def pair(self, manifest: Manifest, wave: int) -> Change:
        key = (manifest.kind, manifest.name)
        record = self.snapshot.managed.get(key)
        adopting = record is None and self._adoptable(manifest)
        if adopting:
            record = self._adoption_record(manifest)
        own_id = record.store_id if record else new_id(self.seed, *key, 1)
        self.ids[key] = own_id
        desired = render(manifest, self._scope(), own_id=own_id)
        self.desired[key] = desired
        if isinstance(manifest.resource, Model | Dataset) and manifest.resource.spec.hf_token_env:
            self.token_envs[own_id] = manifest.resource.spec.hf_token_env  # jobs on it download with it
        protected = is_protected(manifest, record)
        forced = f"{manifest.kind}/{manifest.name}" in self.forced and record is not None and not adopting
        if not forced and record is not None and not adopting and self._in_sync(desired, record):  # the common case, cheaply
            change = self._noop_or_protect(desired, record, wave, protected)
            self._remember_rows(desired, change, record)
            return change
        # A waiting object is neither written nor recorded: its fingerprint would go unused.
        spec_fp = self._spec_fingerprint(desired) if adopting or not desired.waits_for else ""
        if record is None:
            change = self._create(desired, wave, spec_fp, protected)
        elif forced and not desired.waits_for:
            change = self._force_replace(desired, record, wave, spec_fp, protected)
        elif adopting:
            change = self._adopt(desired, record, wave, spec_fp, protected)
        else:
            change = self._compare(desired, record, wave, spec_fp, protected)
        if not desired.table and change.record is not None:  # no Studio row: keep the spec to diff against
            change = replace(change, record=replace(change.record, spec=desired.spec))
        if manifest.kind in RERUN_KINDS:
            change = advance(manifest, desired, record, change, self._job_context)
        if change.action.is_change() and not change.waits_for and change.ops:
            self.changed.add(key)
        self._remember_rows(desired, change, record)
        return change

    def _in_sync(self, desired: Desired, record: ManagedRecord) -> bool:
        """A row-backed object that is not a job whose owned columns equal the store's (no digests)."""
        if desired.kind in RERUN_KINDS or desired.waits_for or len(desired.rows) != 1 or len(record.row_ids) != 1:
            return False
        live = self.snapshot.comparable_row(desired.table, record.row_ids[0])
        if live is None:
            return False
        want = desired.rows[0].comparable
        columns = SHARED_COLUMNS if record.origin == "shared" else desired.rows[0].values
        return all(want[c] == live[c] for c in columns)

    @cached_property
    def _job_context(self) -> JobContext:
        return JobContext(self.snapshot, self.facts.jobs, self.facts.observations, self._row,
                          lambda *parts: new_id(self.seed, *parts), dict(self.snapshot.managed), self.token_envs)

    def _remember_rows(self, desired: Desired, change: Change, record: ManagedRecord | None) -> None:
        """The rows this plan writes, by id, so jobs read their inputs as they will be."""
        for op in change.ops:
            if op.op == "insert":
                self.rows_by_id[(op.table, op.row_id)] = dict(op.values)
        if desired.table and desired.table != "evaluation_jobs" and desired.rows:
            own = change.record.store_id if change.record else (record.store_id if record else "")
            if own:
                self.rows_by_id[(desired.table, own)] = {"id": own, **desired.rows[0].values}

    def _row(self, table: str, row_id: object) -> Row | None:
        if not row_id:
            return None
        return self.rows_by_id.get((table, str(row_id))) or self.snapshot.row(table, str(row_id))

    # -- adopt -----------------------------------------------------------------------------------

    def _adoptable(self, manifest: Manifest) -> bool:
        store_id = manifest.resource.metadata.annotations.get(STORE_ID_ANNOTATION)
        table = KIND_TABLE.get(manifest.kind, "")
        if not store_id or not table or store_id in self._managed_ids:
            return False
        if table == "evaluation_jobs":
            return any(r.get("parent_job_id") == store_id for r in self.snapshot.rows.get(table, {}).values())
        return self.snapshot.row(table, store_id) is not None

    def _adoption_record(self, manifest: Manifest) -> ManagedRecord:
        store_id = manifest.resource.metadata.annotations[STORE_ID_ANNOTATION]
        table = KIND_TABLE[manifest.kind]
        if table == "evaluation_jobs":
            row_ids = tuple(sorted(str(r["id"]) for r in self.snapshot.rows[table].values() if r.get("parent_job_id") == store_id))
        else:
            row_ids = (store_id,)
        row = self.snapshot.row(table, row_ids[0]) or {}
        origin = "shared" if table == "configs" and str(row.get("is_default") or 0) == "1" else "imported"
        return ManagedRecord(manifest.kind, manifest.name, table, store_id, row_ids, "", "", 1, False, origin)

    def _adopt(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        """Take an existing Studio row under management; differences are shown and put right."""
        only = SHARED_COLUMNS if record.origin == "shared" else None
        live_fp = _rows_fp(desired, self._live_rows(record), only=only, compare=self._live_comparable)
        record = ManagedRecord(record.kind, record.name, record.store_table, record.store_id, record.row_ids,
                               spec_fp, live_fp, 1, protected, record.origin)
        change = self._compare(desired, record, wave, spec_fp, protected)
        after = change.record or Record(record.store_table, record.store_id, record.row_ids, spec_fp,
                                        _rows_fp(desired, {}, only=only), 1, record.origin, protected)
        reason = f"adopt the existing Studio row {record.store_id} ({STORE_ID_ANNOTATION})"
        if change.action is Action.NOOP:
            return Change(desired.kind, desired.name, Action.UPDATE, reason, Consequence.IN_PLACE, wave, record=after,
                          adopts=record.row_ids)
        return Change(change.kind, change.name, change.action, f"{reason}; {change.reason}", change.consequence, wave,
                      False, change.fields, change.ops, after, change.waits_for, adopts=record.row_ids)

    def _content(self, key: tuple[str, str]) -> str:
        """Digest of what a job's result depends on in an object (computed when a job asks)."""
        if key not in self.content:
            found = self.desired.get(key)
            self.content[key] = _run_inputs(found) if found is not None else self._stored_inputs(key)
        return self.content[key]

    def _stored_inputs(self, key: tuple[str, str]) -> str:
        """The same digest of a managed object outside the manifests (a partial plan), from the rows
        it has in the store: equal to its manifest's while the two are in sync."""
        record = self.snapshot.managed.get(key)
        columns = RUN_INPUT_COLUMNS.get(record.store_table) if record else None
        if record is None or columns is None:
            return ""
        rows = [self.snapshot.comparable_row(record.store_table, rid) for rid in record.row_ids]
        return digest([row.get(c) for row in rows if row is not None for c in columns])

    def _live_comparable(self, table: str, row: Row) -> Row:
        return self.snapshot.comparable_row(table, str(row["id"])) or comparable(table, row)

    def _spec_fingerprint(self, desired: Desired) -> str:
        inputs = sorted(self._content(dep) for dep in desired.depends_on)
        rows = sorted((r.key, r.values) for r in desired.rows)
        return digest({"rows": rows, "spec": desired.spec, "inputs": inputs})

    # -- create ----------------------------------------------------------------------------------

    def _create(self, desired: Desired, wave: int, spec_fp: str, protected: bool, *, reason: str = "") -> Change:
        kind, name = desired.kind, desired.name
        if desired.waits_for:
            return Change(kind, name, Action.CREATE, f"waits for {', '.join(desired.waits_for)}",
                          Consequence.WAIT, wave, waits_for=desired.waits_for)
        if kind == "Config":
            shared = self._equal_config(desired)
            if shared is not None:
                self.ids[(kind, name)] = shared
                record = Record("configs", shared, (shared,), spec_fp, _rows_fp(desired, {}, only=SHARED_COLUMNS), 1, "shared", protected)
                return Change(kind, name, Action.CREATE, f"equal to {self._config_label(shared, exclude=name)} (CF-004): shares its row",
                              Consequence.SHARED, wave, record=record)
        clash = self._unmanaged_clash(desired)
        if clash:
            self.blockers.append(Blocker(f"{kind}/{name}", "PL-001", clash))
        own_id = self.ids[(kind, name)]
        ids = self._row_ids(desired, own_id, generation=1)
        ops = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        if kind == "Config":
            self.new_configs[_config_key(desired.rows[0].values)] = own_id
        record = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp,
                        _rows_fp(desired, {}), 1, "created", protected)
        fields = tuple(FieldDiff(f"{r.table}.{c}", None, v) for r in desired.rows for c, v in r.values.items() if v not in (None, ""))
        return Change(kind, name, Action.CREATE, reason or "new in the manifests", Consequence.NONE, wave,
                      fields=fields, ops=ops, record=record)

    def _row_ids(self, desired: Desired, own_id: str, *, generation: int) -> dict[str, str]:
        if desired.table == "evaluation_jobs":
            return {r.key: new_id(self.seed, desired.kind, desired.name, generation, r.key) for r in desired.rows}
        return {r.key: own_id for r in desired.rows}

    def _config_label(self, store_id: str, *, exclude: str) -> str:
        owners = [*self.ids.items(), *(((r.kind, r.name), r.store_id) for r in self.snapshot.managed.values())]
        for (kind, name), known in owners:
            if known == store_id and kind == "Config" and name != exclude:
                return f"Config/{name}"
        row = self.snapshot.row("configs", store_id) or {}
        default = "a Studio default config" if str(row.get("is_default") or 0) == "1" else "a Studio config"
        return f"{default} ({store_id}; its description stays as it is)"

    def _equal_config(self, desired: Desired) -> str | None:
        values = desired.rows[0].values
        key = _config_key(values)
        if key in self.new_configs:
            return self.new_configs[key]
        managed_ids = {r.store_id for r in self.snapshot.managed.values() if r.kind == "Config"}
        for row in self.snapshot.rows.get("configs", {}).values():
            if row["id"] not in managed_ids and row["id"] not in self.deleted_ids and _config_key(row) == key:
                return str(row["id"])
        return None

    def _unmanaged_clash(self, desired: Desired) -> str:
        if not desired.rows:
            return ""
        values = desired.rows[0].values
        for column in UNIQUE_COLUMNS.get(desired.kind, ()):
            value = values.get(column)
            if not value:
                continue
            for row in self.snapshot.rows.get(desired.table, {}).values():
                if row.get(column) == value and row["id"] not in self._managed_ids:
                    return (f"the store already has a {desired.kind} with {column} {value!r} (id {row['id']}) that ftctl "
                            f"does not manage; adopt it (`ftctl import`, or annotate the manifest "
                            f"{STORE_ID_ANNOTATION}: {row['id']}), or rename the manifest")
        return ""

    # -- compare ---------------------------------------------------------------------------------

    def _compare(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        kind, name = desired.kind, desired.name
        if desired.waits_for:
            return Change(kind, name, Action.REPLACE, f"waits for {', '.join(desired.waits_for)}", Consequence.WAIT, wave,
                          waits_for=desired.waits_for)
        live = self._live_rows(record)
        if (desired.rows and any(row is None for row in live.values())) or (desired.rows and not live):
            return self._recreate(desired, record, wave, spec_fp, protected)
        only = SHARED_COLUMNS if record.origin == "shared" else None
        rerun_spec_changed = kind in RERUN_KINDS and spec_fp != record.spec_fingerprint
        if not rerun_spec_changed and self._rows_match(desired, live, only):  # the common case: in sync
            return self._noop_or_protect(desired, record, wave, protected)
        live_fp = _rows_fp(desired, live, only=only, compare=self._live_comparable)
        want_fp = _rows_fp(desired, {}, only=only)
        table_replace = REPLACE_COLUMNS.get(desired.table, frozenset())
        fields = tuple(
            FieldDiff(f.path, f.before, f.after, f.forces_replace or f.path.split(".", 1)[1] in table_replace, f.sensitive)
            for f in _field_diffs(desired, live, only=only)
        ) or _spec_diffs(record.spec, desired)
        # Drift: the store moved away from what ftctl wrote while the manifest did not.
        drift = live_fp != record.row_fingerprint and want_fp == record.row_fingerprint
        if not fields and not rerun_spec_changed:
            return self._noop_or_protect(desired, record, wave, protected)
        why = self._why(desired, drift)
        if kind in RERUN_KINDS:
            return self._replace(desired, record, wave, spec_fp, protected, why, RERUN_KINDS[kind], fields, drift)
        if any(f.forces_replace for f in fields):
            return self._replace(desired, record, wave, spec_fp, protected, why, Consequence.NONE, fields, drift)
        columns = [f.path.split(".", 1)[1] for f in fields]
        ops = tuple(RowOp(r.table, "update", record.row_ids[0], {c: r.values[c] for c in columns}) for r in desired.rows[:1])
        new_record = Record(record.store_table, record.store_id, record.row_ids, spec_fp, want_fp,
                            record.generation, record.origin, protected, backend=record.backend)
        return Change(kind, name, Action.UPDATE, why, Consequence.IN_PLACE, wave, drift, fields, ops, new_record)

    def _force_replace(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        """`--replace`: a new row (a job: a new generation and its launch) whatever changed; the
        field diffs still show what did."""
        only = SHARED_COLUMNS if record.origin == "shared" else None
        live = self._live_rows(record)
        fields = _field_diffs(desired, live, only=only) if live else ()
        return self._replace(desired, record, wave, spec_fp, protected, "replacement requested (--replace)",
                             RERUN_KINDS.get(desired.kind, Consequence.NONE), fields, False)

    def _rows_match(self, desired: Desired, live: dict[str, Row | None], only: tuple[str, ...] | None) -> bool:
        """The owned columns of every desired row equal its live row's, as the Studio sees them."""
        paired = _pair_live(desired, live)
        if len(paired) != len(desired.rows):
            return False
        for drow in desired.rows:
            lrow = paired.get(drow.key)
            if lrow is None:
                return False
            want, have = drow.comparable, self._live_comparable(drow.table, lrow)
            if any(want[c] != have[c] for c in drow.values if only is None or c in only):
                return False
        return True

    def _why(self, desired: Desired, drift: bool) -> str:
        """The human reason: which inputs changed, drift, or (otherwise) the manifest itself."""
        causes = [f"{k}/{n} changed" for k, n in desired.depends_on if (k, n) in self.changed]
        if drift:
            causes.append("changed outside ftctl: the manifest's values are put back")
        return "; ".join(causes) or "the manifest changed"

    def _noop_or_protect(self, desired: Desired, record: ManagedRecord, wave: int, protected: bool) -> Change:
        if protected == record.protected:
            return Change(desired.kind, desired.name, Action.NOOP, "in sync", wave=wave)
        new_record = Record(record.store_table, record.store_id, record.row_ids, record.spec_fingerprint,
                            record.row_fingerprint, record.generation, record.origin, protected, record.spec, record.backend)
        word = "protected" if protected else "no longer protected"
        return Change(desired.kind, desired.name, Action.UPDATE, f"becomes {word} ({PROTECTED_ANNOTATION})", Consequence.IN_PLACE, wave,
                      fields=(FieldDiff("ftctl.protected", record.protected, protected),), record=new_record)

    def _live_rows(self, record: ManagedRecord) -> dict[str, Row | None]:
        if not record.store_table:
            return {}
        return {rid: self.snapshot.row(record.store_table, rid) for rid in record.row_ids}

    def _recreate(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        change = self._create(desired, wave, spec_fp, protected, reason="its row was deleted outside ftctl: it is written again")
        if change.record is None:
            return change
        record_after = Record(**{**change.record.__dict__, "generation": record.generation, "backend": record.backend})
        return Change(change.kind, change.name, Action.CREATE, change.reason, change.consequence, wave, True,
                      change.fields, change.ops, record_after)

    def _replace(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool, why: str,
                 consequence: Consequence, fields: tuple[FieldDiff, ...], drift: bool) -> Change:
        kind, name = desired.kind, desired.name
        generation = record.generation + 1
        delete_ops = self._delete_ops(record)
        self.deleted_ids.update(record.row_ids)
        if kind == "Config":
            shared = self._equal_config(desired)
            if shared is not None:
                self.ids[(kind, name)] = shared
                rec = Record("configs", shared, (shared,), spec_fp, _rows_fp(desired, {}, only=SHARED_COLUMNS), generation, "shared", protected)
                return Change(kind, name, Action.REPLACE, f"{why}; the new body equals {self._config_label(shared, exclude=name)}: shares its row",
                              Consequence.SHARED, wave, drift, fields, delete_ops, rec)
        own_id = new_id(self.seed, kind, name, generation)
        self.ids[(kind, name)] = own_id
        if desired.table == "evaluation_jobs":  # the rows carry the job's id as parent_job_id
            desired = _with_parent(desired, own_id)
            spec_fp = self._spec_fingerprint(desired)  # as the next plan, rendering with the new id, computes it
        ids = self._row_ids(desired, own_id, generation=generation)
        inserts = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        if kind == "Config":
            self.new_configs[_config_key(desired.rows[0].values)] = own_id
        rec = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp, _rows_fp(desired, {}),
                     generation, "created", protected)
        return Change(kind, name, Action.REPLACE, why, consequence, wave, drift, fields, delete_ops + inserts, rec)

    def _delete_ops(self, record: ManagedRecord) -> tuple[RowOp, ...]:
        if record.origin == "shared" or not record.store_table:
            return ()
        others = [r for r in self.snapshot.managed.values() if r.store_id == record.store_id and r.address != record.address]
        if others:
            return ()
        return tuple(RowOp(record.store_table, "delete", rid) for rid in record.row_ids if self.snapshot.row(record.store_table, rid) is not None)

    # -- delete ----------------------------------------------------------------------------------

    def deletions(self) -> list[Change]:
        if self.partial:  # what a partial plan did not read is not its business
            return []
        wanted = {(m.kind, m.name) for m in self.manifests}
        orphans = [r for key, r in self.snapshot.managed.items() if key not in wanted]
        orphans.sort(key=lambda r: (DELETE_ORDER.index(r.kind) if r.kind in DELETE_ORDER else 99, r.name))
        if not self.policy.prune:
            return [Change(r.kind, r.name, Action.NOOP, "no manifest any more; `--prune` would delete it", orphan=True)
                    for r in orphans]
        going = {rid for r in orphans for rid in r.row_ids}
        changes = []
        for record in orphans:
            changes.append(self._delete(record, going))
        return changes

    def _delete(self, record: ManagedRecord, going: set[str]) -> Change:
        address = record.address
        if record.protected:
            self.blockers.append(Blocker(address, "PL-002", f"{address} is protected ({PROTECTED_ANNOTATION}); "
                                         "unprotect it (`ftctl unprotect`) before pruning it"))
        users = list(self._users(record, going))
        if users:
            self.blockers.append(Blocker(address, "PL-003", f"{address} is still used by {', '.join(users[:5])}"
                                         + (f" and {len(users) - 5} more" if len(users) > 5 else "") + "; delete them too or keep it"))
        ops = self._delete_ops(record)
        live = self._live_rows(record)
        fields = tuple(FieldDiff(f"{record.store_table}.{c}", v, None) for row in live.values() if row for c, v in row.items()
                       if c != "id" and v not in (None, ""))
        consequence = Consequence.RELEASE if not ops and record.store_table else Consequence.NONE
        return Change(record.kind, record.name, Action.DELETE, "no manifest any more (--prune)", consequence,
                      wave=0, fields=fields, ops=ops)

    def _users(self, record: ManagedRecord, going: set[str]) -> Iterable[str]:
        for table, column in REFERRERS.get(record.store_table, ()):
            for row in self.snapshot.rows.get(table, {}).values():
                if row.get(column) in record.row_ids and row["id"] not in going:
                    kind = next(k for k, t in KIND_TABLE.items() if t == table)
                    yield f"{kind} {row.get('name') or row.get('adapter_name') or row['id']}"


def _spec_diffs(before: dict[str, Any] | None, desired: Desired) -> tuple[FieldDiff, ...]:
    """For kinds without Studio rows: what changed in the resolved spec since it was applied."""
    if desired.rows or before is None:
        return ()
    after = desired.spec
    return tuple(FieldDiff(f"spec.{k}", before.get(k), after.get(k), True) for k in dict.fromkeys([*before, *after])
                 if before.get(k) != after.get(k))


def _readable(change: Change) -> Change:
    """Field diffs as people read them: JSON columns parsed, and compared key by key (a secret's
    value is masked already, so a change between two masked values shows as the column's)."""
    out: list[FieldDiff] = []
    for diff in change.fields:
        table, _, column = diff.path.partition(".")
        if column not in JSON_COLUMNS.get(table, ()):
            out.append(diff)
            continue
        before, after = as_shown(table, column, diff.before), as_shown(table, column, diff.after)
        if isinstance(before, dict) and isinstance(after, dict):
            keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k, _ABSENT) != after.get(k, _ABSENT)]
            out.extend(FieldDiff(f"{diff.path}.{k}", before.get(k), after.get(k), diff.forces_replace) for k in keys)
            if not keys:
                out.append(diff)
        else:
            out.append(FieldDiff(diff.path, before, after, diff.forces_replace))
    return replace(change, fields=tuple(out)) if out != list(change.fields) else change


_ABSENT = object()


def _with_parent(desired: Desired, parent: str) -> Desired:
    rows = tuple(DesiredRow(r.table, r.key, {**r.values, "parent_job_id": parent}) for r in desired.rows)
    return Desired(desired.kind, desired.name, desired.table, rows, desired.spec, desired.depends_on, desired.waits_for)


def _run_inputs(desired: Desired) -> str:
    columns = RUN_INPUT_COLUMNS.get(desired.table)
    if columns is None:
        return digest([r.values for r in desired.rows] + [desired.spec])
    return digest([r.comparable.get(c) for r in desired.rows for c in columns])


def _config_key(values: Row) -> str:
    return digest([values.get("type"), comparable("configs", dict(values)).get("config")])


def _pair_live(desired: Desired, live: dict[str, Row | None]) -> dict[str, Row]:
    """Desired row key -> live row: single rows by position, evaluation rows by (model, adapter)."""
    rows = [r for r in live.values() if r is not None]
    if desired.table != "evaluation_jobs":
        return {desired.rows[0].key: rows[0]} if desired.rows and rows else {}
    return {f"{r.get('base_model_id') or ''}|{r.get('adapter_id') or ''}": r for r in rows}


def _field_diffs(desired: Desired, live: dict[str, Row | None], *, only: tuple[str, ...] | None) -> tuple[FieldDiff, ...]:
    paired = _pair_live(desired, live)
    out: list[FieldDiff] = []
    for drow in desired.rows:
        lrow = paired.get(drow.key)
        if lrow is None:
            out.append(FieldDiff(f"{drow.table}.row", None, drow.key or "row", True))
            continue
        want, have = drow.comparable, comparable(drow.table, lrow)
        for column in drow.values:
            if only is not None and column not in only:
                continue
            if want[column] != have[column]:
                out.append(FieldDiff(f"{drow.table}.{column}", lrow.get(column), drow.values[column]))
    if desired.table == "evaluation_jobs" and len(paired) > len(desired.rows):
        out.append(FieldDiff("evaluation_jobs.row", "extra combinations", None, True))
    return tuple(out)


def _rows_fp(
    desired: Desired,
    live: dict[str, Row | None] | dict[str, Row],
    *,
    only: tuple[str, ...] | None = None,
    compare: Callable[[str, Row], Row] = comparable,
) -> str:
    """Digest of the owned columns: of the desired rows (when `live` is empty) or of the live rows."""
    if not desired.rows:
        return digest(desired.spec)
    paired = _pair_live(desired, dict(live)) if live else None
    out: list[Any] = []
    for drow in desired.rows:
        row = paired.get(drow.key) if paired is not None else drow.values
        if row is None:
            out.append(None)
            continue
        values = drow.comparable if paired is None else compare(drow.table, row)
        columns = [c for c in drow.values if only is None or c in only]
        out.append([drow.key, [values[c] for c in columns]])
    return digest(out)


def _mass_deletion(changes: list[Change], policy: Policy) -> list[Blocker]:
    deletions = [c for c in changes if c.action is Action.DELETE]
    if len(deletions) <= policy.max_deletions:
        return []
    return [Blocker("plan", "PL-004", f"the plan deletes {len(deletions)} objects, more than --max-deletions "
                    f"{policy.max_deletions}; raise the limit if this is intended")]
