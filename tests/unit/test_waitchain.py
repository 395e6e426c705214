"""What `apply --wait` shows before asking, and which later launches it never showed.

The chain is checked on the demo's real plans (engine over a real SQLite store, jobs on the fake
backend, each job finished by writing its result): the first apply's chain is train now, then the
evaluation that waits on its adapter, then the export with its gate; a retraining (the training
config changed after a whole run) shows the evaluation's re-run (its adapter's combination runs
again, the base model's reuses its earlier results) and the re-export it causes. Every later round
of those pipelines launches only what the chain showed. The approval's bookkeeping is then checked
table-driven on hand-built changes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.plan import Action, Change, Launch, Plan, Policy
from reconciler.waitchain import Approval, Step, wait_chain
from tests.e2e.helpers import DEMO, make_demo

STORE = ".app/state.db"
TRAIN = "FineTuningJob/demo-ticketing-lora"
EVAL = "EvaluationJob/demo-base-vs-lora"
EXPORT = "ModelExport/demo-ticketing"
AFTER_TRAINING = "later, if FineTuningJob/demo-ticketing-lora succeeds and registers adapter demo-ticketing-lora"
GATED = "later, if its gate passes: rougeL >= 0.2 in EvaluationJob/demo-base-vs-lora"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_demo(tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.delenv("FINE_TUNING_STUDIO_SQLITE_DB", raising=False)
    monkeypatch.setenv("FTCTL_BACKEND", "fake")
    monkeypatch.setenv("FTCTL_JOBS_DIR", str(tmp_path / "jobs"))
    return root


def _plan() -> engine.PlanReport:
    report = engine.make_plan([DEMO], store=STORE, policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None, [d.summary for d in report.validation.diagnostics]
    return report


def _finish_jobs(jobs: Path) -> list[str]:
    """Let every running fake job succeed (a training leaves an adapter; evaluations score above the gate)."""
    finished = []
    for launch in sorted(jobs.rglob("launch.json")):
        folder = launch.parent
        if (folder / "result.json").exists():
            continue
        name = folder.name
        artifacts = {"adapter_dir": str(folder / "adapter")} if name.startswith("ftctl-train-") else \
            {"registered_model_name": "demo-ticketing", "registered_model_version": "1"} if name.startswith("ftctl-export-") else {}
        metrics = {"rougeL": 0.3} if name.startswith("ftctl-eval-") else {}
        document = {"contract_version": 1, "job_name": name, "status": "succeeded", "metrics": metrics,
                    "artifacts": artifacts, "error": None, "started_at": 0, "finished_at": 0}
        (folder / "result.json").write_text(json.dumps(document), encoding="utf-8")
        finished.append(name)
    return finished


def _launched(demo: Path) -> set[str]:
    return {p.parent.name for p in (demo.parent / "jobs").rglob("launch.json")}


def _wait_rounds(approval: Approval, jobs: Path, applied: list[Plan] | None = None) -> list[str]:
    """What `apply --wait` does after its first round, under `approval`: finish the jobs, plan,
    apply, until nothing is left (each plan applied appended to `applied`). Returns the addresses
    of launches the approval did not cover."""
    unshown: list[str] = []
    for _ in range(12):
        _finish_jobs(jobs)
        plan = _plan().plan
        assert plan is not None
        if not plan.actionable():
            return unshown
        unshown += [c.address for c in approval.unshown(plan)]
        approval = approval.after(plan)
        engine.execute_plan(plan, store=STORE, lock_wait_s=1)
        if applied is not None:
            applied.append(plan)
    raise AssertionError("the pipeline did not converge in 12 rounds")


def test_the_first_apply_shows_train_now_then_the_evaluation_and_the_gated_export(demo: Path) -> None:
    report = _plan()
    assert report.plan is not None
    chain = wait_chain(report.plan, report.validation.manifests)
    assert chain == [Step(TRAIN, "train"), Step(EVAL, "evaluate", AFTER_TRAINING), Step(EXPORT, "export", GATED)]

    engine.execute_plan(report.plan, store=STORE, lock_wait_s=1)
    assert _wait_rounds(Approval.of(chain).after(report.plan), demo.parent / "jobs") == []
    assert sorted(name.split("-")[1] for name in _launched(demo)) == ["eval", "eval", "export", "train"]


def test_a_retraining_shows_the_evaluation_rerun_and_the_reexport_it_causes(demo: Path) -> None:
    first = _plan()
    assert first.plan is not None
    engine.execute_plan(first.plan, store=STORE, lock_wait_s=1)
    _wait_rounds(Approval.of(wait_chain(first.plan, first.validation.manifests)).after(first.plan), demo.parent / "jobs")
    configs = demo / DEMO / "configs.yaml"
    text, changed = re.subn(r"num_train_epochs: \d+", "num_train_epochs: 5", configs.read_text(encoding="utf-8"), count=1)
    assert changed == 1
    configs.write_text(text, encoding="utf-8")

    report = _plan()
    assert report.plan is not None
    chain = wait_chain(report.plan, report.validation.manifests)
    assert [c.address for c in report.plan.actionable() if c.launches or c.waits_for] == [TRAIN], \
        "the evaluation and the export look settled now"
    assert chain == [Step(TRAIN, "train"), Step(EVAL, "evaluate", AFTER_TRAINING), Step(EXPORT, "export", GATED)]

    engine.execute_plan(report.plan, store=STORE, lock_wait_s=1)
    before = _launched(demo)
    rounds: list[Plan] = []
    assert _wait_rounds(Approval.of(chain).after(report.plan), demo.parent / "jobs", rounds) == []
    assert sorted(name.split("-")[1] for name in _launched(demo) - before) == ["eval", "export"], "the re-runs happened"
    # the evaluation re-ran the adapter's combination; the base model alone reused its earlier job's results
    [rerun] = [c for plan in rounds for c in plan.changes if c.address == EVAL and (c.launches or c.reuses)]
    [(base_job, launched)] = [(r.job_name, launch.job_name) for r in rerun.reuses for launch in rerun.launches]
    assert base_job in before and "-g1-0-" in base_job and "-g2-1-" in launched, (base_job, launched)


def test_a_plan_with_nothing_waiting_has_no_chain_beyond_its_own_launches(demo: Path) -> None:
    first = _plan()
    assert first.plan is not None
    engine.execute_plan(first.plan, store=STORE, lock_wait_s=1)
    _wait_rounds(Approval.of(wait_chain(first.plan, first.validation.manifests)).after(first.plan), demo.parent / "jobs")
    settled = _plan()
    assert settled.plan is not None and not settled.plan.actionable()
    assert wait_chain(settled.plan, settled.validation.manifests) == []


# -- the approval, table-driven ------------------------------------------------------------------

def _launching(address: str, *attempts: int) -> Change:
    kind, name = address.split("/")
    launches = tuple(Launch(f"job-{name}-{i}", "train", attempt, {}) for i, attempt in enumerate(attempts))
    return Change(kind, name, Action.UPDATE, "launch the job", launches=launches)


def _round(*changes: Change) -> Plan:
    return Plan(store="sqlite:///x.db", serial=1, read={}, changes=changes)


CHAIN = [Step(TRAIN, "train"), Step(EVAL, "evaluate", AFTER_TRAINING), Step("EvaluationJob/watched", "evaluate", running=True)]


@pytest.mark.parametrize(("rounds", "unshown"), [
    pytest.param([[(TRAIN, 1)], [(EVAL, 1, 1)]], [[], []], id="each shown step runs once, several launches a round"),
    pytest.param([[(TRAIN, 1)], [(TRAIN, 2)]], [[], []], id="a relaunch after a transient failure is the same step"),
    pytest.param([[(TRAIN, 1)], [(TRAIN, 1)]], [[], [TRAIN]], id="a second run of a trained job was not shown"),
    pytest.param([[("ModelExport/other", 1)]], [["ModelExport/other"]], id="a job outside the chain was not shown"),
    pytest.param([[("EvaluationJob/watched", 2)], [("EvaluationJob/watched", 1)]], [[], ["EvaluationJob/watched"]],
                 id="a followed running job may be relaunched, not run anew"),
])
def test_an_approval_covers_each_shown_step_once(rounds: list[list[tuple[object, ...]]], unshown: list[list[str]]) -> None:
    approval = Approval.of(CHAIN)
    for changes, expected in zip(rounds, unshown, strict=True):
        plan = _round(*(_launching(str(address), *(int(a) for a in attempts)) for address, *attempts in changes))
        assert [c.address for c in approval.unshown(plan)] == expected
        approval = approval.after(plan)


def test_agreeing_to_a_further_chain_covers_its_steps() -> None:
    approval = Approval.of(CHAIN).after(_round(_launching(TRAIN, 1)))
    again = _round(_launching(TRAIN, 1))
    assert [c.address for c in approval.unshown(again)] == [TRAIN]
    assert approval.extended([Step(TRAIN, "train")]).unshown(again) == []
