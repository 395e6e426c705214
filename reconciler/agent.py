"""The pull-based GitOps agent (`ftctl agent`): keep the store at the last commit of a Git branch.

Each cycle fetches the branch into a local clone (git runs as a subprocess, in `git()` only) and:
- a new commit is checked out (detached) and planned and applied through the engine, recorded
  with its sha and the actor `ftctl-agent`. A commit that is an ancestor of the last applied one
  (a force-push back in time) is refused. A commit whose apply fails is retried each cycle, and
  given up on after `max_failures` failures until a newer commit arrives;
- an unchanged commit is planned again, level-triggered: a plan that advances jobs is applied;
  drift (rows changed outside ftctl) is reported, and put back only with `self_heal`.
Blocked plans are reported, never applied. What the agent remembers (the last applied commit, the
commit that fails and how often) lives in the store's ftctl_meta, so a restart goes on from there.

Called by the CLI, which renders each `CycleReport` as one JSON line. This module prints nothing
and never shows the environment; it reaches the store through the engine and `StoreWriter`'s
meta keys only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconciler.engine import EngineError, PlanReport, execute_plan, make_plan, pull_state, start_queued_jobs
from reconciler.plan import Action, Plan, Policy

AGENT_ACTOR = "ftctl-agent"
META_PREFIX = "agent."
GIT_TIMEOUT_S = 300.0
ROUNDS = 5  # plan-and-apply rounds in one cycle (each apply can make more ready)
INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


class GitError(Exception):
    """A git command failed: the remote cannot be reached, the branch is missing, a timeout."""


class CycleAction(StrEnum):
    APPLIED = "applied"  # a plan was applied: a new commit, jobs advancing, or drift put back
    UNCHANGED = "unchanged"  # the commit was applied before and nothing needed applying
    REFUSED_OLDER = "refused-older"
    FAILED = "failed"
    GAVE_UP = "gave-up"
    BLOCKED = "blocked"

    def exit_code(self) -> int:
        """The process's exit status when this was the last cycle (--once, --max-cycles)."""
        if self in (CycleAction.APPLIED, CycleAction.UNCHANGED):
            return 0
        return 3 if self is CycleAction.BLOCKED else 1


@dataclass(frozen=True)
class AgentSettings:
    repo: str  # a URL or a local path (a bare repository works)
    branch: str = "main"
    path: str = "specs/"  # the manifests, inside the repository
    workdir: str = ".app/agent/repo"  # the agent's clone
    store: str | None = None
    offline: bool = False
    self_heal: bool = False
    max_failures: int = 3
    lock_wait_s: float = 30.0
    publish: str | None = None  # after a cycle that applied something, write a snapshot here (`state pull`)


@dataclass(frozen=True)
class AgentState:
    """What the agent remembers between cycles and restarts (ftctl_meta `agent.*`)."""

    last_commit: str = ""
    failed_commit: str = ""
    failures: int = 0

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> AgentState:
        return cls(meta.get("agent.last_commit", ""), meta.get("agent.failed_commit", ""), int(meta.get("agent.failures") or 0))

    def to_meta(self) -> dict[str, str]:
        return {"agent.last_commit": self.last_commit, "agent.failed_commit": self.failed_commit, "agent.failures": str(self.failures)}

    def gave_up_on(self, commit: str, max_failures: int) -> bool:
        return commit == self.failed_commit and self.failures >= max_failures


@dataclass(frozen=True)
class CycleReport:
    cycle: int
    commit: str
    action: CycleAction
    changes: int = 0  # changes applied this cycle
    drift: int = 0  # drift corrections in the plan (applied only with self_heal)
    jobs: dict[str, int] = field(default_factory=dict)  # job state -> count, `waiting`, `launched`
    error: str = ""
    ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ts"] = datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        data["action"] = self.action.value
        return {key: data[key] for key in ("ts", "cycle", "commit", "action", "changes", "drift", "jobs", "error")}


def parse_interval(text: str) -> float:
    """Seconds from `60s`, `5m`, `1h` or a plain number of seconds."""
    match = INTERVAL.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an interval: write 60s, 5m, 1h or a number of seconds")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]


# -- git -----------------------------------------------------------------------------------------

