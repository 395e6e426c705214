"""Carrying out a plan: lock, stale check, then the changes in waves, one journaled step at a time.

`apply_plan` never re-plans: it does exactly what the plan says, or refuses it when the store moved
since the plan was made (naming every object that changed), or when it would write outside the
objects its changes name (`planverify`). Each step writes its intent to the
journal, then commits its effect and marks the intent done in one transaction, so a kill at any
point leaves the store consistent; re-running `ftctl apply` plans from what is there and finishes
the rest, never writing a row twice. The writer is passed in (`StoreWriter`); progress goes to an
`on_step` callback, so this module prints nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.kinds import BY_TABLE
from reconciler.lifecycle import launch_note
from reconciler.live import Snapshot
from reconciler.plan import Change, Consequence, CostEstimate, Plan
from reconciler.planverify import PlanRefusedError, check_plan
from reconciler.policy import Override, waive
from reconciler.runtime import JobObservation

STEP_SIZE = 500  # store-only changes of one wave written in one step
LOCK_TTL_S = 60.0  # the lease's time to live; the writer renews it while the apply runs
FAULT_ENV = "FTCTL_FAULT_KILL_AT"  # tests: SIGKILL this process at the Nth fault point
PAUSE_ENV = "FTCTL_FAULT_PAUSE_AT"  # tests: `N:FILE` waits at the Nth fault point until FILE exists


class StalePlanError(Exception):
    def __init__(self, changed: list[str]) -> None:
        shown = "\n  ".join(changed[:20]) + (f"\n  … and {len(changed) - 20} more" if len(changed) > 20 else "")
        super().__init__(f"the plan is stale: the store changed since it was made:\n  {shown}\nRun `ftctl plan` again.")
        self.changed = changed


class Writer(Protocol):
    def snapshot(self) -> Snapshot: ...
    def acquire_lock(self, *, ttl_s: float, wait_s: float) -> None: ...
    def renew_lock(self, ttl_s: float) -> None: ...
    def release_lock(self) -> None: ...
    def begin_apply(self, *, plan_digest: str, actor: str, commit_sha: str = "", store_id: str = "") -> tuple[str, int, int]: ...
    def write_intent(self, apply_id: str, step: int, changes: Sequence[Change]) -> int: ...
    def commit_step(self, *, apply_id: str, serial: int, journal_seq: int, changes: Sequence[Change],
                    estimates: Mapping[str, Mapping[str, Any]] | None = None) -> None: ...
    def finish_apply(self, apply_id: str, state: str) -> None: ...
    def record_launches(self, *, apply_id: str, serial: int, launched: Sequence[tuple[Change, str, dict[str, Any]]]) -> None: ...
    def record_override(self, apply_id: str, override: dict[str, Any]) -> None: ...


class Launcher(Protocol):
    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1, backend: str = "local") -> JobObservation: ...
    def refusal(self, job_name: str, kind: str, job_input: dict[str, Any], *, backend: str = "local") -> str | None: ...


@dataclass
class ApplyResult:
    apply_id: str = ""
    serial: int = 0
    applied: list[Change] = field(default_factory=list)
    waiting: list[Change] = field(default_factory=list)
    abandoned_intents: int = 0
    launched: list[JobObservation] = field(default_factory=list)


def apply_plan(
    plan: Plan,
    writer: Writer,
    *,
    actor: str,
    commit_sha: str = "",
    lock_wait_s: float = 30.0,
    lock_ttl_s: float = LOCK_TTL_S,
    on_step: Callable[[int, int, Sequence[Change]], None] | None = None,
    launcher: Launcher | None = None,
    override: Override | None = None,
) -> ApplyResult:
    """`override` (`apply --override-policy`) waives the plan's blockers of those policy keys, and
    only those; it is written to the journal (who, why, what it waived) before the first step."""
    checked, waived = waive(plan, override)
    writer.acquire_lock(ttl_s=lock_ttl_s, wait_s=lock_wait_s)
    result = ApplyResult(waiting=[c for c in plan.changes if c.consequence is Consequence.WAIT])
    try:
        current = writer.snapshot()
        changed = stale_objects(plan, current)
        if changed:
            raise StalePlanError(changed)
        check_plan(checked, current)  # bounded by the objects it names, before anything is written
        _check_launches(plan, launcher)  # and every launch as its backend would take it (folders, runners)
        result.apply_id, result.serial, result.abandoned_intents = writer.begin_apply(
            plan_digest=plan.digest(), actor=actor, commit_sha=commit_sha, store_id=plan.store_id
        )
        if override is not None and waived:
            writer.record_override(result.apply_id, override.record(waived))
        steps = list(plan_steps(plan))
        estimates = launch_estimates(plan.estimate)  # recorded with each launch's lineage
        try:
            for number, batch in enumerate(steps, start=1):
                seq = writer.write_intent(result.apply_id, number, batch)
                _fault_point()
                writer.commit_step(apply_id=result.apply_id, serial=result.serial, journal_seq=seq, changes=batch,
                                   estimates=estimates)
                _fault_point()
                result.launched += _launch(batch, writer, launcher, apply_id=result.apply_id, serial=result.serial, ttl_s=lock_ttl_s)
                result.applied.extend(batch)
                writer.renew_lock(lock_ttl_s)
                if on_step:
                    on_step(number, len(steps), batch)
        except BaseException:
            writer.finish_apply(result.apply_id, "failed")
            raise
        writer.finish_apply(result.apply_id, "done")
    finally:
        writer.release_lock()
    return result


def launch_estimates(estimate: CostEstimate | None) -> dict[str, dict[str, Any]]:
    """What `ftctl_lineage.estimate` records of each job a plan launches, by its object's address: the
    plan's figures for that object (an evaluation's cover all its rows' jobs, `jobs` says how many
    launches shared them), so `ftctl history` shows what each generation was expected to cost."""
    if estimate is None:
        return {}
    return {job.address: {"device": job.device, "devices": job.devices, "tokens": job.tokens,
                          "tokens_per_second": job.tokens_per_second, "hours": job.hours, "device_hours": job.device_hours,
                          "gpu_hours": job.device_hours if job.on_gpu else 0.0, "cost": job.cost, "currency": estimate.currency,
                          "known": job.known, "basis": job.basis}
            for job in estimate.jobs if not job.later}


def _check_launches(plan: Plan, launcher: Launcher | None) -> None:
    """Refuse the plan before its first step when a backend would refuse one of its launches (a job
    folder outside its jobs root, outputs elsewhere): a refusal at launch time would come after
    earlier steps had written their rows."""
    if launcher is None:
        return
    problems = [f"{change.address} launch {launch.job_name}: {why}" for change in plan.changes for launch in change.launches
                if (why := launcher.refusal(launch.job_name, launch.kind, launch.input, backend=launch.backend))]
    if problems:
        raise PlanRefusedError(problems)


def _launch(batch: Sequence[Change], writer: Writer, launcher: Launcher | None, *, apply_id: str, serial: int,
            ttl_s: float) -> list[JobObservation]:
    """Start the step's jobs (after their rows are committed), then note the launches in their rows
    (`lifecycle.launch_note`: the job as the backend made it, on CML the CML job's id).

    Launching is idempotent by job name: if this process dies between the two, the next plan finds
    the job running and writes the note then; nothing is launched twice. The lease is renewed before
    each launch, so an apply that lost it launches nothing more (a launch it made just before is
    found by name and adopted by the apply that took over)."""
    launched: list[JobObservation] = []
    noted: list[tuple[Change, str, dict[str, Any]]] = []
    for change in batch:
        for launch in change.launches:
            if launcher is None:
                raise RuntimeError(f"{change.address} launches a job but no backend was given")
            writer.renew_lock(ttl_s)
            started = launcher.launch(launch.job_name, launch.kind, launch.input, attempt=launch.attempt, backend=launch.backend)
            launched.append(started)
            _fault_point()
            if launch.row:
                noted.append((change, launch.row, launch_note(launch, started)))
    writer.record_launches(apply_id=apply_id, serial=serial, launched=noted)
    return launched


def plan_steps(plan: Plan) -> Iterator[list[Change]]:
    """The plan's effective changes, wave by wave, deletions last, in steps of at most STEP_SIZE."""
    batch: list[Change] = []
    wave: tuple[bool, int] | None = None
    for change in plan.changes:
        if not (change.ops or change.record is not None or change.launches or change.action.value == "delete"):
            continue  # noop, or waiting for a job's output
        key = (change.action.value == "delete", change.wave)
        if batch and (key != wave or len(batch) >= STEP_SIZE):
            yield batch
            batch = []
        wave = key
        batch.append(change)
    if batch:
        yield batch


def stale_objects(plan: Plan, current: Snapshot) -> list[str]:
    """What changed in the store since the plan read it, as `Kind name (table/id): how`."""
    now = current.fingerprints
    out = []
    for key in sorted(set(plan.read) | set(now)):
        before, after = plan.read.get(key), now.get(key)
        if before == after:
            continue
        how = "added" if before is None else "removed" if after is None else "changed"
        out.append(f"{_describe(key, current)}: {how}")
    return out


def _describe(key: str, snapshot: Snapshot) -> str:
    if key.startswith("@"):
        return f"{key[1:]} (ftctl record)"
    table, _, row_id = key.partition("/")
    row = snapshot.row(table, row_id) or {}
    binding = BY_TABLE.get(table)
    kind, name = (binding.kind, binding.name_of(row)) if binding else (table, "")
    return f"{kind} {name!r} ({key})" if name else f"{kind} ({key})"


_fault_count = 0


def _fault_point() -> None:
    """Tests of crash safety set FTCTL_FAULT_KILL_AT=N to SIGKILL this process at the Nth point;
    tests of fencing set FTCTL_FAULT_PAUSE_AT=N:FILE to hold it there until FILE exists."""
    global _fault_count
    kill, pause = os.environ.get(FAULT_ENV), os.environ.get(PAUSE_ENV)
    if not (kill or pause):
        return
    _fault_count += 1
    if kill and _fault_count == int(kill):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause and _fault_count == int(pause.partition(":")[0]):
        while not os.path.exists(pause.partition(":")[2]):
            time.sleep(0.05)
