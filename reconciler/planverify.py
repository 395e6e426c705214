"""What a plan may do to a store: every op, record and launch bounded by the objects it names.

A plan file's digest proves it is what `ftctl plan` wrote, but anyone can recompute a digest. So
before the first step, `apply_plan` checks the plan against the snapshot it read under the lock:
each change is of a known kind and writes only the Studio tables that kind writes; updates and
deletes touch only rows of the object the change names (its `ftctl_objects` rows, rows it
inserts itself, rows it adopts, or, deleting a job, its earlier generations' rows and products:
`adoption.owned_rows`) and never an unmanaged row; an update sets only columns its
field diffs show (or those the planner always writes, declared below); launches run a runner of
the closed set under exactly the job name the planner derives (the object's generation, the store's
identity and the digest of the launch's own input). Pure: a plan and a snapshot in,
the problems out (empty when the plan is within bounds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler import kinds
from reconciler.adoption import owned_rows
from reconciler.jobinput import input_digest, job_name
from reconciler.jobverify import launch_input_problems
from reconciler.kinds import BINDINGS, BY_TABLE, product_link
from reconciler.live import ManagedRecord, Snapshot
from reconciler.models import MODELS
from reconciler.models.base import MAX_RETRIES
from reconciler.plan import Action, Change, Launch, Plan, RowOp
from reconciler.records import COLUMN_KINDS, JSON_COLUMNS, YAML_CONFIG_TYPES, Row, as_shown, comparable
from reconciler.runtime import BACKENDS, RunnerKind

# Tables a kind writes besides its own: a training registers the adapter it produced (and renames
# the previous version's).
EXTRA_TABLES: dict[str, frozenset[str]] = {
    b.kind: frozenset({BINDINGS[b.produces].table}) for b in BINDINGS.values() if b.produces}
# Columns the planner writes with no field diff: the job recorded in a job's row and an evaluation's
# results folder (a launch an apply did not note: lifecycle.launch_note), and the retired
# generation's new names (its job row's name column and its product's: kinds.adapter.retired).
ALWAYS_WRITTEN: dict[tuple[str, str], frozenset[str]] = {
    **{(b.kind, b.table): frozenset({b.run_column, b.results_column, b.name_column if b.produces else ""} - {""})
       for b in BINDINGS.values() if b.run_column},
    **{(b.kind, BINDINGS[b.produces].table): frozenset({BINDINGS[b.produces].name_column})
       for b in BINDINGS.values() if b.produces},
}
RUNNER: dict[str, RunnerKind] = {
    "FineTuningJob": RunnerKind.TRAIN,
    "EvaluationJob": RunnerKind.EVALUATE,
    "ModelExport": RunnerKind.EXPORT,
}
OPS = ("insert", "update", "delete")
MAX_ATTEMPT = MAX_RETRIES + 1  # the first run and every retry a manifest may ask for
INT64 = (-(2**63), 2**63 - 1)  # what a Studio integer column holds


class PlanRefusedError(Exception):
    """A plan that would write outside what its changes name: nothing of it is applied."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(f"the plan is refused, nothing was applied: {problems[0]}{more}")
        self.problems = problems


def check_plan(plan: Plan, snapshot: Snapshot) -> None:
    """Raise `PlanRefusedError` naming the first change and op out of bounds, if any."""
    problems = plan_problems(plan, snapshot)
    if problems:
        raise PlanRefusedError(problems)


def plan_problems(plan: Plan, snapshot: Snapshot) -> list[str]:
    if plan.store != snapshot.source:
        return [f"it was made for the store {plan.store!r}, not {snapshot.source!r}"]
    if plan.store_id and snapshot.store_id not in ("", plan.store_id):
        return [f"it was made for the store whose identity is {plan.store_id!r}, and this store's is {snapshot.store_id!r} "
                "(the store was replaced since the plan was made)"]
    out = [f"{b.address}: blocked ({b.code}): {b.message}" for b in plan.blockers] + _policy_problems(plan)
    seen: set[str] = set()
    deleted = {(op.table, op.row_id) for c in plan.changes for op in c.ops if op.op == "delete"}
    inserted = {(op.table, op.row_id) for c in plan.changes for op in c.ops if op.op == "insert"}
    after = _RowsAfter(snapshot, plan)
    for change in plan.changes:
        if change.address in seen:
            out.append(f"{change.address}: appears twice")
        seen.add(change.address)
        check = _ChangeCheck(change, snapshot, deleted, inserted, after, plan.store_id or snapshot.store_id)
        out += [f"{change.address}: {p}" for p in check.problems()]
    return out


