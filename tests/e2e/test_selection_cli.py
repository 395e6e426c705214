"""Selection through the real CLI (issue 16, item 1): --target, -l, --replace and plans of single
files, on the demo and a generated project, against a store the demo was applied to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.plan import Plan, Selection
from tests.e2e.helpers import (
    DEMO,
    apply,
    dump_studio,
    ftctl,
    jobs_env,
    launch_logs,
    make_demo,
    make_generated,
    show,
)

STORE = "state.db"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The demo applied once (the training launched on the fake backend); tests copy the store."""
    root = make_demo(tmp_path_factory.mktemp("selection"))
    env = jobs_env(root / "jobs")
    first = apply(root, DEMO, store=STORE, env=env, extra=["--create-store"])
    assert first.returncode == 0, show(first)
    return root, env


def _plan(root: Path, env: dict[str, str], *args: str) -> tuple[int, Plan | None, str]:
    out = root / "plan.json"
    out.unlink(missing_ok=True)
    proc = ftctl(root, "plan", *args, "--offline", "--store", STORE, "-o", str(out), env=env)
    return proc.returncode, Plan.from_json(out.read_text(encoding="utf-8")) if out.exists() else None, proc.stdout + proc.stderr


def test_each_flag_plans_a_partial_plan_that_says_so(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    cases = {
        ("--target", "ModelExport/demo-ticketing"): Selection(targets=("ModelExport/demo-ticketing",)),
        ("-l", "project=demo"): Selection(selectors=("project=demo",)),
        ("-l", "project!=other"): Selection(selectors=("project!=other",)),
        (f"{DEMO}/pipeline.yaml",): Selection(files=(f"{DEMO}/pipeline.yaml",)),
    }
    for args, selection in cases.items():
        paths = () if args[0].endswith(".yaml") else (DEMO,)
        code, plan, output = _plan(root, env, *paths, *args)
        assert code == 0 and plan is not None, output
        assert plan.partial == selection and Plan.from_json(plan.to_json()) == plan
        assert "Partial plan: only" in output and "internal error" not in output
        assert not plan.has_changes(), output  # the store matches: nothing to write, nothing deleted


def test_an_unknown_target_is_named_with_a_close_address(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    code, _, output = _plan(root, env, DEMO, "--target", "FineTuningJob/demo-ticketing-lorra")
    assert code == 1 and "--target FineTuningJob/demo-ticketing-lorra: no manifest declares it; did you mean " \
        "FineTuningJob/demo-ticketing-lora?" in output and "Traceback" not in output


def test_prune_of_a_part_is_refused(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    code, _, output = _plan(root, env, f"{DEMO}/pipeline.yaml", "--prune")
    assert code == 1 and "--prune needs the whole project" in output


def test_replace_launches_a_new_generation_and_keeps_every_reference(demo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = demo
    store = tmp_path / "copy.db"
    store.write_bytes((root / STORE).read_bytes())
    before = dump_studio(store)
    done = apply(root, DEMO, store=str(store), env=env, extra=["--replace", "FineTuningJob/demo-ticketing-lora"])
    assert done.returncode == 0, show(done)
    assert "replacement requested (--replace)" in done.stdout
    assert [name for name in launch_logs(root / "jobs") if "-g2-" in name], launch_logs(root / "jobs")
    after = dump_studio(store)
    assert {k: v for k, v in after.items() if k != "fine_tuning_jobs"} == {k: v for k, v in before.items() if k != "fine_tuning_jobs"}
    again = ftctl(root, "plan", DEMO, "--offline", "--detailed-exitcode", "--store", str(store), env=env)
    assert again.returncode == 0, show(again)  # replaced once: the next plan has nothing to do


def test_status_and_drift_show_only_the_selection(demo: tuple[Path, dict[str, str]]) -> None:
    root, env = demo
    status = ftctl(root, "status", DEMO, "--offline", "--store", STORE, "--target", "Prompt/demo-ticketing",
                   "--format", "json", env=env)
    assert status.returncode in (0, 2), show(status)
    shown = {(o["kind"], o["name"]) for o in json.loads(status.stdout)["objects"]}
    assert shown == {("Prompt", "demo-ticketing"), ("Dataset", "demo-tickets")}
    drift = ftctl(root, "drift", DEMO, "--offline", "--store", STORE, "-l", "project=demo", env=env)
    assert drift.returncode == 0 and "internal error" not in drift.stderr, show(drift)


def test_a_plan_of_any_single_file_never_crashes(demo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, env = demo
    gen = make_generated(root, 40, "gen-single")
    applied = apply(root, gen, store="gen.db", env=env, extra=["--create-store"])
    assert applied.returncode == 0, show(applied)
    projects = [(f, STORE) for f in sorted((root / DEMO).glob("*.yaml"))] + [(f, "gen.db") for f in sorted((root / gen).rglob("*.yaml"))]
    for path, store in projects:
        proc = ftctl(root, "plan", str(path.relative_to(root)), "--offline", "--store", store, env=env)
        planned = proc.returncode == 0 and "Partial plan: only" in proc.stdout
        assert planned or (proc.returncode == 1 and " error: " in proc.stderr), (path, show(proc))  # or diagnostics
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, (path, show(proc))
