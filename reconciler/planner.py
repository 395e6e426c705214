"""`build_plan`: pair each manifest with what the store holds and decide what apply must do.

Pure: manifests, a `Snapshot`, facts and a `Policy` in; a `Plan` out. No I/O, no clock, no
randomness: ids of new rows are UUIDs derived from `seed`, which the engine draws once per plan.

Pair → diff → decide (gitops-engine's `(live?, target?)`): `pairing` pairs each manifest with its
managed record and lists the records no manifest declares; `pairing.decide` says what each pair's
shape asks for (create, adopt, replace, noop, compare, delete, orphan); a compared pair is diffed
column by column on the columns ftctl owns (`rowdiff`). What differs per kind (its table, whether
a change re-runs work, which columns force a new row, unique columns, who references its rows, what
its job produces) is read from its binding (`reconciler.kinds.BINDINGS`): nothing here branches on
a kind's name or names a Studio column. A live row that
differs from what ftctl last wrote is drift: the plan shows it before/after and puts the
manifest's value back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

from reconciler.desired import RUN_INPUT_COLUMNS, Desired, PlanFacts, Scope, declared_id, render
from reconciler.evaluations import compare
from reconciler.graph import Graph, build_graph
from reconciler.history import IMPORTED, records_run
from reconciler.kinds import BINDINGS, BY_TABLE, product_link, product_name, referrers
from reconciler.kinds.base import Binding
from reconciler.kinds.config import content_key
from reconciler.lifecycle import JobContext, advance
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, Model
from reconciler.models.base import PROTECTED_ANNOTATION, STORE_ID_ANNOTATION
from reconciler.pairing import Decision, Pair, decide, orphans, pair_manifests
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
from reconciler.records import Row, comparable, digest
from reconciler.rowdiff import (
    field_diffs,
    pair_live,
    readable,
    rows_fp,
    run_inputs,
    spec_diffs,
    with_parent,
    without_history,
)

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
    changes = [readable(c) for c in planner.pair_all() + planner.deletions()]
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
    recorded_runs: set[tuple[str, str]] = field(default_factory=set)  # objects whose manifest records their run (history)

    @cached_property
    def _managed_ids(self) -> set[str]:
        return {r.store_id for r in self.snapshot.managed.values()}

    def pair_all(self) -> list[Change]:
        by_key = {(m.kind, m.name): m for m in self.manifests}
        self.scope_configs = {m.name: m for m in self.manifests if isinstance(m.resource, Config)}
        self.scope_models = {m.name: m for m in self.manifests if isinstance(m.resource, Model)}
        self.producers = {**self._managed_producers(by_key), **self._manifest_producers()}
        for key, record in self.snapshot.managed.items():  # what the manifests reference outside them
            if key not in by_key:
                self.ids[key] = record.store_id
        return [self.pair(p) for p in pair_manifests(self.manifests, self.snapshot.managed, self.graph)]

    def _manifest_producers(self) -> dict[str, str]:
        """What the manifests' jobs produce (a training's adapter name) -> the job's manifest name."""
        return {product: m.name for m in self.manifests if (product := product_name(m))}

    def _managed_producers(self, by_key: dict[tuple[str, str], Manifest]) -> dict[str, str]:
        """What managed jobs outside the manifests produce (an adapter name) -> the job's name."""
        out = {}
        for (kind, name), record in self.snapshot.managed.items():
            binding = BINDINGS.get(kind)
            if binding is None or not binding.produces or (kind, name) in by_key:
                continue
            row = self.snapshot.row(binding.table, record.store_id)
            if row is not None and binding.name_of(row):
                out[binding.name_of(row)] = name
        return out

    def _scope(self) -> Scope:
        return Scope(self.ids, self.snapshot, self.facts, configs=self.scope_configs, models=self.scope_models, producers=self.producers)

    def pair(self, pair: Pair) -> Change:
        manifest, wave = pair.manifest, pair.wave
        assert manifest is not None
        key = (pair.kind, pair.name)
        if pair.record is None and self._adoptable(manifest):
            pair = replace(pair, record=self._adoption_record(manifest), adopting=True)
        record = pair.record
        own_id = record.store_id if record else self._declared_or_new(manifest, key)
        self.ids[key] = own_id
        desired = render(manifest, self._scope(), own_id=own_id)
        if records_run(manifest):
            self.recorded_runs.add(key)
        elif not pair.adopting and (record is None or record.origin != IMPORTED):
            desired = without_history(desired)  # a generation ftctl runs: its launch fills them
        self.desired[key] = desired
        token_env = getattr(manifest.resource.spec, "hf_token_env", None) if BINDINGS[pair.kind].lends_token else None
        if token_env:
            self.token_envs[own_id] = token_env  # jobs on it download with it
        protected = is_protected(manifest, record)
        forced = pair.address in self.forced
        in_sync = record is not None and not pair.adopting and not forced and self._in_sync(desired, record)
        decision = decide(pair, prune=self.policy.prune, forced=forced, in_sync=in_sync)
        if decision is Decision.NOOP:  # the common case, cheaply
            assert record is not None
            change = self._noop_or_protect(desired, record, wave, protected)
            self._remember_rows(desired, change, record)
            return change
        # A waiting object is neither written nor recorded: its fingerprint would go unused.
        spec_fp = self._spec_fingerprint(desired) if pair.adopting or not desired.waits_for else ""
        match decision:
            case Decision.CREATE:
                change = self._create(desired, wave, spec_fp, protected)
            case Decision.ADOPT:
                assert record is not None
                change = self._adopt(desired, record, wave, spec_fp, protected)
            case Decision.REPLACE if not desired.waits_for:
                assert record is not None
                change = self._force_replace(desired, record, wave, spec_fp, protected)
            case _:  # compare (a requested replacement that waits is compared: it waits)
                assert record is not None
                change = self._compare(desired, record, wave, spec_fp, protected)
        if not desired.table and change.record is not None:  # no Studio row: keep the spec to diff against
            change = replace(change, record=replace(change.record, spec=desired.spec))
        if BINDINGS[pair.kind].rerun is not None:
            change = advance(manifest, desired, record, change, self._job_context)
        if change.action.is_change() and not change.waits_for and change.ops:
            self.changed.add(key)
        self._remember_rows(desired, change, record)
        return change

    def _in_sync(self, desired: Desired, record: ManagedRecord) -> bool:
        """A row-backed object that is not a job whose owned columns equal the store's (no digests)."""
        if BINDINGS[desired.kind].rerun is not None or desired.waits_for or len(desired.rows) != 1 or len(record.row_ids) != 1:
            return False
        live = self.snapshot.comparable_row(desired.table, record.row_ids[0])
        if live is None:
            return False
        want = desired.rows[0].comparable
        columns = _owned(record) or desired.rows[0].values
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
        if desired.table and not BINDINGS[desired.kind].fan_out and desired.rows:
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
        binding = BINDINGS[manifest.kind]
        if not store_id or not binding.table or store_id in self._managed_ids:
            return False
        return bool(self._rows_of(binding, store_id))

    def _rows_of(self, binding: Binding, store_id: str) -> tuple[str, ...]:
        """The ids of the rows of the object whose id is `store_id` that the store holds."""
        if binding.fan_out:
            return tuple(sorted(str(r["id"]) for r in self.snapshot.rows.get(binding.table, {}).values()
                                if binding.owned_by(r, store_id)))
        return (store_id,) if self.snapshot.row(binding.table, store_id) is not None else ()

    def _adoption_record(self, manifest: Manifest) -> ManagedRecord:
        store_id = manifest.resource.metadata.annotations[STORE_ID_ANNOTATION]
        binding = BINDINGS[manifest.kind]
        row_ids = self._rows_of(binding, store_id)
        origin = "shared" if binding.is_shared(self.snapshot.row(binding.table, row_ids[0]) or {}) else "imported"
        return ManagedRecord(manifest.kind, manifest.name, binding.table, store_id, row_ids, "", "", 1, False, origin)

    def _adopt(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        """Take an existing Studio row under management; differences are shown and put right."""
        only = _owned(record)
        live_fp = rows_fp(desired, self._live_rows(record), only=only, compare=self._live_comparable)
        record = ManagedRecord(record.kind, record.name, record.store_table, record.store_id, record.row_ids,
                               spec_fp, live_fp, 1, protected, record.origin)
        change = self._compare(desired, record, wave, spec_fp, protected)
        after = change.record or Record(record.store_table, record.store_id, record.row_ids, spec_fp,
                                        rows_fp(desired, {}, only=only), 1, record.origin, protected)
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
            self.content[key] = run_inputs(found) if found is not None else self._stored_inputs(key)
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
        if BINDINGS[kind].content_addressed:
            shared = self._equal_config(desired)
            if shared is not None:
                self.ids[(kind, name)] = shared
                record = Record(desired.table, shared, (shared,), spec_fp, rows_fp(desired, {}, only=BINDINGS[kind].shared_columns), 1,
                                "shared", protected)
                return Change(kind, name, Action.CREATE, f"equal to {self._config_label(desired, shared)} (CF-004): shares its row",
                              Consequence.SHARED, wave, record=record)
        clash = self._unmanaged_clash(desired)
        if clash:
            self.blockers.append(Blocker(f"{kind}/{name}", "PL-001", clash))
        own_id = self.ids[(kind, name)]
        ids = self._row_ids(desired, own_id, generation=1)
        ops = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        if BINDINGS[kind].content_addressed:
            self.new_configs[content_key(desired.rows[0].values)] = own_id
        record = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp,
                        rows_fp(desired, {}), 1, "created", protected)
        fields = tuple(FieldDiff(f"{r.table}.{c}", None, v) for r in desired.rows for c, v in r.values.items() if v not in (None, ""))
        return Change(kind, name, Action.CREATE, reason or "new in the manifests", Consequence.NONE, wave,
                      fields=fields, ops=ops, record=record)

    def _row_ids(self, desired: Desired, own_id: str, *, generation: int) -> dict[str, str]:
        if BINDINGS[desired.kind].fan_out:  # a first generation keeps the row ids its manifest declares (imported)
            return {r.key: (r.row_id if generation == 1 and r.row_id and self.snapshot.row(desired.table, r.row_id) is None
                            else new_id(self.seed, desired.kind, desired.name, generation, r.key)) for r in desired.rows}
        return {r.key: own_id for r in desired.rows}

    def _declared_or_new(self, manifest: Manifest, key: tuple[str, str]) -> str:
        """A new object's id: the one its manifest declares (`ftctl.io/store-id`, an import applied
        to a store that does not hold the row), else one derived from the plan's seed."""
        declared = declared_id(manifest)
        binding = BINDINGS[manifest.kind]
        taken = declared is None or not binding.table or self.snapshot.row(binding.table, declared) is not None or bool(
            self._rows_of(binding, declared))
        return new_id(self.seed, *key, 1) if taken or declared is None else declared

    def _config_label(self, desired: Desired, store_id: str) -> str:
        owners = [*self.ids.items(), *(((r.kind, r.name), r.store_id) for r in self.snapshot.managed.values())]
        for (kind, name), known in owners:
            if known == store_id and kind == desired.kind and name != desired.name:
                return f"{kind}/{name}"
        shipped = BINDINGS[desired.kind].is_shared(self.snapshot.row(desired.table, store_id) or {})
        default = "a Studio default config" if shipped else "a Studio config"
        return f"{default} ({store_id}; its description stays as it is)"

    def _equal_config(self, desired: Desired) -> str | None:
        values = desired.rows[0].values
        key = content_key(values)
        if key in self.new_configs:
            return self.new_configs[key]
        managed_ids = {r.store_id for r in self.snapshot.managed.values() if r.kind == desired.kind}
        for row in self.snapshot.rows.get(desired.table, {}).values():
            if row["id"] not in managed_ids and row["id"] not in self.deleted_ids and content_key(row) == key:
                return str(row["id"])
        return None

    def _unmanaged_clash(self, desired: Desired) -> str:
        if not desired.rows:
            return ""
        values = desired.rows[0].values
        for column in BINDINGS[desired.kind].unique:
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
        only = _owned(record)
        rerun = BINDINGS[kind].rerun
        rerun_spec_changed = rerun is not None and spec_fp != record.spec_fingerprint
        if not rerun_spec_changed and self._rows_match(desired, live, only):  # the common case: in sync
            return self._noop_or_protect(desired, record, wave, protected)
        live_fp = rows_fp(desired, live, only=only, compare=self._live_comparable)
        want_fp = rows_fp(desired, {}, only=only)
        table_replace = BINDINGS[kind].replace_columns
        fields = tuple(
            FieldDiff(f.path, f.before, f.after, f.forces_replace or f.path.split(".", 1)[1] in table_replace, f.sensitive)
            for f in field_diffs(desired, live, only=only)
        ) or spec_diffs(record.spec, desired)
        # Drift: the store moved away from what ftctl wrote while the manifest did not.
        drift = live_fp != record.row_fingerprint and want_fp == record.row_fingerprint
        if not fields and not rerun_spec_changed:
            return self._noop_or_protect(desired, record, wave, protected)
        why = self._why(desired, drift)
        if rerun is not None:
            return self._replace(desired, record, wave, spec_fp, protected, why, rerun, fields, drift)
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
        only = _owned(record)
        live = self._live_rows(record)
        fields = field_diffs(desired, live, only=only) if live else ()
        return self._replace(desired, record, wave, spec_fp, protected, "replacement requested (--replace)",
                             BINDINGS[desired.kind].rerun or Consequence.NONE, fields, False)

    def _rows_match(self, desired: Desired, live: dict[str, Row | None], only: tuple[str, ...] | None) -> bool:
        """The owned columns of every desired row equal its live row's, as the Studio sees them."""
        paired = pair_live(desired, live)
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
        desired, spec_fp = self._own_generation(desired, spec_fp)
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
        delete_ops = self._retire_ops(record) or self._delete_ops(record)
        self.deleted_ids.update(record.row_ids)
        if BINDINGS[kind].content_addressed:
            shared = self._equal_config(desired)
            if shared is not None:
                self.ids[(kind, name)] = shared
                rec = Record(desired.table, shared, (shared,), spec_fp, rows_fp(desired, {}, only=BINDINGS[kind].shared_columns),
                             generation, "shared", protected)
                return Change(kind, name, Action.REPLACE, f"{why}; the new body equals {self._config_label(desired, shared)}: shares its row",
                              Consequence.SHARED, wave, drift, fields, delete_ops, rec)
        own_id = new_id(self.seed, kind, name, generation)
        self.ids[(kind, name)] = own_id
        if BINDINGS[kind].fan_out:  # the rows carry the job's id (the binding's owner column)
            desired = with_parent(desired, own_id)
            spec_fp = self._spec_fingerprint(desired)  # as the next plan, rendering with the new id, computes it
        desired, spec_fp = self._own_generation(desired, spec_fp)
        ids = self._row_ids(desired, own_id, generation=generation)
        inserts = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        if BINDINGS[kind].content_addressed:
            self.new_configs[content_key(desired.rows[0].values)] = own_id
        rec = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp, rows_fp(desired, {}),
                     generation, "created", protected)
        return Change(kind, name, Action.REPLACE, why, consequence, wave, drift, fields, delete_ops + inserts, rec)

    def _own_generation(self, desired: Desired, spec_fp: str) -> tuple[Desired, str]:
        """A new generation ftctl runs (a re-run, a re-creation) starts without the previous run's
        history columns (its CML job, results folder, adapter): its own launch fills them, and the
        next plan, rendering without them, computes the same fingerprint. A manifest that records
        its run keeps them: that generation is history (`history.is_history`), never launched."""
        stripped = without_history(desired)
        if stripped is desired or (desired.kind, desired.name) in self.recorded_runs:
            return desired, spec_fp
        self.desired[(desired.kind, desired.name)] = stripped
        return stripped, self._spec_fingerprint(stripped)

    def _retire_ops(self, record: ManagedRecord) -> tuple[RowOp, ...]:
        """A re-run of a kind whose job produces something (a training's adapter) keeps the previous
        generation's row, as the Studio keeps every run's, renamed with what it produced: the product
        column (`adapter_name`) and the product (the adapter it registered) both become `<name>-g<N>`.
        The Studio finds a training by its adapter's name (get_dataset_split_by_adapter), so each
        version keeps answering with the split it was trained with, and the new generation's row
        takes the name. Empty when the kind keeps nothing (its rows are deleted and written anew)."""
        binding = BINDINGS[record.kind]
        row = self.snapshot.row(record.store_table, record.store_id) if binding.produces else None
        if row is None or record.origin == "shared":
            return ()
        made, link = BINDINGS[binding.produces], product_link(record.kind)
        product = binding.name_of(row)
        retired = f"{product}-g{record.generation}"
        produced = [a for a in self.snapshot.rows.get(made.table, {}).values()
                    if made.name_of(a) == product and a.get(link) == record.store_id]
        return (RowOp(record.store_table, "update", record.store_id, binding.named(retired)),
                *(RowOp(made.table, "update", str(a["id"]), made.named(retired)) for a in produced))

    def _delete_ops(self, record: ManagedRecord) -> tuple[RowOp, ...]:
        if record.origin == "shared" or not record.store_table:
            return ()
        others = [r for r in self.snapshot.managed.values() if r.store_id == record.store_id and r.address != record.address]
        if others:
            return ()
        return tuple(RowOp(record.store_table, "delete", rid) for rid in record.row_ids if self.snapshot.row(record.store_table, rid) is not None)

    # -- delete ----------------------------------------------------------------------------------

    def deletions(self) -> list[Change]:
        """The managed objects no manifest declares: deleted with `--prune`, else kept as orphans."""
        if self.partial:  # what a partial plan did not read is not its business
            return []
        found = orphans(self.manifests, self.snapshot.managed, {kind: b.delete_rank for kind, b in BINDINGS.items()})
        going = {rid for p in found if p.record for rid in p.record.row_ids} if self.policy.prune else set()
        changes = []
        for pair in found:
            assert pair.record is not None
            if decide(pair, prune=self.policy.prune, forced=False, in_sync=False) is Decision.DELETE:
                changes.append(self._delete(pair.record, going))
            else:
                changes.append(Change(pair.kind, pair.name, Action.NOOP, "no manifest any more; `--prune` would delete it",
                                      orphan=True))
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
        for table, column in referrers(record.kind) if record.kind in BINDINGS else ():
            for row in self.snapshot.rows.get(table, {}).values():
                if row.get(column) in record.row_ids and row["id"] not in going:
                    user = BY_TABLE[table]
                    yield f"{user.kind} {(user.name_of(row) if not user.fan_out else '') or row['id']}"


def _owned(record: ManagedRecord) -> tuple[str, ...] | None:
    """The columns ftctl owns of a record's rows: all (None), or only the shared ones of a row the
    Studio ships or another object holds (`Binding.shared_columns`)."""
    return BINDINGS[record.kind].shared_columns if record.origin == "shared" else None


def _mass_deletion(changes: list[Change], policy: Policy) -> list[Blocker]:
    deletions = [c for c in changes if c.action is Action.DELETE]
    if len(deletions) <= policy.max_deletions:
        return []
    return [Blocker("plan", "PL-004", f"the plan deletes {len(deletions)} objects, more than --max-deletions "
                    f"{policy.max_deletions}; raise the limit if this is intended")]
