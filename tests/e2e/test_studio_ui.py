"""What the Studio's own pages read from a store ftctl wrote (issue 14, item 4), checked as the pages read it.

The demo runs on the fake CML server (tests/fakes/cml_server.py) with the stub runners, which write
results as the evaluate runner does. The Studio's code is not needed: each check does what the
page's code does, on the files and rows ftctl left.

- Job pages (`pgs/jobs.py`, `pgs/home.py`, `pgs/mlflow_jobs.py` in the Studio) merge a job row's
  `cml_job_id` with the CML job list's `public_identifier` (the CML job's id): every training and
  evaluation row records the id of the CML job that ran it, also when ftctl was killed between
  creating the CML job and noting it in the row (the next apply finds the job by name and writes its id).
- The evaluation page (`pgs/mlflow_jobs.py`, "View MLflow Runs") reads, per row of a parent job,
  `<evaluation_dir>/aggregregated_results.csv` (sic; `metric,score`, merged on `metric`) and
  `<evaluation_dir>/result_evaluation.csv` (merged on `model_input`, `expected_output`): both exist
  for every evaluation ftctl ran, with those columns.
- A re-run keeps the previous training's row: the Studio's `get_dataset_split_by_adapter` (a join of
  fine_tuning_jobs and adapters on the adapter's name) answers each adapter version with exactly
  one row, the job that trained it, and the split it was trained with.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, show
from tests.e2e.test_cml_backend import Project
from tests.e2e.test_cml_backend import project as cml_demo  # noqa: F401 (a fixture: the demo on the fake CML server)


@pytest.fixture
def cml_project(request: pytest.FixtureRequest) -> Project:
    """test_cml_backend's project: a copy of the demo, the fake CML server running the stub runners."""
    return request.getfixturevalue("cml_demo")  # type: ignore[no-any-return]


AGGREGATED, ROW_WISE = "aggregregated_results.csv", "result_evaluation.csv"
ADAPTER = "demo-ticketing-lora"


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _cml_ids(p: Project) -> dict[str, str]:
    """CML job id -> the status of its latest run (what the Studio's pages show beside a job row)."""
    return {job.id: p.cml.runs_of(job)[-1].status if p.cml.runs_of(job) else "" for job in p.ftctl_jobs()}


def _split_by_adapter(p: Project, adapter_id: str) -> list[tuple[str, float, float]]:
    """The Studio's get_dataset_split_by_adapter, as its SQL: every job row joined on the adapter's name."""
    return [(str(r[0]), float(r[1]), float(r[2])) for r in p.rows(
        "SELECT f.id, f.dataset_fraction, f.train_test_split FROM fine_tuning_jobs f "
        "JOIN adapters a ON f.adapter_name = a.name WHERE a.id = ?", (adapter_id,))]


def test_the_studios_pages_find_what_ftctl_ran_on_cml(cml_project: Project) -> None:
    p = cml_project
    p.apply()
    ran = _cml_ids(p)

    # Job pages: each row's cml_job_id is a CML job's id, the job that ran it, succeeded.
    [(train_job, adapter_name)] = p.rows("SELECT cml_job_id, adapter_name FROM fine_tuning_jobs")
    assert adapter_name == ADAPTER and ran.get(train_job) == "ENGINE_SUCCEEDED", (train_job, ran)
    evaluations = p.rows("SELECT id, parent_job_id, cml_job_id, evaluation_dir FROM evaluation_jobs")
    assert len(evaluations) == 2 and len({e[1] for e in evaluations}) == 1
    assert all(ran.get(job) == "ENGINE_SUCCEEDED" for _, _, job, _ in evaluations), (evaluations, ran)
    assert len({job for _, _, job, _ in evaluations} | {train_job}) == 3, "one CML job each"

    # The evaluation page: both files in each row's evaluation_dir (relative to the project, the
    # Studio's working directory), with the columns it merges on.
    aggregated: dict[str, dict[str, str]] = {}
    row_wise: list[list[dict[str, str]]] = []
    for row_id, _, _, folder in evaluations:
        assert folder, f"evaluation_jobs/{row_id} has no evaluation_dir"
        where = p.root / folder
        assert _header(where / AGGREGATED) == ["metric", "score"]
        aggregated[row_id] = {r["metric"]: r["score"] for r in _rows(where / AGGREGATED)}
        assert _header(where / ROW_WISE)[:2] == ["model_input", "expected_output"]
        row_wise.append(_rows(where / ROW_WISE))
    assert {frozenset(m) for m in aggregated.values()} == {frozenset({"exact_match/v1", "rougeL/v1/mean", "latency/mean"})}
    assert all(float(m["rougeL/v1/mean"]) == 0.3 for m in aggregated.values())  # the stub's score
    keys = [{(r["model_input"], r["expected_output"]) for r in rows} for rows in row_wise]
    assert keys[0] and keys[0] == keys[1], "the page merges the evaluations' rows on input and expected output"

    # Nothing to do afterwards: the notes written at launch are what the next plan expects.
    assert p.run("plan", "--offline", "--detailed-exitcode", DEMO, "extra/endpoint.yaml", expect=None).returncode == 0


def test_killed_before_noting_the_cml_job_the_next_apply_writes_its_id(cml_project: Project) -> None:
    p = cml_project
    killed = p.apply(wait=False, expect=None, FTCTL_FAULT_KILL_AFTER="create_job_run")
    assert killed.returncode == -9, show(killed)
    [job] = p.ftctl_jobs()
    assert p.rows("SELECT cml_job_id FROM fine_tuning_jobs") in ([(None,)], [("",)]), "killed before the note"

    p.apply(wait=False)
    assert [j.name for j in p.ftctl_jobs()] == [job.name] and len(p.cml.runs_of(job)) == 1, "nothing launched twice"
    assert p.rows("SELECT cml_job_id FROM fine_tuning_jobs") == [(job.id,)]


def test_a_rerun_keeps_each_adapter_versions_split(cml_project: Project) -> None:
    p = cml_project
    p.apply()
    [(g1_adapter, g1_job_row)] = p.rows("SELECT id, fine_tuning_job_id FROM adapters WHERE name = ?", (ADAPTER,))
    pipeline = p.root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    pipeline.write_text(text.replace("  train_test_split: 0.9\n", "  train_test_split: 0.8\n", 1), encoding="utf-8")
    p.apply()

    adapters = {name: (adapter_id, job_row) for name, adapter_id, job_row in p.rows("SELECT name, id, fine_tuning_job_id FROM adapters")}
    assert adapters[f"{ADAPTER}-g1"] == (g1_adapter, g1_job_row), adapters
    g2_adapter, g2_job_row = adapters[ADAPTER]
    assert g2_job_row != g1_job_row
    assert _split_by_adapter(p, g1_adapter) == [(g1_job_row, 1.0, 0.9)]
    assert [(r, f, round(s, 6)) for r, f, s in _split_by_adapter(p, g2_adapter)] == [(g2_job_row, 1.0, 0.8)]
    assert len(p.rows("SELECT id FROM fine_tuning_jobs")) == 2