def _policy_problems(plan: Plan) -> list[str]:
    """The mass-deletion limit, counted again from the changes (whatever the plan's blockers say)."""
    deletions = sum(1 for c in plan.changes if c.action is Action.DELETE)
    limit = plan.policy.max_deletions
    if type(limit) is not int or deletions > limit:
        return [f"it deletes {deletions} objects, more than its max_deletions {limit!r}"]
    return []


class _RowsAfter:
    """The Studio rows as they will be after the plan: the store's, with the plan's ops laid over."""

    def __init__(self, snapshot: Snapshot, plan: Plan) -> None:
        self.snapshot = snapshot
        self.written: dict[tuple[str, str], Row | None] = {}
        for change in plan.changes:
            for op in change.ops:
                key = (op.table, op.row_id)
                if op.op == "insert":
                    self.written[key] = dict(op.values)
                elif op.op == "delete":
                    self.written[key] = None
                elif (row := self(op.table, op.row_id)) is not None:
                    self.written[key] = {**row, **op.values}

    def __call__(self, table: str, row_id: Any) -> Row | None:
        if not row_id:
            return None
        key = (table, str(row_id))
        return self.written[key] if key in self.written else self.snapshot.row(table, str(row_id))


@dataclass
class _ChangeCheck:
    change: Change
    snapshot: Snapshot
    deleted: set[tuple[str, str]]  # rows the plan deletes (a replacement may insert the same id again)
    inserted: set[tuple[str, str]]  # rows the plan inserts (a config another change creates may be shared)
    after: _RowsAfter  # the rows as the plan leaves them, which launches read
    store_id: str  # the store identity job names carry

    def __post_init__(self) -> None:
        kind = self.change.kind
        self.table = BINDINGS[kind].table if kind in BINDINGS else ""
        self.tables = ({self.table} - {""}) | EXTRA_TABLES.get(kind, frozenset())
        self.managed: ManagedRecord | None = self.snapshot.managed.get((kind, self.change.name))
        inserted = {op.row_id for op in self.change.ops if op.op == "insert" and op.table == self.table}
        self.own = set(self.managed.row_ids if self.managed else ()) | inserted | set(self.change.adopts) | self._reused()
        # A deleted job's earlier generations and products (one rule with the planner: adoption.owned_rows).
        deleting = self.change.action is Action.DELETE and self.managed is not None
        self.history = {rid for rid, owner in owned_rows(self.snapshot).items() if owner == self.change.address} if deleting else set()

    def problems(self) -> Iterator[str]:
        if self.change.kind not in MODELS:
            yield f"unknown kind {self.change.kind!r}"
            return
        yield from self._adoption()
        if self.change.action is Action.DELETE and self.managed is not None and self.managed.protected:
            yield "deletes an object the store marks protected (`ftctl unprotect` it first)"
        for number, op in enumerate(self.change.ops, start=1):
            yield from (f"op {number} ({op.op} {op.table}/{op.row_id}): {p}" for p in self._op(op))
        yield from self._record()
        for number, launch in enumerate(self.change.launches, start=1):
            yield from (f"launch {number} ({launch.kind} {launch.job_name!r}): {p}" for p in self._launch(launch))

    def _reused(self) -> set[str]:
        """The earlier generations' rows a reuse takes back (`reuse`): only rows that the store's
        lineage records this very object's jobs ran in."""
        ran = {r.row for r in self.snapshot.lineage if (r.kind, r.name) == (self.change.kind, self.change.name)}
        return {reuse.row.partition("/")[2] for reuse in self.change.reuses if reuse.row in ran}

    def _adoption(self) -> Iterator[str]:
        for row_id in self.change.adopts:
            if self.snapshot.row(self.table, row_id) is None:
                yield f"adopts {self.table}/{row_id}, which the store does not have"
            elif any(r.address != self.change.address and row_id in r.row_ids for r in self.snapshot.managed.values()):
                yield f"adopts {self.table}/{row_id}, which another object manages"

    def _op(self, op: RowOp) -> Iterator[str]:
        if op.op == "delete" and op.row_id in self.history and op.table in self.tables:
            return  # a row of the deleted job's history, deleted with it
        if op.op not in OPS:
            yield f"unknown operation {op.op!r}"
        elif op.table not in self.tables:
            yield f"writes table {op.table!r}, which a {self.change.kind} does not write"
        elif op.op == "insert":
            yield from self._insert(op)
        elif op.table != self.table:
            yield from self._extra_update(op)
        elif op.row_id not in self.own and not self._kept_generation(op):
            yield f"targets a row that is not {self.change.address}'s (never an unmanaged or another object's row)"
        elif op.op == "update":
            yield from self._columns(op)
        elif self.managed is not None and self.managed.protected and self.change.action is not Action.REPLACE:
            yield "deletes a row of an object the store marks protected"

    def _insert(self, op: RowOp) -> Iterator[str]:
        if op.values.get("id") != op.row_id:
            yield "its values carry another id"
        elif self.snapshot.row(op.table, op.row_id) is not None and (op.table, op.row_id) not in self.deleted:
            yield "the row already exists"
        elif op.table != self.table:
            yield from self._adapter(op)
        else:
            yield from _typed(op)
            yield from self._shown(op)

    def _adapter(self, op: RowOp) -> Iterator[str]:
        """A training registers the adapter it produced: named, based and prompted as its job row says."""
        trained_by = kinds.adapter.trained_by(op.values)
        job = self.after(self.table, trained_by)
        if trained_by not in self.own or job is None:
            yield f"registers an adapter that {self.change.address} did not train"
            return
        yield from _typed(op)
        for column, job_column in kinds.adapter.FROM_TRAINING:
            if (op.values.get(column) or "") != (job.get(job_column) or ""):
                yield f"sets {column}, which is not the training's {job_column}"

    def _shown(self, op: RowOp) -> Iterator[str]:
        """An inserted row writes what the change's field diffs show: every value of a create (its
        diffs list each written column), and of a replace each column it shows (a JSON column key
        by key), the others as the row it replaces has them. A masked (secret) value is not compared."""
        create = self.change.action is Action.CREATE
        if not create and BY_TABLE[op.table].fan_out:
            return  # a replace's evaluation rows pair with the old ones by combination: bounded by type only
        shown, keyed, masked = _diffs_by_column(self.change, op.table)
        old = self._replaced_row(op.table)
        for column, value in op.values.items():
            if column == "id" or column in masked or (create and value in (None, "")):
                continue
            if column in shown:
                if as_shown(op.table, column, value) not in shown[column]:
                    yield f"sets {column} to another value than its field diff shows"
            elif column in keyed:
                if old is not None and _keys_differ(as_shown(op.table, column, old.get(column)),
                                                    as_shown(op.table, column, value), keyed[column]):
                    yield f"sets {column} to another value than its field diffs show"
            elif create:
                yield f"sets {column}, which no field diff of the change shows"
            elif old is not None and comparable(op.table, {column: value})[column] != comparable(op.table, old)[column]:
                yield f"sets {column}, which no field diff of the change shows, to another value than the row it replaces"

    def _replaced_row(self, table: str) -> Row | None:
        """The one row a replace deletes."""
        if self.change.action is not Action.REPLACE:
            return None
        gone = [self.snapshot.row(o.table, o.row_id) for o in self.change.ops if o.op == "delete" and o.table == table]
        return gone[0] if len(gone) == 1 else None

    def _kept_generation(self, op: RowOp) -> bool:
        """An earlier generation's row of a job that produces something, renamed when the new
        generation registers its product: it still has the name of one of the change's rows."""
        job = BINDINGS[self.change.kind]
        row = self.snapshot.row(op.table, op.row_id)
        if op.op != "update" or not job.produces or row is None or set(op.values) != {job.name_column}:
            return False
        names = {job.name_of(r) for rid in self.own if (r := self.snapshot.row(self.table, rid))}
        return job.name_of(row) in names - {""}

    def _extra_update(self, op: RowOp) -> Iterator[str]:
        """A training renames the previous version of its adapter: a trained row of the same name."""
        row = self.snapshot.row(op.table, op.row_id)
        job = BINDINGS[self.change.kind]
        names = {job.name_of(r) for rid in self.own if (r := self.snapshot.row(self.table, rid))}
        names |= {job.name_of(o.values) for o in self.change.ops if o.op == "insert" and o.table == self.table}
        product = BY_TABLE[op.table]
        if (op.op != "update" or row is None or not row.get(product_link(self.change.kind))
                or product.name_of(row) not in names - {""}):
            yield f"targets a row that is not {self.change.address}'s (never an unmanaged or another object's row)"
        else:
            yield from self._columns(op)

    def _columns(self, op: RowOp) -> Iterator[str]:
        shown = {f.path.split(".")[1]: f for f in self.change.fields if f.path.startswith(f"{op.table}.") and "." in f.path}
        allowed = set(shown) | ALWAYS_WRITTEN.get((self.change.kind, op.table), frozenset())
        for column, value in op.values.items():
            diff = shown.get(column)
            if column == "id" or column not in allowed:
                yield f"sets {column}, which no field diff of the change shows"
            elif (diff is not None and diff.path == f"{op.table}.{column}" and not diff.sensitive
                  and column not in JSON_COLUMNS.get(op.table, ()) and diff.after != value):
                yield f"sets {column} to another value than its field diff shows"

    def _record(self) -> Iterator[str]:
        record = self.change.record
        if record is None:
            return
        if record.store_table != self.table:
            yield f"its record names table {record.store_table!r}, not {self.table!r}"
        shared = record.origin == "shared" and self.table == "configs"
        for row_id in record.row_ids:
            exists = self.snapshot.row("configs", row_id) is not None or ("configs", row_id) in self.inserted
            if row_id not in self.own and not (shared and exists):
                yield f"its record claims {record.store_table}/{row_id}, a row that is not {self.change.address}'s"

    def _launch(self, launch: Launch) -> Iterator[str]:
        runner = RUNNER.get(self.change.kind)
        if runner is None:
            yield f"a {self.change.kind} runs no job"
            return
        if launch.kind != runner.value:
            yield f"a {self.change.kind} runs {runner.value}, not {launch.kind!r}"
        if launch.job_name not in self._job_names(input_digest(launch.input) if isinstance(launch.input, dict) else ""):
            yield "not the job name ftctl derives for this object"
        if type(launch.attempt) is not int or not 1 <= launch.attempt <= MAX_ATTEMPT:
            yield f"attempt {launch.attempt!r} is not between 1 and {MAX_ATTEMPT}"
        if launch.backend not in BACKENDS:
            yield f"unknown backend {launch.backend!r}"
        table, _, row_id = launch.row.partition("/")
        if launch.row and (table != self.table or row_id not in self.own):
            yield f"records the job in {launch.row}, a row that is not {self.change.address}'s"
        elif launch.kind == runner.value:
            spec = next((r.spec for r in (self.change.record, self.managed) if r is not None), None)
            yield from launch_input_problems(launch, rows=self.after, spec=spec)

    def _job_names(self, digest: str) -> set[str]:
        kind, name, store = self.change.kind, self.change.name, self.store_id
        records = [r for r in (self.change.record, self.managed) if r is not None]
        generations = {r.generation for r in records} or {1}
        if kind != "EvaluationJob":
            return {job_name(kind, name, g, store_id=store, digest=digest) for g in generations}
        count = max((len(r.row_ids) for r in records), default=0)
        return {job_name(kind, name, g, i, store_id=store, digest=digest) for g in generations for i in range(count)}


