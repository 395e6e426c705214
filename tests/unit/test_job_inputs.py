"""Every job input a plan launches is a valid job-input document (schemas/job-input.schema.json),
and carries what its runner needs: sources, templates, config bodies (axolotl's too), outputs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from reconciler import engine
from reconciler.plan import Policy

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas/job-input.schema.json").read_text())


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCTL_BACKEND", "fake")
    monkeypatch.setenv("FTCTL_JOBS_DIR", str(tmp_path / "jobs"))
    return REPO / "specs/examples"


def test_launched_inputs_match_the_contract(examples: Path) -> None:
    report = engine.make_plan([str(examples)], store="s.db", policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None, [d for d in report.validation.diagnostics if d.severity.is_error()]
    launches = {launch.job_name: launch for change in report.plan.changes for launch in change.launches}
    assert launches, "the examples launch training jobs"
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for launch in launches.values():
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(launch.input)]
        assert not errors, (launch.job_name, errors)
        assert launch.input["job_name"] == launch.job_name and launch.input["kind"] == launch.kind


def test_an_axolotl_job_gets_its_axolotl_config(examples: Path) -> None:
    report = engine.make_plan([str(examples)], store="s.db", policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None
    [change] = [c for c in report.plan.changes if c.address == "FineTuningJob/bloom-sql-axolotl"]
    [launch] = change.launches
    assert launch.input["train"]["framework_type"] == "axolotl"
    assert isinstance(launch.input["train"]["axolotl_config"], dict) and launch.input["train"]["axolotl_config"]
