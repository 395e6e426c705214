"""`build_plan`: pair each manifest with what the store holds and decide what apply must do.

Pure: manifests, a `Snapshot`, facts and a `Policy` in; a `Plan` out. No I/O, no clock, no
randomness: ids of new rows are UUIDs derived from `seed`, which the engine draws once per plan.

Pair → diff → decide (gitops-engine's `(live?, target?)`): `pairing` pairs each manifest with its
managed record and lists the records no manifest declares; `pairing.decide` says what each pair's
shape asks for (create, adopt, replace, noop, compare, delete, orphan); a compared pair is diffed
column by column on the columns ftctl owns (`rowdiff`). What differs per kind (its table, whether
a change re-runs work, which columns force a new row, unique columns, who references its rows, what
its job produces) is read from its binding (`reconciler.kinds.BINDINGS`): nothing here branches on
a kind's name or names a Studio column. A live row that differs from what ftctl last wrote is
drift: the plan shows it before/after and puts the manifest's value back.

This module owns the decision per pair: create, compare (update in place, replace, re-create,
noop), a requested replacement, and the hand-over of a job kind's change to `lifecycle.advance`.
What one plan knows is a `planstate.PlanState`; adoption of existing Studio rows is `adopting`,
config sharing `sharing`, orphans and deletion `pruning`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from reconciler import adopting, sharing, sweepselect
from reconciler.desired import Desired, PlanFacts, Scope, render
from reconciler.evaluations import compare
from reconciler.graph import Graph, build_graph
from reconciler.history import IMPORTED, records_run
from reconciler.kinds import BINDINGS, product_name
from reconciler.kinds.adapter import registered_by, retired
from reconciler.lifecycle import JobContext, advance
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import Config, Model
from reconciler.models.base import PROTECTED_ANNOTATION, STORE_ID_ANNOTATION
from reconciler.pairing import Decision, Pair, decide, pair_manifests
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
from reconciler.planstate import PlanState, new_id, owned
from reconciler.pruning import delete_ops, deletions, mass_deletion
from reconciler.records import Row
from reconciler.rowdiff import (
    field_diffs,
    pair_live,
    readable,
    rows_fp,
    spec_diffs,
    update_ops,
    with_columns_as,
    with_parent,
    without_history,
)

__all__ = ["STORE_ID_ANNOTATION", "build_plan", "is_protected", "new_id"]


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
    choices = sweepselect.choose(manifests, snapshot, facts.observations)  # exports that select their adapter
    manifests = sweepselect.with_choices(manifests, choices)
    planner = _Planner(manifests, snapshot, policy, facts, seed, graph or build_graph(manifests),
                       partial=partial is not None, forced=frozenset(replace_addresses))
    changes = [readable(c) for c in planner.pair_all() + deletions(planner)]
    changes = [replace(c, chosen=choices[c.name]) if c.kind == "ModelExport" and c.name in choices else c for c in changes]
    blockers = planner.blockers + mass_deletion(changes, policy)
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


def is_protected(manifest: Manifest, record: ManagedRecord | None) -> bool:
    """The annotation when the manifest has one; otherwise what the store says (`ftctl protect`)."""
    value = manifest.resource.metadata.annotations.get(PROTECTED_ANNOTATION)
    if value is None:
        return record.protected if record else False
    return value.strip().lower() in ("true", "yes", "1")


@dataclass
class _Planner(PlanState):
    """One `build_plan` call: pairs each manifest and decides its change, over the `PlanState`."""

    producers: dict[str, str] = field(default_factory=dict)  # a job's product (an adapter name) -> the job's name

    @cached_property
    def _scope_manifests(self) -> tuple[dict[str, Manifest], dict[str, Manifest]]:
        configs = {m.name: m for m in self.manifests if isinstance(m.resource, Config)}
        models = {m.name: m for m in self.manifests if isinstance(m.resource, Model)}
        return configs, models

    def pair_all(self) -> list[Change]:
        by_key = {(m.kind, m.name): m for m in self.manifests}
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
        configs, models = self._scope_manifests
        return Scope(self.ids, self.snapshot, self.facts, configs=configs, models=models, producers=self.producers)

    def pair(self, pair: Pair) -> Change:
        manifest, wave = pair.manifest, pair.wave
        assert manifest is not None
        key = (pair.kind, pair.name)
        if pair.record is None and adopting.adoptable(self, manifest):
            pair = replace(pair, record=adopting.adoption_record(self, manifest), adopting=True)
        record = pair.record
        own_id = record.store_id if record else adopting.declared_or_new(self, manifest, key)
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
        spec_fp = self.spec_fingerprint(desired) if pair.adopting or not desired.waits_for else ""
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
        columns = owned(record) or desired.rows[0].values
        return all(want[c] == live[c] for c in columns)

    @cached_property
    def _job_context(self) -> JobContext:
        return JobContext(self.snapshot, self.facts.jobs, self.facts.observations, self.row,
                          self.new_id, dict(self.snapshot.managed), self.token_envs, provenance=self.facts.provenance,
                          no_reuse=self.forced)

    def _remember_rows(self, desired: Desired, change: Change, record: ManagedRecord | None) -> None:
        """The rows this plan writes, by id, so jobs read their inputs as they will be."""
        for op in change.ops:
            if op.op == "insert":
                self.rows_by_id[(op.table, op.row_id)] = dict(op.values)
        if desired.table and not BINDINGS[desired.kind].fan_out and desired.rows:
            own = change.record.store_id if change.record else (record.store_id if record else "")
            if own:
                self.rows_by_id[(desired.table, own)] = {"id": own, **desired.rows[0].values}

    def _adopt(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        """Take an existing Studio row under management; differences are shown and put right."""
        record = adopting.with_fingerprints(self, desired, record, spec_fp, protected)
        return adopting.adopted(self._compare(desired, record, wave, spec_fp, protected), desired, record, wave, spec_fp, protected)

    # -- create ----------------------------------------------------------------------------------

    def _create(self, desired: Desired, wave: int, spec_fp: str, protected: bool, *, reason: str = "") -> Change:
        kind, name = desired.kind, desired.name
        if desired.waits_for:
            return Change(kind, name, Action.CREATE, f"waits for {', '.join(desired.waits_for)}",
                          Consequence.WAIT, wave, waits_for=desired.waits_for)
        shared = sharing.equal_row(self, desired)
        if shared is not None:
            record = sharing.shared_record(self, desired, shared, spec_fp, 1, protected)
            return Change(kind, name, Action.CREATE, f"equal to {sharing.label(self, desired, shared)} (CF-004): shares its row",
                          Consequence.SHARED, wave, record=record)
        clash = self._unmanaged_clash(desired)
        if clash:
            self.blockers.append(Blocker(f"{kind}/{name}", "PL-001", clash))
        own_id = self.ids[(kind, name)]
        ids = self._row_ids(desired, own_id, generation=1)
        ops = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        sharing.remember(self, desired, own_id)
        record = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp,
                        rows_fp(desired, {}), 1, "created", protected)
        fields = tuple(FieldDiff(f"{r.table}.{c}", None, v) for r in desired.rows for c, v in r.values.items() if v not in (None, ""))
        return Change(kind, name, Action.CREATE, reason or "new in the manifests", Consequence.NONE, wave,
                      fields=fields, ops=ops, record=record)

    def _row_ids(self, desired: Desired, own_id: str, *, generation: int) -> dict[str, str]:
        if BINDINGS[desired.kind].fan_out:  # a first generation keeps the row ids its manifest declares (imported)
            return {r.key: (r.row_id if generation == 1 and r.row_id and self.snapshot.row(desired.table, r.row_id) is None
                            else self.new_id(desired.kind, desired.name, generation, r.key)) for r in desired.rows}
        return {r.key: own_id for r in desired.rows}

    def _unmanaged_clash(self, desired: Desired) -> str:
        if not desired.rows:
            return ""
        values = desired.rows[0].values
        for column in BINDINGS[desired.kind].unique:
            value = values.get(column)
            if not value:
                continue
            for row in self.snapshot.rows.get(desired.table, {}).values():
                if row.get(column) == value and row["id"] not in self.managed_ids:
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
        live = self.live_rows(record)
        if (desired.rows and any(row is None for row in live.values())) or (desired.rows and not live):
            return self._recreate(desired, record, wave, spec_fp, protected)
        only = owned(record)
        rerun = BINDINGS[kind].rerun
        rerun_spec_changed = rerun is not None and not self.spec_unchanged(desired, record.spec_fingerprint, spec_fp)
        if not rerun_spec_changed and self._rows_match(desired, live, only):  # the common case: in sync
            return self._noop_or_protect(desired, record, wave, protected)
        live_fp = rows_fp(desired, live, only=only, compare=self.live_comparable)
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
        columns = list(dict.fromkeys(f.path.split(".", 1)[1] for f in fields))
        if rerun is not None and not self._only_in_place(desired, record, live, fields, rerun_spec_changed):
            return self._replace(desired, record, wave, spec_fp, protected, why, rerun, fields, drift)
        if any(f.forces_replace for f in fields):
            return self._replace(desired, record, wave, spec_fp, protected, why, Consequence.NONE, fields, drift)
        if rerun is not None:
            why = f"{why}; {', '.join(columns)} updated in place (the job does not run again)"
        ops = update_ops(desired, live, columns)
        new_record = Record(record.store_table, record.store_id, record.row_ids, spec_fp, want_fp,
                            record.generation, record.origin, protected, backend=record.backend)
        return Change(kind, name, Action.UPDATE, why, Consequence.IN_PLACE, wave, drift, fields, ops, new_record)

    def _only_in_place(self, desired: Desired, record: ManagedRecord, live: dict[str, Row | None],
                       fields: tuple[FieldDiff, ...], spec_changed: bool) -> bool:
        """A re-run kind's change that touches only the columns it updates in place
        (`Binding.in_place`, an evaluation's num_workers): every field diff is one, and the spec is
        as recorded, or is with them as the store has them (or left out, as a render that omitted
        them recorded). The job is not run again: its rows are updated."""
        in_place = BINDINGS[desired.kind].in_place
        if not fields or any(f.forces_replace or f.path.split(".", 1)[1] not in in_place for f in fields):
            return False
        if not spec_changed:  # drift, or a Studio row adopted: only the columns differ
            return True
        for drop in (False, True):
            before = with_columns_as(desired, live, in_place, drop=drop)
            if self.spec_unchanged(before, record.spec_fingerprint, self.spec_fingerprint(before)):
                return True
        return False

    def _force_replace(self, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
        """`--replace`: a new row (a job: a new generation and its launch) whatever changed; the
        field diffs still show what did."""
        only = owned(record)
        live = self.live_rows(record)
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
            want, have = drow.comparable, self.live_comparable(drow.table, lrow)
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
        kept = self._retire_ops(record)
        old_rows = delete_ops(self, record) if kept is None else kept
        self.deleted_ids.update(record.row_ids)
        shared = sharing.equal_row(self, desired)
        if shared is not None:
            rec = sharing.shared_record(self, desired, shared, spec_fp, generation, protected)
            return Change(kind, name, Action.REPLACE, f"{why}; the new body equals {sharing.label(self, desired, shared)}: shares its row",
                          Consequence.SHARED, wave, drift, fields, old_rows, rec)
        own_id = self.new_id(kind, name, generation)
        self.ids[(kind, name)] = own_id
        if BINDINGS[kind].fan_out:  # the rows carry the job's id (the binding's owner column)
            desired = with_parent(desired, own_id)
            spec_fp = self.spec_fingerprint(desired)  # as the next plan, rendering with the new id, computes it
        desired, spec_fp = self._own_generation(desired, spec_fp)
        ids = self._row_ids(desired, own_id, generation=generation)
        inserts = tuple(RowOp(r.table, "insert", ids[r.key], {"id": ids[r.key], **r.values}) for r in desired.rows)
        sharing.remember(self, desired, own_id)
        rec = Record(desired.table, own_id, tuple(ids[r.key] for r in desired.rows), spec_fp, rows_fp(desired, {}),
                     generation, "created", protected)
        return Change(kind, name, Action.REPLACE, why, consequence, wave, drift, fields, old_rows + inserts, rec)

    def _own_generation(self, desired: Desired, spec_fp: str) -> tuple[Desired, str]:
        """A new generation ftctl runs (a re-run, a re-creation) starts without the previous run's
        history columns (its CML job, results folder, adapter): its own launch fills them, and the
        next plan, rendering without them, computes the same fingerprint. A manifest that records
        its run keeps them: that generation is history (`history.is_history`), never launched."""
        stripped = without_history(desired)
        if stripped is desired or (desired.kind, desired.name) in self.recorded_runs:
            return desired, spec_fp
        self.desired[(desired.kind, desired.name)] = stripped
        return stripped, self.spec_fingerprint(stripped)

    def _retire_ops(self, record: ManagedRecord) -> tuple[RowOp, ...] | None:
        """What a re-run does with the previous generation's rows: None when its kind keeps nothing
        (they are deleted and written anew). A kind whose job produces something (a training's
        adapter) keeps the previous row, as the Studio keeps every run's: one that registered its
        adapter keeps its name until the new version registers its own (`lifecycle`, with
        `adapter.earlier_versions`), so the name resolves to the newest finished version all along;
        one that registered none is renamed `<name>-g<N>` now (`adapter.retired`)."""
        if not BINDINGS[record.kind].produces:
            return None
        row = self.snapshot.row(record.store_table, record.store_id)
        if row is None or record.origin == "shared" or registered_by(self.snapshot.rows, row):
            return ()
        return retired(self.snapshot.rows, row, record.generation)
