"""Every job input a plan launches is a valid job-input document (schemas/job-input.schema.json),
and carries what its runner needs: sources, templates, config bodies (axolotl's too), outputs."""

from __future__ import annotations

import json
import shutil
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


def _hub_sources(examples: Path, tmp_path: Path, *, job_token: str | None) -> dict[str, dict[str, object]]:
    """The `model` and `dataset` sources launched for FineTuningJob/bloom-sql, where the model and
    the dataset manifests each name the variable holding their Hub token."""
    project = tmp_path / "project"
    shutil.copytree(examples, project)
    model = project / "model.yaml"
    model.write_text(model.read_text().replace("  framework: pytorch\n", "  framework: pytorch\n  hf_token_env: MODEL_TOKEN\n", 1))
    dataset = project / "dataset.yaml"
    dataset.write_text(dataset.read_text().replace("  # hf_token_env: HUGGINGFACE_ACCESS_TOKEN", "  hf_token_env: DATA_TOKEN", 1))
    if job_token:
        job = project / "finetuning.yaml"
        job.write_text(job.read_text().replace("  adapter_name: bloom-sql-v1", f"  hf_token_env: {job_token}\n  adapter_name: bloom-sql-v1", 1))
    report = engine.make_plan([str(project)], store="s.db", policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None, [d for d in report.validation.diagnostics if d.severity.is_error()]
    [change] = [c for c in report.plan.changes if c.address == "FineTuningJob/bloom-sql"]
    [launch] = change.launches
    return {"model": launch.input["model"], "dataset": launch.input["dataset"]}


def test_a_job_downloads_with_the_token_its_model_and_dataset_name(examples: Path, tmp_path: Path) -> None:
    """A gated model or dataset names its token's variable once, on its own manifest; every job on
    it gets that name (never the value) for the download."""
    sources = _hub_sources(examples, tmp_path, job_token=None)
    assert sources["model"]["hf_token_env"] == "MODEL_TOKEN"
    assert sources["dataset"]["hf_token_env"] == "DATA_TOKEN"


def test_a_jobs_own_token_variable_wins(examples: Path, tmp_path: Path) -> None:
    sources = _hub_sources(examples, tmp_path, job_token="JOB_TOKEN")
    assert sources["model"]["hf_token_env"] == sources["dataset"]["hf_token_env"] == "JOB_TOKEN"
