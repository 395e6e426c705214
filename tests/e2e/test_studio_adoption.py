"""Adopting stores the Fine Tuning Studio made (tests/fixtures/studio, made by the Studio's own code).

Each test copies a fixture store to `<tmp>/.app/state.db` and its project files beside it, then runs
the real CLI (the fake backend, so a launch would show as a job folder):
- `ftctl import` adopts every row: the shipped defaults (fixed ids, is_default), registrations, a
  finished training with the adapter it registered, an evaluation fan-out, the axolotl job and its
  auto-generated prompt; the store is not written (no new ids, cml_job_id and out_dir kept);
- the plan right after is empty (exit 0) and apply launches nothing: imported jobs are history;
- import -> apply into an empty store reproduces every row of every Studio table;
- a job ftctl's stricter FT-103 refuses is adopted with a warning;
- on a store ftctl manages, import adopts nothing a managed job owns, and export-manifests output
  validates and re-plans to no changes.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    DEMO,
    apply,
    dump_studio,
    ftctl,
    job_folders,
    jobs_env,
    make_demo,
    plan,
    query,
    show,
    write_result,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "studio"
STORES = ("defaults.db", "registered.db", "trained.db", "evaluated.db", "axolotl.db", "tiny_fraction.db")
STORE = ".app/state.db"


def studio_project(root: Path, store: str) -> Path:
    """The Studio's project folder: its files (datasets, adapters) and the fixture store."""
    shutil.copytree(FIXTURES / "project", root)
    (root / ".app").mkdir()
    shutil.copy(FIXTURES / store, root / STORE)
    (root / "ftctl.toml").touch()
    return root


def objects_in(db: Path) -> int:
    """How many objects the store's rows are (an evaluation's fan-out is one)."""
    with sqlite3.connect(db) as conn:
        rows = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("datasets", "models", "prompts", "adapters", "configs", "fine_tuning_jobs"))
        groups = conn.execute("SELECT COUNT(DISTINCT COALESCE(NULLIF(parent_job_id, ''), id)) FROM evaluation_jobs").fetchone()[0]
    return int(rows + groups)


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ftctl(root, *args, env=jobs_env(root / "jobs"), timeout=180)


@pytest.fixture(params=STORES)
def imported(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, list[tuple[object, ...]]]]:
    """A fixture store's project after `ftctl import`, and the store's rows before it."""
    root = studio_project(tmp_path / "project", request.param)
    before = dump_studio(root / STORE)
    done = run(root, "import", "--auto-approve")
    assert done.returncode == 0, show(done)
    assert f"Adopted {objects_in(root / STORE)} objects" in done.stdout, show(done)
    return root, before


def test_import_adopts_every_row_and_writes_none(imported: tuple[Path, dict[str, list[tuple[object, ...]]]]) -> None:
    root, before = imported
    assert dump_studio(root / STORE) == before, "adoption rewrote Studio rows"
    managed = query(root / STORE, "SELECT COUNT(*) FROM ftctl_objects")[0][0]
    assert managed == objects_in(root / STORE)
    again = run(root, "import", "--auto-approve", "--out", "more")
    assert again.returncode == 0 and "Nothing to import" in again.stdout, show(again)


def test_the_plan_after_import_is_empty_and_apply_launches_nothing(imported: tuple[Path, dict[str, list[tuple[object, ...]]]]) -> None:
    root, before = imported
    planned = plan(root, "imported", env=jobs_env(root / "jobs"))
    assert planned.returncode == 0 and "No changes" in planned.stdout, show(planned)
    assert "launch" not in planned.stdout, show(planned)
    applied = apply(root, "imported", seed=None, env=jobs_env(root / "jobs"))
    assert applied.returncode == 0, show(applied)
    assert job_folders(root / "jobs") == {}, "apply launched a job the Studio already ran"
    assert dump_studio(root / STORE) == before


