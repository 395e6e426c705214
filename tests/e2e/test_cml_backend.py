"""The CML backend end to end: the real CLI as a subprocess against the fake CML API.

Each test works on a copy of specs/ (the demo project) plus one extra manifest file: a Hugging Face
base model and a `cml_model` ModelExport of the trained adapter (a CML model endpoint). The
FineTuningJob and the endpoint name a Hub token (`hf_token_env`), whose value is in the
environment. The fake CML server (tests/fakes/cml_server.py) runs in the test process, with the
Studio's two template jobs (each with its own runtime) and an engine (`RunnerEngine`) that runs each
job run's script, the stub runners, in the project folder. ftctl runs with FTCTL_BACKEND=cml and
FTCTL_CML_RUNNERS_DIR pointing at the stub runners.

- `apply --wait` converges: one CML job per ftctl job with the right body (runner script, the
  manifest's resources, the template's runtime, the job input as FTCTL_JOB_INPUT, no secret value),
  one run each, tracked to ENGINE_SUCCEEDED; the adapter is registered where the job wrote it; the
  evaluation fans out to one job per combination under one parent_job_id; the endpoint export makes
  a CML model, a build and its deployment; `status --format json` lists every job on cml with its
  CML ids and links. The token reaches the runs (and the endpoint's deployment) and nothing else:
  not a job body, the store, any file under .app/, or anything the CLI prints.
- A second `apply --wait` creates nothing on CML.
- Under injected faults (429, 503, dropped connections) apply still converges with exactly one CML
  job per job name and one run per attempt; a create call whose answer is lost (the object was
  made) makes no duplicate.
- ftctl killed right after a create call (FTCTL_FAULT_KILL_AFTER): the next apply finds what was
  created and adds only what is missing.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.contract import JobInput
from tests.e2e.helpers import DEMO, ftctl, make_demo, query, show
from tests.fakes.cml_engine import STUB_RUNNERS, RunnerEngine
from tests.fakes.cml_server import STUDIO_TEMPLATES, FakeCML, FakeJob

STORE = ".app/state.db"
INPUT_ENV = "FTCTL_JOB_INPUT"
SECRET_ENV = "HUGGINGFACE_ACCESS_TOKEN"
SECRET = "secret-value-123"
ADAPTER = "demo-ticketing-lora"
ENDPOINT = "demo-endpoint"
ENDPOINT_FILE = "extra/endpoint.yaml"
ENDPOINT_RESOURCES = {"cpu": 4, "memory": 16, "gpu": 0}
ENDPOINT_MANIFEST = f"""\
apiVersion: ftctl/v1
kind: Model
metadata: {{name: tiny-llama-hub}}
spec:
  type: huggingface
  huggingface_model_name: ftctl-test/tiny-llama
  framework: pytorch
---
apiVersion: ftctl/v1
kind: ModelExport
metadata: {{name: {ENDPOINT}}}
spec:
  type: cml_model
  base_model: tiny-llama-hub   # a cml_model export needs a Hugging Face base model (EX-005); the same weights as tiny-llama (EX-103 warns)
  adapter: {ADAPTER}
  resources: {json.dumps(ENDPOINT_RESOURCES).replace('"', "")}
  hf_token_env: {SECRET_ENV}
