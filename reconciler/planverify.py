"""What a plan may do to a store: every op, record and launch bounded by the objects it names.

A plan file's digest proves it is what `ftctl plan` wrote, but anyone can recompute a digest. So
before the first step, `apply_plan` checks the plan against the snapshot it read under the lock:
each change is of a known kind and writes only the Studio tables that kind writes; updates and
deletes touch only rows of the object the change names (its `ftctl_objects` rows, rows it
inserts itself, or rows it adopts) and never an unmanaged row; an update sets only columns its
field diffs show (or those the planner always writes, declared below); launches run a runner of
the closed set under exactly the job name the planner derives. Pure: a plan and a snapshot in,
the problems out (empty when the plan is within bounds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from reconciler.jobinput import job_name
from reconciler.live import KIND_TABLE, ManagedRecord, Snapshot
from reconciler.models import MODELS
from reconciler.plan import Change, Launch, Plan, RowOp
from reconciler.records import JSON_COLUMNS
from reconciler.runtime import BACKENDS, MAX_ATTEMPT, RunnerKind

# Tables a kind writes besides its own: a training registers the adapter it produced (and renames
# the previous version's).
EXTRA_TABLES: dict[str, frozenset[str]] = {"FineTuningJob": frozenset({"adapters"})}
# Columns the planner writes with no field diff: the job name recorded in a job's row (a launch an
# apply did not record), and the retired adapter version's new name.
ALWAYS_WRITTEN: dict[tuple[str, str], frozenset[str]] = {
    ("FineTuningJob", "fine_tuning_jobs"): frozenset({"cml_job_id"}),
    ("EvaluationJob", "evaluation_jobs"): frozenset({"cml_job_id"}),
    ("FineTuningJob", "adapters"): frozenset({"name"}),
}
RUNNER: dict[str, RunnerKind] = {
    "FineTuningJob": RunnerKind.TRAIN,
    "EvaluationJob": RunnerKind.EVALUATE,
    "ModelExport": RunnerKind.EXPORT,
}
OPS = ("insert", "update", "delete")


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
    out: list[str] = []
    seen: set[str] = set()
    deleted = {(op.table, op.row_id) for c in plan.changes for op in c.ops if op.op == "delete"}
    inserted = {(op.table, op.row_id) for c in plan.changes for op in c.ops if op.op == "insert"}
    for change in plan.changes:
        if change.address in seen:
            out.append(f"{change.address}: appears twice")
        seen.add(change.address)
        out += [f"{change.address}: {p}" for p in _ChangeCheck(change, snapshot, deleted, inserted).problems()]
    return out


@dataclass
class _ChangeCheck:
    change: Change
    snapshot: Snapshot
    deleted: set[tuple[str, str]]  # rows the plan deletes (a replacement may insert the same id again)
    inserted: set[tuple[str, str]]  # rows the plan inserts (a config another change creates may be shared)

    def __post_init__(self) -> None:
        kind = self.change.kind
        self.table = KIND_TABLE.get(kind, "")
        self.tables = ({self.table} - {""}) | EXTRA_TABLES.get(kind, frozenset())
        self.managed: ManagedRecord | None = self.snapshot.managed.get((kind, self.change.name))
        inserted = {op.row_id for op in self.change.ops if op.op == "insert" and op.table == self.table}
        self.own = set(self.managed.row_ids if self.managed else ()) | inserted | set(self.change.adopts)

    def problems(self) -> Iterator[str]:
        if self.change.kind not in MODELS:
            yield f"unknown kind {self.change.kind!r}"
            return
        yield from self._adoption()
        for number, op in enumerate(self.change.ops, start=1):
            yield from (f"op {number} ({op.op} {op.table}/{op.row_id}): {p}" for p in self._op(op))
        yield from self._record()
        for number, launch in enumerate(self.change.launches, start=1):
            yield from (f"launch {number} ({launch.kind} {launch.job_name!r}): {p}" for p in self._launch(launch))

    def _adoption(self) -> Iterator[str]:
        for row_id in self.change.adopts:
            if self.snapshot.row(self.table, row_id) is None:
                yield f"adopts {self.table}/{row_id}, which the store does not have"
            elif any(r.address != self.change.address and row_id in r.row_ids for r in self.snapshot.managed.values()):
                yield f"adopts {self.table}/{row_id}, which another object manages"

    def _op(self, op: RowOp) -> Iterator[str]:
        if op.op not in OPS:
            yield f"unknown operation {op.op!r}"
        elif op.table not in self.tables:
            yield f"writes table {op.table!r}, which a {self.change.kind} does not write"
        elif op.op == "insert":
            yield from self._insert(op)
        elif op.table != self.table:
            yield from self._extra_update(op)
        elif op.row_id not in self.own:
            yield f"targets a row that is not {self.change.address}'s (never an unmanaged or another object's row)"
        elif op.op == "update":
            yield from self._columns(op)

    def _insert(self, op: RowOp) -> Iterator[str]:
        if op.values.get("id") != op.row_id:
            yield "its values carry another id"
        elif self.snapshot.row(op.table, op.row_id) is not None and (op.table, op.row_id) not in self.deleted:
            yield "the row already exists"
        elif op.table != self.table and op.values.get("fine_tuning_job_id") not in self.own:
            yield f"registers an adapter that {self.change.address} did not train"

    def _extra_update(self, op: RowOp) -> Iterator[str]:
        """A training renames the previous version of its adapter: a trained row of the same name."""
        row = self.snapshot.row(op.table, op.row_id)
        names = {str(r.get("adapter_name") or "") for rid in self.own if (r := self.snapshot.row(self.table, rid))}
        names |= {str(o.values.get("adapter_name") or "") for o in self.change.ops if o.op == "insert" and o.table == self.table}
        if op.op != "update" or row is None or not row.get("fine_tuning_job_id") or row.get("name") not in names - {""}:
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
        if launch.job_name not in self._job_names():
            yield "not the job name ftctl derives for this object"
        if type(launch.attempt) is not int or not 1 <= launch.attempt <= MAX_ATTEMPT:
            yield f"attempt {launch.attempt!r} is not between 1 and {MAX_ATTEMPT}"
        if launch.backend not in BACKENDS:
            yield f"unknown backend {launch.backend!r}"
        table, _, row_id = launch.row.partition("/")
        if launch.row and (table != self.table or row_id not in self.own):
            yield f"records the job in {launch.row}, a row that is not {self.change.address}'s"

    def _job_names(self) -> set[str]:
        kind, name = self.change.kind, self.change.name
        records = [r for r in (self.change.record, self.managed) if r is not None]
        generations = {r.generation for r in records} or {1}
        if kind != "EvaluationJob":
            return {job_name(kind, name, g) for g in generations}
        count = max((len(r.row_ids) for r in records), default=0)
        return {job_name(kind, name, g, i) for g in generations for i in range(count)}
