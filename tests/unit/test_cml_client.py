"""The CML API v2 client against the fake CML server (real HTTP on loopback): auth, strict bodies,
pagination, retries on transient faults (with Retry-After), permanent errors naming the call."""

from __future__ import annotations

import random

import pytest

from reconciler.backends.cml_http import CMLClient, CMLError
from tests.fakes.cml_server import FakeCML

JOB = {"name": "ftctl-train-x-g1", "script": "runners/train.py", "cpu": 2.0, "memory": 8.0, "nvidia_gpu": 0,
       "runtime_identifier": "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime:2024.05"}


@pytest.fixture
def cml():
    with FakeCML(page_size=3) as fake:
        yield fake


def client(cml: FakeCML, **options: object) -> tuple[CMLClient, list[float]]:
    slept: list[float] = []
    made = CMLClient.from_environ(cml.env(), sleep=slept.append, rng=random.Random(7), **options)  # type: ignore[arg-type]
    return made, slept


def test_create_find_run_and_stop_a_job(cml: FakeCML) -> None:
    api, _ = client(cml)
    job = api.create_job(dict(JOB))
    assert [j["id"] for j in api.list_jobs(name=JOB["name"])] == [job["id"]]
    run = api.create_job_run(job["id"], environment={"FTCTL_JOB_INPUT": "{}"})
    assert run["status"].startswith("ENGINE_")
    assert [r["id"] for r in api.list_job_runs(job["id"])] == [run["id"]]
    stopped = api.stop_job_run(job["id"], run["id"])
    assert stopped["status"] in ("ENGINE_STOPPING", "ENGINE_STOPPED", "ENGINE_SUCCEEDED")


def test_lists_follow_every_page(cml: FakeCML) -> None:
    api, _ = client(cml, page_size=3)
    for i in range(8):
        api.create_job({**JOB, "name": f"job-{i}"})
    assert sorted(j["name"] for j in api.list_jobs()) == [f"job-{i}" for i in range(8)]
    assert cml.calls["list_jobs"] == 3  # 8 jobs, pages of 3


def test_transient_faults_are_retried_with_backoff_and_retry_after(cml: FakeCML) -> None:
    api, slept = client(cml)
    cml.fail_next(1, 503)
    cml.fail_next(1, 429, retry_after=1)
    cml.fail_next(1, "reset")
    job = api.create_job(dict(JOB))
    assert cml.jobs_named(JOB["name"]) and job["name"] == JOB["name"]
    assert len(slept) == 3 and slept[1] >= 1.0  # the 429's Retry-After is a floor
    assert len(cml.jobs_named(JOB["name"])) == 1  # faults happen before effects: nothing created twice


def test_permanent_errors_name_the_call_and_the_field(cml: FakeCML) -> None:
    api, slept = client(cml)
    with pytest.raises(CMLError) as failed:
        api.create_job({**JOB, "gpus": 1})
    assert failed.value.status == 400 and "create_job" in str(failed.value) and "gpus" in str(failed.value)
    assert not failed.value.transient and slept == []


def test_a_wrong_key_is_reported_not_retried(cml: FakeCML) -> None:
    api = CMLClient(cml.url, "not-the-key", cml.project_id, sleep=lambda s: None)
    with pytest.raises(CMLError) as failed:
        api.list_jobs()
    assert failed.value.status == 401 and api.calls == 1


def test_giving_up_says_so(cml: FakeCML) -> None:
    api, slept = client(cml, max_attempts=3)
    cml.fail_next(5, 503)
    with pytest.raises(CMLError, match="gave up after 3 attempts") as failed:
        api.list_jobs()
    assert failed.value.transient and len(slept) == 2


def test_missing_settings_are_named() -> None:
    with pytest.raises(CMLError, match="CDSW_APIV2_KEY, CDSW_PROJECT_ID"):
        CMLClient.from_environ({"CDSW_API_URL": "https://ml.example.com/api/v1"})


def test_under_injected_faults_every_call_succeeds_once(cml: FakeCML) -> None:
    api, _ = client(cml, max_attempts=10)
    cml.inject(0.2, kinds=("429", "503", "reset"), seed=3)
    for i in range(15):
        api.create_job({**JOB, "name": f"job-{i}"})
    cml.inject(0)
    assert sorted(j["name"] for j in api.list_jobs()) == sorted(f"job-{i}" for i in range(15))
