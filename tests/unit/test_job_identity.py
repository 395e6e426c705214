"""One identity per job: a job's name carries its store's identity and its input's digest, and each
store keeps its jobs in its own folder, so two stores applied from one folder, or one spec changed
between them, never share (or adopt) a job. Real SQLite stores, the fake backend, engine use-cases."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.jobinput import input_digest, job_name
from reconciler.plan import Policy
from tests.e2e.helpers import job_folders

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plan" / "waiting"
EPOCHS = "num_train_epochs: 1"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(GOLDEN / "data", tmp_path / "data")
    shutil.copytree(GOLDEN / "manifests", tmp_path / "manifests")
    (tmp_path / "ftctl.toml").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINE_TUNING_STUDIO_SQLITE_DB", raising=False)
    monkeypatch.setenv("FTCTL_BACKEND", "fake")
    monkeypatch.setenv("FTCTL_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path


def _epochs(root: Path, epochs: int) -> None:
    for path in (root / "manifests").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if EPOCHS in text or "num_train_epochs: " in text:
            path.write_text(text.replace(EPOCHS, f"num_train_epochs: {epochs}"), encoding="utf-8")


def _apply(store: str) -> list[str]:
    report = engine.make_plan(["manifests"], store=store, policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None
    engine.execute_plan(report.plan, store=store, lock_wait_s=0)
    return [launch.job_name for change in report.plan.changes for launch in change.launches]


def _store_id(store: str) -> str:
    with sqlite3.connect(store) as conn:
        [(value,)] = conn.execute("SELECT value FROM ftctl_meta WHERE key = 'store_id'").fetchall()
    conn.close()
    return str(value)


def test_names_differ_by_store_and_by_input_and_repeat_for_the_same() -> None:
    one, other = {"train": {"num_epochs": 3}}, {"train": {"num_epochs": 5}}
    name = job_name("FineTuningJob", "ft", 1, store_id="aaaaaaaa-1", digest=input_digest(one))
    assert name == job_name("FineTuningJob", "ft", 1, store_id="aaaaaaaa-1", digest=input_digest(dict(one)))
    assert name != job_name("FineTuningJob", "ft", 1, store_id="bbbbbbbb-1", digest=input_digest(one))
    assert name != job_name("FineTuningJob", "ft", 1, store_id="aaaaaaaa-1", digest=input_digest(other))
    # the name and the output folder follow from the name: the digest leaves them out
    assert input_digest({**one, "job_name": "x", "outputs": {"dir": "/a"}}) == input_digest(one)


def test_two_stores_from_one_folder_with_a_spec_changed_launch_their_own_jobs(folder: Path) -> None:
    _epochs(folder, 3)
    [first] = _apply("a.db")
    _epochs(folder, 5)
    [second] = _apply("b.db")
    assert first != second
    jobs = job_folders(folder / "jobs")
    assert jobs[first].parent.name == _store_id("a.db") and jobs[second].parent.name == _store_id("b.db")
    assert _store_id("a.db") != _store_id("b.db")


def test_a_stale_job_of_another_input_is_not_adopted(folder: Path) -> None:
    """The store's 3-epoch job is there (same store, same generation); the manifest now says 5 epochs
    before the store recorded anything of a launch: the new plan names the old job and launches another."""
    _epochs(folder, 3)
    [old] = _apply("a.db")
    _epochs(folder, 5)
    report = engine.make_plan(["manifests"], store="a.db", policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None
    launched = [launch.job_name for change in report.plan.changes for launch in change.launches]
    assert old not in launched  # a re-run (new generation) or a new input: never the 3-epoch job
    assert old in report.observations  # it is seen, not adopted