def test_import_then_apply_into_an_empty_store_is_row_identical(imported: tuple[Path, dict[str, list[tuple[object, ...]]]]) -> None:
    root, before = imported
    applied = apply(root, "imported", store=str(root / "fresh.db"), seed=None, env=jobs_env(root / "jobs"))
    assert applied.returncode == 0, show(applied)
    assert job_folders(root / "jobs") == {}, "applying history into an empty store launched a job"
    after = dump_studio(root / "fresh.db")
    for table, rows in before.items():
        assert after[table] == rows, table  # every row, every column: ids and is_default included


def test_a_job_that_fails_a_stricter_rule_is_adopted_with_a_warning(tmp_path: Path) -> None:
    root = studio_project(tmp_path / "project", "tiny_fraction.db")
    done = run(root, "import", "--auto-approve")
    assert done.returncode == 0, show(done)
    planned = plan(root, "imported", env=jobs_env(root / "jobs"))
    assert planned.returncode == 0, show(planned)
    [line] = [ln for ln in planned.stderr.splitlines() if "FT-103" in ln]
    assert "FT-103 warning" in line and "FineTuningJob/qwen-tiny-sample" in line, show(planned)
    assert "adopted history" in planned.stderr, show(planned)


def test_an_object_that_cannot_be_adopted_is_named_and_the_rest_is_adopted(tmp_path: Path) -> None:
    root = studio_project(tmp_path / "project", "registered.db")
    with sqlite3.connect(root / STORE) as conn:  # a prompt on a dataset the store does not hold: no manifest can say that
        conn.execute("UPDATE prompts SET dataset_id = 'not-a-dataset' WHERE name = 'Ticket Triage'")
    done = run(root, "import", "--auto-approve")
    assert done.returncode == 1, show(done)
    assert "Prompt/Ticket Triage" in done.stderr and "left out" in done.stderr, show(done)
    assert "a partial import" in done.stdout, show(done)
    names = {name for (name,) in query(root / STORE, "SELECT name FROM ftctl_objects WHERE kind = 'Prompt'")}
    assert "Ticket Triage" not in names and {"SQL Creation", "Ticketing Prompt with Actions"} <= names, names
    planned = plan(root, "imported", env=jobs_env(root / "jobs"))
    assert planned.returncode == 0, show(planned)


def managed_demo(root: Path) -> tuple[Path, dict[str, str]]:
    """The demo applied by ftctl on the fake backend, its training finished and its adapter registered."""
    root = make_demo(root)
    env = jobs_env(root / "jobs")
    assert apply(root, DEMO, env=env).returncode == 0
    [train] = [name for name in job_folders(root / "jobs") if name.startswith("ftctl-train-")]
    write_result(root / "jobs", train, artifacts={"adapter_dir": str(root / "out" / "adapter")})
    registered = apply(root, DEMO, env=env)
    assert registered.returncode == 0, show(registered)
    assert query(root / STORE, "SELECT COUNT(*) FROM adapters WHERE fine_tuning_job_id != ''")[0][0] == 1
    return root, env


def test_on_a_store_ftctl_manages_import_adopts_nothing_a_managed_job_owns(tmp_path: Path) -> None:
    root, env = managed_demo(tmp_path / "project")
    done = ftctl(root, "import", "--auto-approve", "--out", "imported", env=env)
    assert done.returncode == 0 and "Nothing to import" in done.stdout, show(done)

    exported = ftctl(root, "export-manifests", "--out", "exported", env=env)
    assert exported.returncode == 0, show(exported)
    assert not (root / "exported" / "adapters.yaml").exists(), "the adapter the demo's job registered was exported as its own"
    valid = ftctl(root, "validate", "exported", env=env)
    assert valid.returncode == 0, show(valid)


def test_export_manifests_of_a_managed_store_replans_to_no_changes(tmp_path: Path) -> None:
    """The export writes a managed job's configs inline and leaves out fields equal to their
    defaults; it resolves to the same rows and run inputs, so its spec fingerprint is the same."""
    root, env = managed_demo(tmp_path / "project")
    assert ftctl(root, "export-manifests", "--out", "exported", env=env).returncode == 0
    replanned = plan(root, "exported", env=env)
    assert replanned.returncode == 0 and "No changes" in replanned.stdout, show(replanned)