def git(*args: str, cwd: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run git in cwd; GitError (its message without credentials) unless the exit status is in ok.

    Its own session: a Ctrl-C meant for the agent does not kill the fetch of the current cycle."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                              timeout=GIT_TIMEOUT_S, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(_redact(f"git {args[0]}: {exc}")) from exc
    if done.returncode not in ok:
        raise GitError(_redact(f"git {args[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}"))
    return done


def _redact(text: str) -> str:
    """Remove `user:token@` from URLs in git's messages."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def fetch(repo: str, branch: str, clone: str) -> str:
    """Fetch the branch into the clone (made on first use); the commit sha it points at."""
    if not os.path.isdir(os.path.join(clone, ".git")):
        os.makedirs(clone, exist_ok=True)
        git("init", "--quiet", cwd=clone)
    remote = os.path.abspath(repo) if os.path.exists(repo) else repo  # git resolves a relative path from the clone
    git("fetch", "--quiet", "--force", "--no-tags", remote, f"+refs/heads/{branch}:refs/remotes/origin/{branch}", cwd=clone)
    return git("rev-parse", "--verify", f"refs/remotes/origin/{branch}^{{commit}}", cwd=clone).stdout.strip()


def is_ancestor(clone: str, commit: str, of: str) -> bool:
    """Whether commit is an ancestor of (older than) `of`; False when git cannot tell (`of` unknown here)."""
    return git("merge-base", "--is-ancestor", commit, of, cwd=clone, ok=(0, 1, 128)).returncode == 0


def checkout(clone: str, commit: str) -> None:
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", commit, cwd=clone)


# -- state ---------------------------------------------------------------------------------------

def load_state(store: str | None) -> AgentState:
    from reconciler.store.location import StoreError
    from reconciler.store.write import StoreWriter

    try:
        writer = StoreWriter(store)
        try:
            return AgentState.from_meta(writer.read_meta(META_PREFIX))
        finally:
            writer.close()
    except (StoreError, ValueError) as exc:
        raise EngineError(f"cannot read the agent's state: {exc}") from exc


def save_state(store: str | None, state: AgentState) -> None:
    from reconciler.store.location import StoreError
    from reconciler.store.write import StoreWriter

    try:
        writer = StoreWriter(store)
        try:
            writer.write_meta(state.to_meta())
        finally:
            writer.close()
    except StoreError as exc:
        raise EngineError(f"cannot write the agent's state: {exc}") from exc


# -- one cycle -----------------------------------------------------------------------------------

def run_cycle(settings: AgentSettings, state: AgentState, *, cycle: int, environ: Mapping[str, str]) -> tuple[CycleReport, AgentState]:
    """Fetch, decide, apply; the cycle's report and the state to remember after it."""
    clone = settings.workdir
    try:
        head = fetch(settings.repo, settings.branch, clone)
    except GitError as exc:  # transient: the commit is not to blame
        return CycleReport(cycle, state.last_commit, CycleAction.FAILED, error=str(exc)), state
    if state.gave_up_on(head, settings.max_failures):
        return CycleReport(cycle, head, CycleAction.GAVE_UP, error=f"giving up on {head} after {state.failures} failures"), state
    try:
        if head != state.last_commit and state.last_commit and is_ancestor(clone, head, state.last_commit):
            return CycleReport(cycle, head, CycleAction.REFUSED_OLDER,
                               error=f"{head} is an ancestor of the last applied commit {state.last_commit}: refused "
                                     "(to roll back, push a new commit that reverts)"), state
        checkout(clone, head)
    except GitError as exc:
        return CycleReport(cycle, head, CycleAction.FAILED, error=str(exc)), state
    if head == state.last_commit:
        return _reconcile(settings, head, cycle=cycle, environ=environ, heal=settings.self_heal), state
    return _apply_commit(settings, state, head, cycle=cycle, environ=environ)


def _apply_commit(settings: AgentSettings, state: AgentState, head: str, *, cycle: int,
                  environ: Mapping[str, str]) -> tuple[CycleReport, AgentState]:
    report = _reconcile(settings, head, cycle=cycle, environ=environ, heal=True)
    if report.action is CycleAction.BLOCKED:
        return report, state
    if report.action is CycleAction.FAILED:
        failures = state.failures + 1 if state.failed_commit == head else 1
        if failures >= settings.max_failures:
            report = replace(report, action=CycleAction.GAVE_UP, error=f"giving up on {head} after {failures} failures: {report.error}")
        else:
            report = replace(report, error=f"{report.error} (failure {failures} of {settings.max_failures})")
        return report, AgentState(state.last_commit, head, failures)
    return replace(report, action=CycleAction.APPLIED), AgentState(last_commit=head)


def _reconcile(settings: AgentSettings, commit: str, *, cycle: int, environ: Mapping[str, str], heal: bool) -> CycleReport:
    """Plan the checked-out manifests and apply the plan (less its drift corrections unless heal),
    again while applying made more ready (a registered adapter lets evaluations launch), at most
    ROUNDS times."""
    environ = {**environ, "FTCTL_COMMIT_SHA": commit}  # recorded in ftctl_applies (engine.commit_sha)
    done = CycleReport(cycle, commit, CycleAction.UNCHANGED)
    drift: int | None = None
    launched = 0
    for _ in range(ROUNDS):
        try:
            start_queued_jobs(environ)
            report = make_plan([os.path.join(settings.workdir, settings.path)], store=settings.store, policy=Policy(),
                               offline=settings.offline, environ=environ)
        except EngineError as exc:  # backend errors arrive as EngineError (engine.start_queued_jobs, observe_jobs)
            return replace(done, action=CycleAction.FAILED, error=str(exc))
        if report.plan is None:
            return replace(done, action=CycleAction.FAILED, error=_validation_error(report))
        plan = report.plan
        drift = sum(1 for c in plan.changes if c.drift) if drift is None else drift  # as found, before healing
        done = replace(done, drift=drift, jobs=job_summary(report, launched=launched))
        if plan.is_blocked():
            return replace(done, action=CycleAction.BLOCKED, error="; ".join(f"{b.code} {b.address}: {b.message}" for b in plan.blockers))
        chosen = plan if heal else without_drift(plan)
        if chosen is None:
            return replace(done, error="drift replaces rows, so nothing was applied: put it back with --self-heal")
        if not chosen.actionable():
            break
        try:
            result = execute_plan(chosen, store=settings.store, lock_wait_s=settings.lock_wait_s, environ=environ)
        except EngineError as exc:
            return replace(done, action=CycleAction.FAILED, error=str(exc))
        launched += len(result.launched)
        done = replace(done, action=CycleAction.APPLIED, changes=done.changes + len(chosen.actionable()))
    return done


def without_drift(plan: Plan) -> Plan | None:
    """The plan less its drift corrections; None when they cannot be left out: a drifted row that
    is replaced or written again gets a new id, which the plan's other changes may point at."""
    drifted = [c for c in plan.changes if c.drift]
    if not drifted:
        return plan
    if any(c.action is not Action.UPDATE for c in drifted):
        return None
    return replace(plan, changes=tuple(c for c in plan.changes if not c.drift))


def job_summary(report: PlanReport, *, launched: int = 0) -> dict[str, int]:
    """How many jobs are in each state (as their backends said when planning), how many wait for
    others, and how many this cycle launched."""
    counts = Counter(obs.state.value for obs in report.observations.values())
    if report.plan is not None:
        counts["waiting"] += sum(1 for c in report.plan.changes if c.waits_for)
    counts["launched"] += launched
    return {state: n for state, n in sorted(counts.items()) if n}


def _validation_error(report: PlanReport) -> str:
    errors = [d for d in report.validation.diagnostics if d.severity.is_error()]
    shown = "; ".join(f"{d.location or '-'}: {d.code} {d.summary}" for d in errors[:3])
    return f"{len(errors)} validation error(s): {shown}" + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")


# -- the loop ------------------------------------------------------------------------------------

class StopFlag:
    """Set by SIGTERM or SIGINT: the current cycle finishes, then the agent exits."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, *_: object) -> None:
        self.requested = True

    @contextmanager
    def on_signals(self) -> Iterator[StopFlag]:
        previous: dict[signal.Signals, Any] = {}
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self.request)
        except ValueError:  # not the main thread: no handlers (tests that drive the loop directly)
            pass
        try:
            yield self
        finally:
            for which, handler in previous.items():
                signal.signal(which, handler)

    def wait(self, seconds: float, sleep: Callable[[float], None]) -> None:
        remaining = seconds
        while remaining > 0 and not self.requested:
            sleep(min(0.2, remaining))
            remaining -= 0.2


def run_agent(settings: AgentSettings, *, interval_s: float, max_cycles: int | None, emit: Callable[[CycleReport], None],
              environ: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """Run cycles every interval_s until max_cycles (None: until a signal); the exit status."""
    environ = {**(os.environ if environ is None else environ), "FTCTL_ACTOR": AGENT_ACTOR}
    stop, last = StopFlag(), None
    with stop.on_signals():
        state = load_state(settings.store)
        cycle = 0
        while not stop.requested and (max_cycles is None or cycle < max_cycles):
            cycle += 1
            started = clock()
            report, after = run_cycle(settings, state, cycle=cycle, environ=environ)
            if after != state:
                try:
                    save_state(settings.store, after)
                    state = after
                except EngineError as exc:
                    report = replace(report, action=CycleAction.FAILED, error=str(exc))
            if settings.publish and report.action is CycleAction.APPLIED:
                try:  # the snapshot the next pull-request check plans against
                    pull_state(settings.store, settings.publish)
                except EngineError as exc:
                    report = replace(report, error=f"publishing the snapshot failed: {exc}")
            last = replace(report, ts=started)
            emit(last)
            if max_cycles is None or cycle < max_cycles:
                stop.wait(interval_s, sleep)
    if stop.requested or last is None:
        return 0
    return last.action.exit_code()