"""
# The runtime each Studio template job has (different, so a job taking the wrong one shows).
RUNTIMES = {
    "Accel_Finetuning_Base_Job": "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-jupyterlab-python3.11-cuda:2024.10.1-b12",
    "Mlflow_Evaluation_Base_Job": "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-workbench-python3.10-cuda:2024.10.1-b12",
}
TEMPLATE_OF = {"train": "Accel_Finetuning_Base_Job", "evaluate": "Mlflow_Evaluation_Base_Job", "export": "Mlflow_Evaluation_Base_Job"}
CREATES = ("create_job", "create_job_run", "create_model", "create_model_build", "create_model_deployment")


@dataclass
class Project:
    """A copy of specs/ with the endpoint manifest, the fake CML serving it, and what the CLI printed."""

    root: Path
    cml: FakeCML
    engine: RunnerEngine
    printed: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.cml.env(), "FTCTL_BACKEND": "cml", "FTCTL_CML_RUNNERS_DIR": str(STUB_RUNNERS),
                "FTCTL_CACHE_DIR": str(self.root / ".app" / "cache"), SECRET_ENV: SECRET, **extra}

    def run(self, *args: str, expect: int | None = 0, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = ftctl(self.root, *args, env=self.env(**extra_env), timeout=120)
        self.printed.append(f"$ ftctl {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        if expect is not None:
            assert done.returncode == expect, show(done)
        return done

    def apply(self, *, wait: bool = True, expect: int | None = 0, **extra_env: str) -> subprocess.CompletedProcess[str]:
        flags = ["--wait", "--poll", "0.1"] if wait else []
        return self.run("apply", "--offline", "--auto-approve", "--create-store", *flags, DEMO, ENDPOINT_FILE, expect=expect, **extra_env)

    def status(self) -> dict[str, Any]:
        shown = self.run("status", "--offline", "--format", "json", DEMO, ENDPOINT_FILE, expect=None)
        assert shown.returncode in (0, 2), show(shown)
        return dict(json.loads(shown.stdout))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(self.root / STORE, sql, params)

    # -- what CML holds ----------------------------------------------------------------------------

    def ftctl_jobs(self) -> list[FakeJob]:
        """The CML jobs ftctl made (the Studio's templates left out)."""
        return [j for j in self.cml.jobs.values() if j.name not in STUDIO_TEMPLATES]

    def job(self, name: str) -> FakeJob:
        [job] = self.cml.jobs_named(name)
        return job

    def created(self) -> Counter[str]:
        """Create calls CML answered with success."""
        return Counter(r.operation for r in self.cml.requests if r.operation in CREATES and r.status == 200)


def _name_the_token(root: Path) -> None:
    """The training job names the Hub token, as a user with a gated model would."""
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    named = text.replace(f"  adapter_name: {ADAPTER}\n", f"  adapter_name: {ADAPTER}\n  hf_token_env: {SECRET_ENV}\n")
    assert named != text
    pipeline.write_text(named, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = make_demo(tmp_path / "project")
    _name_the_token(root)
    (root / ENDPOINT_FILE).parent.mkdir(parents=True)
    (root / ENDPOINT_FILE).write_text(ENDPOINT_MANIFEST, encoding="utf-8")
    with FakeCML(polls_per_status=1) as cml:
        for name, script in STUDIO_TEMPLATES.items():
            cml.add_job(name, script, RUNTIMES[name], cpu=2, memory=8, nvidia_gpu=1)
        engine = RunnerEngine(root)
        cml.on_run(engine)
        yield Project(root, cml, engine)
    assert cml.server_errors == [] and cml.callback_errors == []


def _manifests(root: Path, *files: str) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> manifest, read from the project's YAML files."""
    out = {}
    for name in files:
        for doc in yaml.safe_load_all((root / name).read_text(encoding="utf-8")):
            if doc:
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def _job_input(job: FakeJob) -> dict[str, Any]:
    document = json.loads(job.environment[INPUT_ENV])
    JobInput.model_validate(document)
    return dict(document)


def _assert_one_of_each(p: Project) -> None:
    """Exactly one CML job per ftctl job name, one run per attempt, one endpoint model/build/deployment."""
    names = Counter(j.name for j in p.ftctl_jobs())
    assert names and all(n == 1 for n in names.values()), f"duplicate CML jobs: {names}"
    for job in p.ftctl_jobs():
        attempts = Counter(r.environment.get("FTCTL_ATTEMPT") for r in p.cml.runs_of(job))
        assert attempts == {"1": 1}, f"{job.name}: runs by attempt {dict(attempts)}"
    [model] = [m for m in p.cml.models.values() if m.name == ENDPOINT]
    [build] = [b for b in p.cml.builds.values() if b.model_id == model.id]
    [_deployment] = [d for d in p.cml.deployments.values() if d.build_id == build.id]


def _assert_converged(p: Project) -> None:
    """Every job succeeded on CML, and ftctl says so: every object synced, every job succeeded on cml."""
    _assert_one_of_each(p)
    assert all(r.status == "ENGINE_SUCCEEDED" for r in p.cml.runs.values()), {r.job_name: r.history for r in p.cml.runs.values()}
    shown = p.status()
    assert {o["sync"] for o in shown["objects"]} == {"synced"}, shown["objects"]
    assert {(j["backend"], j["state"]) for j in shown["jobs"]} == {("cml", "succeeded")}, shown["jobs"]


# -- converging --------------------------------------------------------------------------------------

def test_apply_wait_runs_the_demo_on_cml(project: Project) -> None:
    p, cml = project, project.cml
    p.apply()
    manifests = _manifests(p.root, f"{DEMO}/pipeline.yaml", ENDPOINT_FILE)
    jobs = {j.name: j for j in p.ftctl_jobs()}
    inputs = {name: _job_input(job) for name, job in jobs.items()}
    bodies = {r.body["name"]: r.body for r in cml.requests if r.operation == "create_job" and r.status == 200}
    assert sorted(bodies) == sorted(jobs)

    # Each CML job: the runner script, the job input's (and so the manifest's) resources, the
    # template's runtime, the input as one environment value; no secret value anywhere in it.
    for name, body in bodies.items():
        document = inputs[name]
        assert json.loads(body["environment"][INPUT_ENV]) == document and document["job_name"] == name
        assert body["script"] == f"{STUB_RUNNERS}/{document['kind']}.py"
        assert body["runtime_identifier"] == RUNTIMES[TEMPLATE_OF[document["kind"]]]
        res = document["resources"]
        assert (body["cpu"], body["memory"], body["nvidia_gpu"]) == (res["cpu"], res["memory"], res["gpu"])
        assert SECRET not in json.dumps(body) and SECRET not in json.dumps(jobs[name].environment)
    by_kind = {kind: sorted(n for n in jobs if inputs[n]["kind"] == kind) for kind in ("train", "evaluate", "export")}
    [train] = by_kind["train"]
    for address, names in (("FineTuningJob/demo-ticketing-lora", [train]), ("EvaluationJob/demo-base-vs-lora", by_kind["evaluate"])):
        wanted = manifests[address]["spec"]["resources"]
        for name in names:
            assert (bodies[name]["cpu"], bodies[name]["memory"], bodies[name]["nvidia_gpu"]) == (wanted["cpu"], wanted["memory"], wanted["gpu"])

    # One run each, tracked to its end; the named token reaches the training's run only as an environment value.
    for job in jobs.values():
        [run] = cml.runs_of(job)
        assert run.status == "ENGINE_SUCCEEDED" and run.environment["FTCTL_ATTEMPT"] == "1"
    assert cml.runs_of(jobs[train])[0].environment[SECRET_ENV] == SECRET
    assert {r["code"] for r in p.engine.runs} == {0} and len(p.engine.runs) == len(jobs)

    # The adapter is registered where the training wrote it.
    [(kind, location)] = p.rows("SELECT type, location FROM adapters WHERE name = ?", (ADAPTER,))
    assert (kind, location) == ("project", inputs[train]["outputs"]["adapter_dir"])
    assert (p.root / location / "adapter_config.json").is_file()

    # The evaluation: one CML job per combination, all under one parent_job_id; each row records its
    # CML job's id (what the Studio's job pages match), as the training's does.
    combinations = manifests["EvaluationJob/demo-base-vs-lora"]["spec"]["combinations"]
    rows = p.rows("SELECT parent_job_id, cml_job_id FROM evaluation_jobs")
    assert len(rows) == len(combinations) == len(by_kind["evaluate"])
    assert len({parent for parent, _ in rows}) == 1
    assert sorted(job for _, job in rows) == sorted(jobs[name].id for name in by_kind["evaluate"])
    assert p.rows("SELECT cml_job_id FROM fine_tuning_jobs") == [(jobs[train].id,)]

    # The endpoint: a CML model, one build of the endpoint script, deployed with the manifest's resources.
    [model] = [m for m in cml.models.values() if m.name == ENDPOINT]
    [build] = [b for b in cml.builds.values() if b.model_id == model.id]
    assert (build.file_path, build.function_name) == (f"{STUB_RUNNERS}/endpoint.py", "api_wrapper")
    assert build.runtime_identifier == RUNTIMES[TEMPLATE_OF["export"]] and build.status == "built"
    config = build.auto_deployment_config
    assert (config["cpu"], config["memory"], config["nvidia_gpus"]) == tuple(ENDPOINT_RESOURCES.values())
    [deployment] = [d for d in cml.deployments.values() if d.build_id == build.id]
    assert deployment.status == "deployed"
    assert deployment.environment["FINE_TUNING_STUDIO_ADAPTER_LOCATION"] == location
    assert deployment.environment[SECRET_ENV] == SECRET  # the endpoint loads a gated base model with it

    # status: every job on cml, succeeded, with the CML ids (and, for CML jobs, links to the job and run).
    shown = p.status()
    listed = {j["job"]: j for j in shown["jobs"]}
    assert len(listed) == len(shown["jobs"]) == len(jobs) + 1, shown["jobs"]  # the CML jobs and the endpoint
    assert {(j["backend"], j["state"]) for j in listed.values()} == {("cml", "succeeded")}
    for name, job in jobs.items():
        [run] = cml.runs_of(job)
        assert listed[name]["external_id"] == f"{job.id}/{run.id}"
        job_url = f"{cml.api_url}/projects/{cml.project_id}/jobs/{job.id}"
        assert listed[name]["links"] == {"job": job_url, "run": f"{job_url}/runs/{run.id}"}
    [endpoint] = [j for j in listed.values() if j["name"] == ENDPOINT]
    assert all(ident in endpoint["external_id"] for ident in (model.id, build.id, deployment.id)), endpoint
    assert {o["sync"] for o in shown["objects"]} == {"synced"}


def test_a_second_apply_creates_nothing_and_no_secret_leaks(project: Project) -> None:
    p, cml = project, project.cml
    p.apply()
    _assert_converged(p)
    before = (len(cml.jobs), len(cml.runs), len(cml.models), len(cml.builds), len(cml.deployments), p.created())
    p.apply()
    assert (len(cml.jobs), len(cml.runs), len(cml.models), len(cml.builds), len(cml.deployments), p.created()) == before
    _assert_converged(p)
    p.run("logs", "FineTuningJob/demo-ticketing-lora")

    # The token is in the runs that name it and in the endpoint's deployment, and nowhere else.
    assert [r for r in cml.runs.values() if r.environment.get(SECRET_ENV) == SECRET]
    printed = "\n".join(p.printed)
    assert SECRET not in printed
    assert [path for path in (p.root / ".app").rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()] == []
    job_bodies = [r.body for r in cml.requests if r.operation == "create_job"]
    assert job_bodies and SECRET not in json.dumps(job_bodies)
    assert all(SECRET not in json.dumps(job.environment) for job in cml.jobs.values())


# -- faults ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_apply_converges_under_injected_faults(project: Project, seed: int) -> None:
    p, cml = project, project.cml
    cml.inject(rate=0.2, seed=seed, kinds=("429", "503", "reset"), retry_after=0)
    p.apply()
    faults = Counter(r.fault for r in cml.requests if r.fault)
    assert sum(faults.values()) > 0, "no fault was injected: the test checked nothing"
    cml.clear_faults()
    _assert_converged(p)


@pytest.mark.parametrize("operation", ["create_job", "create_job_run", "create_model", "create_model_build"])
def test_a_lost_answer_to_a_create_makes_no_duplicate(project: Project, operation: str) -> None:
    """CML made the object but its answer never arrived (502 after the effect)."""
    p, cml = project, project.cml
    cml.fail_next(1, 502, operation=operation, fault_after_effect=True)
    p.apply()
    assert next(r.fault for r in cml.requests if r.operation == operation) == "502", "the first call lost its answer"
    _assert_converged(p)


# -- killed between calls ----------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["create_job", "create_job_run"])
def test_killed_after_a_job_call_the_next_apply_adds_only_what_is_missing(project: Project, point: str) -> None:
    p, cml = project, project.cml
    killed = p.apply(wait=False, expect=None, FTCTL_FAULT_KILL_AFTER=point)
    assert killed.returncode == -9, show(killed)
    [job] = p.ftctl_jobs()  # the training's job, made just before ftctl died
    assert len(cml.runs_of(job)) == (1 if point == "create_job_run" else 0)

    p.apply(wait=False)
    assert [j.name for j in p.ftctl_jobs()] == [job.name], "no second job with that name"
    [run] = cml.runs_of(job)
    training = [j for j in p.status()["jobs"] if j["job"] == job.name]
    assert [(j["backend"], j["external_id"]) for j in training] == [("cml", f"{job.id}/{run.id}")]

    p.apply()
    _assert_converged(p)


def test_killed_after_creating_the_endpoint_model_the_next_apply_builds_it_once(project: Project) -> None:
    p, cml = project, project.cml
    killed = p.apply(expect=None, FTCTL_FAULT_KILL_AFTER="create_model")
    assert killed.returncode == -9, show(killed)
    [model] = cml.models.values()
    assert model.name == ENDPOINT and not [b for b in cml.builds.values() if b.model_id == model.id]

    p.apply()
    assert list(cml.models) == [model.id]
    _assert_converged(p)


def test_status_names_the_deployed_endpoint(project: Project) -> None:
    project.apply()
    [endpoint] = [o for o in project.status()["objects"] if o["name"] == ENDPOINT]
    assert endpoint["health"] == "succeeded"
    assert ENDPOINT in endpoint["reason"] and "?" not in endpoint["reason"], endpoint["reason"]


def test_status_lists_the_projects_jobs_once(project: Project) -> None:
    """Jobs are found by name prefix (their names carry the input's digest) and observed from the
    same listing: one paginated list_jobs, not one to find them and another to observe them."""
    project.apply()
    project.cml.calls.clear()
    project.status()
    assert project.cml.calls["list_jobs"] == 1, dict(project.cml.calls)
