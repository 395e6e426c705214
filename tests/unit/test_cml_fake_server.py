"""The fake CML API v2 (tests/fakes/cml_server.py) over real HTTP, with urllib only: no ftctl code."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # so `tests.fakes` imports under plain `pytest` too
    sys.path.insert(0, str(REPO))

from tests.fakes.cml_server import FakeCML  # noqa: E402

KEY = "test-api-key-0123456789"
CML_ID = re.compile(r"^[a-z0-9]{4}(-[a-z0-9]{4}){3}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUNTIME = "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-workbench-python3.10-cuda:2024.10.1-b12"
DROPPED = -1  # `call`'s status when the connection was dropped without an answer


class Answer:
    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def call(
    cml: FakeCML, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
    key: str | None = KEY, raw: bytes | None = None,
) -> Answer:
    url = cml.api_url + path + ("?" + urlencode(query) if query else "")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())
    except OSError:  # reset, remote end closed without a response
        return Answer(DROPPED, {}, b"")


@pytest.fixture
def cml():
    with FakeCML(KEY, id_seed=1) as fake:
        yield fake
    assert fake.server_errors == []


def jobs_path(cml: FakeCML) -> str:
    return f"/projects/{cml.project_id}/jobs"


def job_body(name: str = "train-1", **extra: Any) -> dict[str, Any]:
    return {"project_id": "", "name": name, "script": "ft/train.py", "runtime_identifier": RUNTIME} | extra


def create_job(cml: FakeCML, name: str = "train-1", **extra: Any) -> dict[str, Any]:
    body = job_body(name, **extra)
    body["project_id"] = cml.project_id
    answer = call(cml, "POST", jobs_path(cml), body)
    assert answer.status == 200, answer.raw
    return answer.json


def start_run(cml: FakeCML, job_id: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"project_id": cml.project_id, "job_id": job_id, "environment": env or {}, "arguments": ""}
    answer = call(cml, "POST", f"{jobs_path(cml)}/{job_id}/runs", body)
    assert answer.status == 200, answer.raw
    return answer.json


def poll(cml: FakeCML, job_id: str, run_id: str) -> str:
    answer = call(cml, "GET", f"{jobs_path(cml)}/{job_id}/runs/{run_id}")
    assert answer.status == 200, answer.raw
    return answer.json["status"]


# --- auth, routes ------------------------------------------------------------------------------------
def test_every_request_needs_the_bearer_key(cml: FakeCML) -> None:
    for key in (None, "wrong-key"):
        answer = call(cml, "GET", jobs_path(cml), key=key)
        assert answer.status == 401
        assert answer.json["code"] == 16 and answer.json["message"]
    assert call(cml, "POST", jobs_path(cml), job_body(), key="wrong").status == 401
    assert cml.jobs == {}  # a refused create leaves nothing behind
    assert call(cml, "GET", jobs_path(cml)).status == 200
    assert call(cml, "GET", "/registry/models", key=None).status == 401


def test_unknown_project_path_and_method(cml: FakeCML) -> None:
    answer = call(cml, "GET", "/projects/zzzz-zzzz-zzzz-zzzz/jobs")
    assert (answer.status, answer.json["code"]) == (404, 5)
    assert call(cml, "GET", "/projects/zzzz-zzzz-zzzz-zzzz/jobs", key=None).status == 401
    assert call(cml, "GET", f"{jobs_path(cml)}/nope-nope-nope-nope").status == 404
    assert call(cml, "GET", f"/projects/{cml.project_id}/widgets").status == 404
    answer = call(cml, "PATCH", jobs_path(cml), {})
    assert (answer.status, answer.json["code"]) == (405, 12)
    answer = call(cml, "GET", jobs_path(cml), query={"pagesize": 3})
    assert answer.status == 400 and "pagesize" in answer.json["message"]
    assert call(cml, "GET", f"/projects/{cml.project_id}").json["id"] == cml.project_id


# --- strict bodies -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nvidia_gpus": 1}, "nvidia_gpus"),  # the deployment spelling, not the job's
        ({"env": {"A": "1"}}, "env"),
        ({"cpu": "2"}, "cpu"),
        ({"memory": True}, "memory"),
        ({"nvidia_gpu": 1.5}, "nvidia_gpu"),
        ({"environment": {"A": 1}}, "environment"),
        ({"environment": "A=1"}, "environment"),
        ({"arguments": ["--x"]}, "arguments"),
        ({"timeout": "60"}, "timeout"),
        ({"kill_on_timeout": "true"}, "kill_on_timeout"),
        ({"runtime_addon_identifiers": "hadoop"}, "runtime_addon_identifiers"),
        ({"accelerator_label_id": 3}, "accelerator_label_id"),
        ({"name": None}, "name"),  # null is "not set": the required name is missing
        ({"runtime_identifier": ""}, "runtime_identifier"),  # required without a kernel
    ],
)
def test_create_job_rejects_what_the_api_does_not_define(cml: FakeCML, change: dict[str, Any], field: str) -> None:
    body = job_body() | {"project_id": cml.project_id} | change
    answer = call(cml, "POST", jobs_path(cml), body)
    assert answer.status == 400, answer.raw
    assert answer.json["code"] == 3
    assert f'"{field}"' in answer.json["message"]
    assert cml.jobs == {}


def test_create_job_answers_a_job(cml: FakeCML) -> None:
    job = create_job(
        cml, "train-1", cpu=2, memory=8.5, nvidia_gpu=1, environment={"A": "1"}, arguments="--x 1",
        timeout=3600, kill_on_timeout=True, runtime_addon_identifiers=["spark"], accelerator_label_id="1",
    )
    assert CML_ID.match(job["id"]) and RFC3339.match(job["created_at"])
    assert (job["name"], job["script"], job["runtime_identifier"]) == ("train-1", "ft/train.py", RUNTIME)
    assert (job["cpu"], job["memory"], job["nvidia_gpu"]) == (2, 8.5, 1)
    assert json.loads(job["environment"]) == {"A": "1"}  # a JSON string, as the API returns it
    assert call(cml, "GET", f"{jobs_path(cml)}/{job['id']}").json == job
    # a kernel instead of a runtime is enough; a body's project_id must be the path's
    assert call(cml, "POST", jobs_path(cml), {"name": "k", "script": "s.py", "kernel": "python3"}).status == 200
    answer = call(cml, "POST", jobs_path(cml), job_body() | {"project_id": "aaaa-bbbb-cccc-dddd"})
    assert answer.status == 400 and "project_id" in answer.json["message"]
    assert call(cml, "POST", jobs_path(cml), raw=b"{not json").status == 400
    assert call(cml, "POST", jobs_path(cml), ["a"]).status == 400
    assert call(cml, "DELETE", f"{jobs_path(cml)}/{job['id']}").status == 200
    assert call(cml, "GET", f"{jobs_path(cml)}/{job['id']}").status == 404
    assert [j.name for j in cml.jobs.values()] == ["k"]


def test_create_job_run_body_is_strict(cml: FakeCML) -> None:
    job = cml.add_job("t", "s.py", RUNTIME)
    path = f"{jobs_path(cml)}/{job.id}/runs"
    answer = call(cml, "POST", path, {"job_id": job.id, "env": {}})
    assert answer.status == 400 and '"env"' in answer.json["message"]
    answer = call(cml, "POST", path, {"job_id": "other-job0-id00-0000"})
    assert answer.status == 400 and "job_id" in answer.json["message"]
    assert cml.runs == {}


# --- lists -------------------------------------------------------------------------------------------
def test_pagination_walks_three_pages(cml: FakeCML) -> None:
    made = {cml.add_job(f"job-{i:02d}", "s.py", RUNTIME).id for i in range(25)}
    seen: list[str] = []
    tokens: list[str] = []
    query: dict[str, Any] = {"page_size": 10}
    for _ in range(3):
        answer = call(cml, "GET", jobs_path(cml), query=query)
        assert answer.status == 200
        seen += [j["id"] for j in answer.json["jobs"]]
        tokens.append(answer.json["next_page_token"])
        query = {"page_size": 10, "page_token": tokens[-1]}
    assert [len(seen)] == [25] and set(seen) == made
    assert tokens[0] and tokens[1] and tokens[2] == ""
    # a token belongs to its query; a bad one is refused
    answer = call(cml, "GET", jobs_path(cml), query={"page_token": tokens[0], "sort": "-name"})
    assert answer.status == 400
    assert call(cml, "GET", jobs_path(cml), query={"page_token": "garbage!"}).status == 400
    # the default page size, and sorting
    assert len(call(cml, "GET", jobs_path(cml)).json["jobs"]) == 10
    names = [j["name"] for j in call(cml, "GET", jobs_path(cml), query={"sort": "-name", "page_size": 3}).json["jobs"]]
    assert names == ["job-24", "job-23", "job-22"]
    assert call(cml, "GET", jobs_path(cml), query={"sort": "colour"}).status == 400


def test_search_filter_matches_a_name_exactly(cml: FakeCML) -> None:
    for name in ("train", "train-2", "Train", "eval"):
        cml.add_job(name, "s.py", RUNTIME)
    cml.add_job("train", "other.py", RUNTIME)  # names need not be unique
    answer = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"name": "train"})})
    assert [(j["name"], j["script"]) for j in answer.json["jobs"]] == [("train", "s.py"), ("train", "other.py")]
    answer = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"name": "nope"})})
    assert answer.json == {"jobs": [], "next_page_token": ""}
    answer = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"colour": "red"})})
    assert answer.status == 400 and "colour" in answer.json["message"]
    assert call(cml, "GET", jobs_path(cml), query={"search_filter": "{name: x"}).status == 400
    # the looser mode, where a client must check the names itself
    cml.search_match = "contains"
    answer = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"name": "train"})})
    assert sorted(j["name"] for j in answer.json["jobs"]) == ["Train", "train", "train", "train-2"]


# --- job runs ----------------------------------------------------------------------------------------
def test_a_run_succeeds_after_its_polls(cml: FakeCML) -> None:
    job = cml.add_job("Accel_Finetuning_Base_Job", "ft/train.py", RUNTIME, environment={"A": "1", "B": "1"})
    run = start_run(cml, job.id, {"B": "2"})
    assert CML_ID.match(run["id"]) and run["status"] == "ENGINE_SCHEDULING"
    assert json.loads(run["environment"]) == {"A": "1", "B": "2"}
    statuses = [poll(cml, job.id, run["id"]) for _ in range(4)]
    assert statuses == ["ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_SUCCEEDED", "ENGINE_SUCCEEDED"]
    got = call(cml, "GET", f"{jobs_path(cml)}/{job.id}/runs/{run['id']}").json
    for stamp in ("created_at", "scheduling_at", "starting_at", "running_at", "finished_at"):
        assert RFC3339.match(got[stamp]), stamp
    assert call(cml, "GET", f"{jobs_path(cml)}/{job.id}").json["latest"]["status"] == "ENGINE_SUCCEEDED"


def test_polls_per_status_slows_a_run() -> None:
    with FakeCML(KEY, polls_per_status=2) as cml:
        job = cml.add_job("t", "s.py", RUNTIME)
        run = start_run(cml, job.id)
        statuses = [poll(cml, job.id, run["id"]) for _ in range(6)]
    assert statuses == ["ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_STARTING", "ENGINE_RUNNING",
                        "ENGINE_RUNNING", "ENGINE_SUCCEEDED"]


@pytest.mark.parametrize(
    ("outcome", "last"),
    [("fail", "ENGINE_FAILED"), ("timeout", "ENGINE_TIMEDOUT"), ("hang", "ENGINE_RUNNING"),
     (["ENGINE_SCHEDULING", "ENGINE_RUNNING", "ENGINE_SUCCEEDED"], "ENGINE_SUCCEEDED")],
)
def test_scripted_outcomes(cml: FakeCML, outcome: Any, last: str) -> None:
    cml.script_job("ft-train-", outcome)  # a name prefix
    job = cml.add_job("ft-train-1234", "s.py", RUNTIME)
    run = start_run(cml, job.id)
    statuses = [poll(cml, job.id, run["id"]) for _ in range(8)]
    assert statuses[-1] == last
    assert cml.runs[run["id"]].history[-1] == last


def test_scripts_by_id_name_prefix_and_once(cml: FakeCML) -> None:
    a = cml.add_job("eval-a", "s.py", RUNTIME)
    b = cml.add_job("eval-b", "s.py", RUNTIME)
    cml.script_job("eval", "fail")
    cml.script_job(b.id, "timeout")
    cml.script_job("eval-a", ["ENGINE_SCHEDULING", "ENGINE_UNKNOWN"], once=True)

    def finish(job_id: str) -> str:
        run = start_run(cml, job_id)
        return [poll(cml, job_id, run["id"]) for _ in range(5)][-1]

    assert finish(a.id) == "ENGINE_UNKNOWN"  # the one-off script, then the standing prefix one
    assert finish(a.id) == "ENGINE_FAILED"
    assert finish(b.id) == "ENGINE_TIMEDOUT"
    with pytest.raises(ValueError):
        cml.script_job("x", ["ENGINE_DONE"])


def test_stop_a_hanging_run(cml: FakeCML) -> None:
    job = cml.add_job("hangs", "s.py", RUNTIME)
    cml.script_job("hangs", "hang")
    run = start_run(cml, job.id)
    assert [poll(cml, job.id, run["id"]) for _ in range(5)][-1] == "ENGINE_RUNNING"
    stop = f"{jobs_path(cml)}/{job.id}/runs/{run['id']}:stop"
    answer = call(cml, "POST", stop, {})
    assert answer.status == 200 and answer.json["status"] == "ENGINE_STOPPING"
    assert poll(cml, job.id, run["id"]) == "ENGINE_STOPPED"
    assert RFC3339.match(call(cml, "GET", f"{jobs_path(cml)}/{job.id}/runs/{run['id']}").json["finished_at"])
    # stopping a finished run changes nothing; the colon may come percent-encoded
    answer = call(cml, "POST", f"{jobs_path(cml)}/{job.id}/runs/{quote(run['id'] + ':stop')}")
    assert answer.json["status"] == "ENGINE_STOPPED"
    assert cml.calls["stop_job_run"] == 2


def test_on_run_simulates_the_jobs_work(cml: FakeCML, tmp_path: Path) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    def work(job: dict[str, Any], run: dict[str, Any], env: dict[str, str]) -> Any:
        seen.append((job["name"], run["id"], env))
        if env.get("BREAK"):
            raise RuntimeError("the job crashed")
        (tmp_path / f"{job['name']}.json").write_text(json.dumps({"ok": True}))
        return "timeout" if env.get("SLOW") else None

    cml.on_run(work)
    job = cml.add_job("writer", "s.py", RUNTIME, environment={"OUT": str(tmp_path)})
    run = start_run(cml, job.id, {"X": "1"})
    assert seen == [("writer", run["id"], {"OUT": str(tmp_path), "X": "1"})]
    assert (tmp_path / "writer.json").exists()
    assert [poll(cml, job.id, run["id"]) for _ in range(3)][-1] == "ENGINE_SUCCEEDED"
    broken = start_run(cml, job.id, {"BREAK": "1"})
    assert [poll(cml, job.id, broken["id"]) for _ in range(3)][-1] == "ENGINE_FAILED"
    assert len(cml.callback_errors) == 1
    slow = start_run(cml, job.id, {"SLOW": "1"})
    assert [poll(cml, job.id, slow["id"]) for _ in range(3)][-1] == "ENGINE_TIMEDOUT"


def test_job_runs_paginate_and_advance_when_listed(cml: FakeCML) -> None:
    job = cml.add_job("t", "s.py", RUNTIME)
    runs = [start_run(cml, job.id)["id"] for _ in range(7)]
    path = f"{jobs_path(cml)}/{job.id}/runs"
    seen: list[str] = []
    query: dict[str, Any] = {"page_size": 3}
    pages = 0
    while True:
        answer = call(cml, "GET", path, query=query).json
        pages += 1
        seen += [r["id"] for r in answer["job_runs"]]
        assert all(r["status"] == "ENGINE_STARTING" for r in answer["job_runs"])  # each listed run was observed
        if not answer["next_page_token"]:
            break
        query = {"page_size": 3, "page_token": answer["next_page_token"]}
    assert (pages, seen) == (3, runs)
    # the filter sees the status before this observation moves it on (as a status may change in flight)
    answer = call(cml, "GET", path, query={"search_filter": json.dumps({"status": "ENGINE_STARTING"})}).json
    assert [r["status"] for r in answer["job_runs"]] == ["ENGINE_RUNNING"] * 7
    answer = call(cml, "GET", path, query={"search_filter": json.dumps({"status": "ENGINE_STARTING"})}).json
    assert answer["job_runs"] == []


def test_the_studio_templates(cml: FakeCML) -> None:
    templates = cml.add_studio_templates()
    for name in ("Accel_Finetuning_Base_Job", "Mlflow_Evaluation_Base_Job"):
        found = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"name": name})}).json["jobs"]
        assert [j["id"] for j in found] == [templates[name].id]
        assert found[0]["runtime_identifier"] and found[0]["script"]


# --- models, registry --------------------------------------------------------------------------------
def test_registry(cml: FakeCML) -> None:
    model_id = cml.add_registered_model(
        "tiny-llama", [{"experiment_id": "1", "run_id": "abc"}, {"experiment_id": "1", "run_id": "def", "artifact_uri": "s3://x"}]
    )
    cml.add_registered_model("other")
    got = call(cml, "GET", f"/registry/models/{model_id}").json
    assert (got["model_id"], got["name"]) == (model_id, "tiny-llama")
    versions = got["model_versions"]
    assert [v["model_version_metadata"]["mlflow_metadata"]["run_id"] for v in versions] == ["abc", "def"]
    assert versions[1]["model_version_metadata"]["mlflow_metadata"]["artifact_uri"] == "s3://x"
    assert all(CML_ID.match(v["model_version_id"]) for v in versions)
    assert call(cml, "GET", "/registry/models/none-none-none-none").status == 404
    listed = call(cml, "GET", "/registry/models", query={"search_filter": json.dumps({"model_name": "tiny-llama"})})
    assert [m["model_id"] for m in listed.json["models"]] == [model_id]
    assert len(call(cml, "GET", "/registry/models").json["models"]) == 2


def test_model_build_and_deployment_progress(cml: FakeCML) -> None:
    registered = cml.add_registered_model("m", [{"experiment_id": "1", "run_id": "r"}])
    models = f"/projects/{cml.project_id}/models"
    body = {"project_id": cml.project_id, "name": "m-endpoint", "description": "d",
            "disable_authentication": True, "registered_model_id": registered}
    model = call(cml, "POST", models, body).json
    assert CML_ID.match(model["id"]) and model["crn"].endswith(model["id"])
    assert call(cml, "POST", models, body | {"visibility": "public"}).status == 400
    builds = f"{models}/{model['id']}/builds"
    build_body = {
        "project_id": cml.project_id, "model_id": model["id"], "file_path": "predict.py",
        "function_name": "api_wrapper", "runtime_identifier": RUNTIME, "comment": "c",
        "auto_deploy_model": True,
        "auto_deployment_config": {"cpu": 2, "memory": 8, "nvidia_gpus": 1, "replicas": 1,
                                   "environment": {"FINE_TUNING_STUDIO_ADAPTER_LOCATION": "/a"}},
    }
    bad = build_body | {"auto_deployment_config": {"cpu": 2, "gpus": 1}}
    answer = call(cml, "POST", builds, bad)
    assert answer.status == 400 and "auto_deployment_config.gpus" in answer.json["message"]
    build = call(cml, "POST", builds, build_body).json
    assert build["status"] == "pending"
    build_path = f"{builds}/{build['id']}"
    deployments = f"{build_path}/deployments"
    too_early = call(cml, "POST", deployments, {"cpu": 2, "memory": 8})
    assert too_early.status == 400
    assert [call(cml, "GET", build_path).json["status"] for _ in range(3)] == ["building", "built", "built"]
    assert [b["id"] for b in call(cml, "GET", builds).json["model_builds"]] == [build["id"]]
    # auto-deployed when built, then one more made by hand
    deployment = call(cml, "POST", deployments, {"cpu": 2, "memory": 8, "nvidia_gpus": 1, "replicas": 1}).json
    assert deployment["status"] == "pending"
    assert call(cml, "POST", deployments, {"cpu": "2"}).status == 400
    statuses = [[d["status"] for d in call(cml, "GET", deployments).json["model_deployments"]] for _ in range(3)]
    assert statuses == [["deploying", "deploying"], ["deployed", "deployed"], ["deployed", "deployed"]]
    auto = cml.deployments[call(cml, "GET", deployments).json["model_deployments"][0]["id"]]
    assert (auto.cpu, auto.nvidia_gpus, auto.environment) == (2, 1, {"FINE_TUNING_STUDIO_ADAPTER_LOCATION": "/a"})
    stop = call(cml, "POST", f"{deployments}/{deployment['id']}:stop")
    assert stop.json["status"] == "stopping"
    assert call(cml, "GET", f"{deployments}/{deployment['id']}").json["status"] == "stopped"


# --- faults ------------------------------------------------------------------------------------------
def _create_many(cml: FakeCML, n: int) -> list[int]:
    body = job_body("flaky") | {"project_id": cml.project_id}
    return [call(cml, "POST", jobs_path(cml), body).status for _ in range(n)]


def test_injected_faults_at_a_fixed_seed() -> None:
    runs = []
    for _ in range(2):
        with FakeCML(KEY) as cml:
            cml.inject(rate=0.2, seed=42, slow_delay=0.005, retry_after=0)
            statuses = _create_many(cml, 200)
            faults = [r.fault for r in cml.requests]
            runs.append(faults)
            faulted = sum(f is not None for f in faults)
            assert 20 <= faulted <= 60  # about a fifth of 200
            assert {f for f in faults if f} == {"429", "503", "reset", "slow"}
            # a faulted request never took effect; a slow one did
            assert len(cml.jobs) == statuses.count(200)
            assert statuses.count(200) == faults.count(None) + faults.count("slow")
            assert statuses.count(DROPPED) == faults.count("reset")
            assert statuses.count(429) == faults.count("429") and statuses.count(503) == faults.count("503")
            assert cml.calls["create_job"] == 200
    assert runs[0] == runs[1]  # the same seed, the same faults


def test_fail_next_is_deterministic(cml: FakeCML) -> None:
    cml.fail_next(1, 429, operation="create_job", retry_after=1)
    cml.fail_next(1, 503, operation="create_job")
    assert call(cml, "GET", jobs_path(cml)).status == 200  # another operation is not touched
    answer = call(cml, "POST", jobs_path(cml), job_body() | {"project_id": cml.project_id})
    assert answer.status == 429 and answer.headers["Retry-After"] == "1" and answer.json["code"] == 8
    answer = call(cml, "POST", jobs_path(cml), job_body() | {"project_id": cml.project_id})
    assert answer.status == 503 and b"503" in answer.raw  # the ingress's HTML, not JSON
    assert cml.jobs == {}
    cml.fail_next(1, "reset")
    assert call(cml, "GET", jobs_path(cml)).status == DROPPED
    assert call(cml, "GET", jobs_path(cml)).status == 200
    assert [r.status for r in cml.requests] == [200, 429, 503, 0, 200]
    assert cml.calls == {"list_jobs": 3, "create_job": 2}
    cml.reset_counters()
    assert not cml.calls and not cml.requests


def test_fault_after_effect_leaves_the_job_created(cml: FakeCML) -> None:
    cml.fail_next(1, "reset", operation="create_job", fault_after_effect=True)
    body = job_body("ftctl-abc") | {"project_id": cml.project_id}
    assert call(cml, "POST", jobs_path(cml), body).status == DROPPED
    assert [j.name for j in cml.jobs.values()] == ["ftctl-abc"]
    # what a careful client does next: look the job up by name instead of creating another
    found = call(cml, "GET", jobs_path(cml), query={"search_filter": json.dumps({"name": "ftctl-abc"})})
    assert len(found.json["jobs"]) == 1
    assert cml.requests[0].fault == "reset" and cml.requests[0].body["name"] == "ftctl-abc"
