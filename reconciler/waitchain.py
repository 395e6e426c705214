"""What `apply --wait` may run: the chain it shows before asking, and the launches it never showed.

Pure: a plan and the manifests it was made from in, values out. The CLI shows `wait_chain` under
the first round's plan (train → the evaluations that wait on its adapter → the exports gated on
them), asks once for all of it, then, round by round, asks `Approval.unshown` whether a round would
launch something beyond it. Each step of the chain allows one new run of its object (launches of
attempt 1, one round's worth); a relaunch of a shown job after a transient failure (same job,
attempt > 1, bounded by the manifest's `retries`) is the same step. Nothing here reads the store,
the backends or the terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.manifests.loader import Manifest
from reconciler.models import EvaluationJob, FineTuningJob, ModelExport
from reconciler.plan import Change, Consequence, Plan

RUNS = {"FineTuningJob": "train", "EvaluationJob": "evaluate", "ModelExport": "export"}


@dataclass(frozen=True)
class Step:
    """One job the wait may run: `when` is "" for this round, else the condition it waits on."""

    address: str
    run: str  # train | evaluate | export
    when: str = ""
    running: bool = False  # launched before; --wait follows it (and its relaunches), launching nothing new

    def is_now(self) -> bool:
        return not self.when and not self.running


def wait_chain(plan: Plan, manifests: Sequence[Manifest]) -> list[Step]:
    """Every job `apply --wait` may launch or follow, starting from `plan` (its first round)."""
    changes = {c.address: c for c in plan.changes}
    steps = [step for c in plan.actionable() + [c for c in plan.changes if _active(c)] if (step := _observed(c))]
    resources = [m.resource for m in manifests]
    trainings = {r.adapter_name: r.name for r in resources
                 if isinstance(r, FineTuningJob) and _training_pending(changes.get(f"FineTuningJob/{r.name}"))}
    evaluations = {s.address for s in steps if s.run == "evaluate"}
    for r in resources:
        produced = [c.adapter for c in r.spec.combinations if isinstance(c.adapter, str) and c.adapter in trainings] \
            if isinstance(r, EvaluationJob) else []
        if produced:
            steps.append(Step(f"EvaluationJob/{r.name}", "evaluate", _after_training(produced[0], trainings)))
            evaluations.add(f"EvaluationJob/{r.name}")
    steps += [step for r in resources if isinstance(r, ModelExport) and (step := _export_step(r, trainings, evaluations))]
    shown = {s.address for s in steps if not s.is_now()}
    steps += [Step(c.address, RUNS[c.kind], f"later, when {c.reason}") for c in plan.changes
              if c.waits_for and c.kind in RUNS and c.address not in shown]
    return _unique(steps)


def later(chain: Sequence[Step]) -> list[Step]:
    """The steps that do not launch in the first round: what the prompt must show besides the plan."""
    return [s for s in chain if not s.is_now()]


@dataclass(frozen=True)
class Approval:
    """What the person at the terminal (or --auto-approve) agreed to: new runs left per object,
    and the objects whose jobs the wait follows (their relaunches are covered)."""

    runs: Counter[str]
    followed: frozenset[str]

    @classmethod
    def of(cls, chain: Iterable[Step]) -> Approval:
        steps = list(chain)
        return cls(Counter(s.address for s in steps if not s.running), frozenset(s.address for s in steps))

    def unshown(self, plan: Plan) -> list[Change]:
        """The changes of this round that launch a job the approval does not cover."""
        return [c for c in plan.actionable() if c.launches and not self._covers(c)]

    def after(self, plan: Plan) -> Approval:
        """The approval once this round's launches have used their steps."""
        used = Counter(c.address for c in plan.actionable() if _new_run(c))
        return Approval(self.runs - used, self.followed | frozenset(used))

    def extended(self, chain: Iterable[Step]) -> Approval:
        """Agreeing to a further chain adds its steps."""
        more = Approval.of(chain)
        return Approval(self.runs + more.runs, self.followed | more.followed)

    def _covers(self, change: Change) -> bool:
        if _new_run(change):
            return self.runs[change.address] > 0
        return change.address in self.followed


def _new_run(change: Change) -> bool:
    return any(launch.attempt == 1 for launch in change.launches)


def _observed(change: Change) -> Step | None:
    if change.kind not in RUNS:
        return None
    if change.launches:
        return Step(change.address, RUNS[change.kind])
    if _active(change):
        return Step(change.address, RUNS[change.kind], running=True)
    return None


def _active(change: Change) -> bool:
    """A job launched before this plan that is still running or queued (the plan's observed jobs)."""
    return change.job_active()


def _training_pending(change: Change | None) -> bool:
    """Whether a training's adapter is still to come: launched now, running, to register, or waiting."""
    if change is None:
        return False
    return bool(change.launches or change.waits_for) or _active(change) or change.consequence is Consequence.REGISTER


def _after_training(adapter: str, trainings: dict[str, str]) -> str:
    return f"later, if FineTuningJob/{trainings[adapter]} succeeds and registers adapter {adapter}"


def _export_step(export: ModelExport, trainings: dict[str, str], evaluations: set[str]) -> Step | None:
    adapter = export.spec.adapter if isinstance(export.spec.adapter, str) else None  # a name, not an id reference
    gate = export.spec.gate
    address = f"ModelExport/{export.name}"
    if gate is not None and (f"EvaluationJob/{gate.evaluation}" in evaluations or adapter in trainings):
        bounds = " and ".join(f"{gate.metric} {op} {value:g}" for op, value in ((">=", gate.min), ("<=", gate.max)) if value is not None)
        return Step(address, "export", f"later, if its gate passes: {bounds or gate.metric} in EvaluationJob/{gate.evaluation}")
    if adapter in trainings:
        return Step(address, "export", _after_training(adapter, trainings))
    return None


def _unique(steps: list[Step]) -> list[Step]:
    """Each (object, when) once, in the order found: a job may run now and again later."""
    return list(dict.fromkeys(steps))