def _typed(op: RowOp) -> Iterator[str]:
    """Each value of an inserted row is of its Studio column's type: text, an integer SQLite holds,
    a finite number, or JSON text that parses (YAML for an axolotl config)."""
    kinds = COLUMN_KINDS.get(op.table, {})
    for column, value in op.values.items():
        kind = kinds.get(column)
        if kind is None:
            yield f"sets {column}, which is not a column of {op.table}"
        elif value is not None and not _of_kind(op.table, column, kind, value, op.values):
            yield f"sets {column} to a value that is not {'JSON text' if column in JSON_COLUMNS.get(op.table, ()) else kind}"


def _of_kind(table: str, column: str, kind: str, value: Any, row: Row) -> bool:
    if kind == "int":
        return type(value) is int and INT64[0] <= value <= INT64[1]
    if kind == "float":
        return type(value) in (int, float) and math.isfinite(value)
    if not isinstance(value, str):
        return False
    if column not in JSON_COLUMNS.get(table, ()) or not value or kinds.config.kind_of(row) in YAML_CONFIG_TYPES:
        return True
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _diffs_by_column(change: Change, table: str) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]], set[str]]:
    """A change's diffs of `table`: whole columns (column -> the values shown), JSON columns shown
    key by key (column -> key -> value), and columns with a masked value."""
    shown: dict[str, list[Any]] = {}
    keyed: dict[str, dict[str, Any]] = {}
    masked: set[str] = set()
    for diff in change.fields:
        where, _, rest = diff.path.partition(".")
        column, _, key = rest.partition(".")
        if where != table:
            continue
        if diff.sensitive:
            masked.add(column)
        elif key:
            keyed.setdefault(column, {})[key] = diff.after
        else:
            shown.setdefault(column, []).append(diff.after)
    return shown, keyed, masked


def _keys_differ(before: Any, after: Any, shown: dict[str, Any]) -> bool:
    """Whether a JSON value changed a key its key-by-key diffs do not show (or not to what they show)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return True
    absent = object()
    return any(key not in shown or shown[key] != after.get(key) for key in {*before, *after}
               if before.get(key, absent) != after.get(key, absent))


