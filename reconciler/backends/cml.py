"""The CML backend: each training, evaluation and export runs as a CML job (or a model endpoint).

A ftctl job is one CML job named by its deterministic job name, the idempotency key: a launch
looks the name up before creating anything, so a re-run after a crash finds the job instead of
creating another; a job found whose recorded input (FTCTL_JOB_INPUT) has not the digest its name
ends with is reported failed (`input_mismatch`), never adopted nor run again. Attempts are the
job's runs (each run carries FTCTL_ATTEMPT), so a retry adds a run and a re-run never adds a
second run for the same attempt. The job is created from the runner script (`runners/<kind>.py`,
a path in the project) with the job input as an environment value (FTCTL_JOB_INPUT, never space-split arguments), resources from the input, and the runtime
configured (FTCTL_CML_RUNTIME) or taken from the Studio's template job (Accel_Finetuning_Base_Job,
Mlflow_Evaluation_Base_Job). A training with `num_workers > 1` gets FTCTL_NUM_WORKERS and FTCTL_DIST_*:
its run is the master that launches the other CML workers (runners/cml_workers.py), and its result
is read from all the ranks' results (`scaleout.job_result`). Secrets named by the input (`hf_token_env`, config bodies' `{from_env: NAME}`) are passed as
environment variables of the run, never stored in the job.

Creating calls are sent once (`retry=False`); after a transient failure the backend looks for what
the call may have created before it tries again, so a lost answer never makes a duplicate.

Status comes from one paginated listing of the project's jobs, each with its latest run
(`observe_many`), not one call per job. CML's engine status maps to ftctl's states; the runner's
result (metrics, artifacts) is read from the job folder in the project
(`<project dir>/<jobs root>/<job>/result.json`), which a ftctl running inside the CML project
shares. A `cml_model` export becomes a CML model, a build (comment `ftctl:<job>:<attempt>`) and its
automatic deployment (the Studio's 2 CPU / 8 GB / 1 GPU unless the manifest says otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.backends import (
    check_job_name,
    check_outputs,
    check_runner,
    read_json,
    unadoptable,
    write_json,
)
from reconciler.backends.cml_http import CMLClient, CMLError
from reconciler.runtime import JobObservation, JobState
from reconciler.scaleout import job_result, topology
from reconciler.secrets import references

INPUT_ENV = "FTCTL_JOB_INPUT"
LISTING_FRESH_S = 5.0  # how long find's listing of the project's jobs stands for the observation after it
ATTEMPT_ENV = "FTCTL_ATTEMPT"
TEMPLATE_JOBS = {"train": "Accel_Finetuning_Base_Job", "evaluate": "Mlflow_Evaluation_Base_Job", "export": "Mlflow_Evaluation_Base_Job"}
ENDPOINT_SCRIPT = "endpoint.py"  # in the runners folder: `api_wrapper` serves base model + adapter
ENDPOINT_FUNCTION = "api_wrapper"
ENDPOINT_DEFAULTS = {"cpu": 2, "memory": 8, "gpu": 1}  # the Studio's deployment defaults
ACTIVE = frozenset({"ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING", "ENGINE_STOPPING", "ENGINE_UNKNOWN"})
# Engine statuses that end a run without the runner's own result, as ftctl error classes.
ENDED_WITHOUT_RESULT = {
    "ENGINE_FAILED": ("killed", "the CML run failed before the runner wrote a result"),
    "ENGINE_TIMEDOUT": ("timeout", "the CML run timed out"),
    "ENGINE_STOPPED": ("cancelled", "the CML run was stopped"),
}
BY_NAME_UP_TO = 3  # observing this many jobs or fewer looks each up by name instead of listing the project
FAULT_ENV = "FTCTL_FAULT_KILL_AFTER"  # tests: SIGKILL this process right after the named call succeeds


@dataclass(frozen=True)
class CMLSettings:
    """How jobs are made on CML: the runtime, where the runners and the project's files are."""

    runtime_identifier: str = ""  # FTCTL_CML_RUNTIME; else the Studio's template job's
    runners_dir: str = "runners"  # the runner scripts, relative to the project root
    project_dir: str = "."  # the project's files as seen from this machine (for result.json)
    timeout_s: int = 0  # kill a run after this long (0: never)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CMLSettings:
        return cls(
            runtime_identifier=environ.get("FTCTL_CML_RUNTIME", ""),
            runners_dir=environ.get("FTCTL_CML_RUNNERS_DIR", "runners"),
            project_dir=environ.get("FTCTL_CML_PROJECT_DIR", "."),
            timeout_s=int(environ.get("FTCTL_CML_RUN_TIMEOUT_S") or 0),
        )


class CMLBackend:
    name = "cml"

    def __init__(self, client: CMLClient, settings: CMLSettings, jobs_root: str, environ: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.jobs_root = jobs_root
        self.environ = dict(os.environ if environ is None else environ)
        self._runtimes: dict[str, str] = {}
        self._listed: tuple[float, list[dict[str, Any]]] | None = None  # find's listing (when, jobs), for the observation after it

    # -- paths -----------------------------------------------------------------------------------

    def job_dir(self, job_name: str) -> Path:
        check_job_name(job_name)  # a name CML takes, and a folder under the jobs root
        return Path(self.settings.project_dir) / self.jobs_root / job_name

    def paths(self, job_name: str) -> dict[str, str]:
        folder = self.job_dir(job_name)
        return {"dir": str(folder), "result": str(folder / "result.json"), "progress": str(folder / "progress.json")}

    def log_path(self, job_name: str) -> Path:
        return self.job_dir(job_name) / "log.txt"

    # -- launch ----------------------------------------------------------------------------------

    def check_launch(self, job_name: str, kind: str, job_input: dict[str, Any]) -> None:
        """A name CML takes, a runner of the closed set, and outputs in the job's folder of the project
        (relative paths are the project's, as the run sees them)."""
        check_job_name(job_name)
        check_runner(kind)
        check_outputs(job_input, Path(self.jobs_root) / job_name, Path(self.settings.project_dir).resolve())

    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1) -> JobObservation:
        """Find or create the job, then add the run for `attempt` unless it has one already."""
        self.check_launch(job_name, kind, job_input)
        if _is_endpoint(kind, job_input):
            return self._launch_endpoint(job_name, job_input, attempt)
        job = self._find_job(job_name)
        refused = self._unadoptable(job_name, job, self._latest_run(job)) if job is not None else None
        if refused:
            return refused
        if job is None:
            job = self._create_job(job_name, kind, job_input)
        _fault_point("create_job")
        latest = self._latest_run(job)
        if latest is not None and _attempt(latest) >= attempt:
            return self._observation(job_name, job, latest)
        run = self._create_run(job, attempt, job_input)
        _fault_point("create_job_run")
        return self._observation(job_name, job, run)

    def _create_job(self, job_name: str, kind: str, job_input: dict[str, Any]) -> dict[str, Any]:
        res = job_input.get("resources") or {}
        body: dict[str, Any] = {
            "name": job_name,
            "script": f"{self.settings.runners_dir.rstrip('/')}/{kind}.py",
            "cpu": float(res.get("cpu") or 2),
            "memory": float(res.get("memory") or 8),
            "nvidia_gpu": int(res.get("gpu") or 0),
            "environment": {INPUT_ENV: json.dumps(job_input, sort_keys=True), "FTCTL_JOB_LOG": "1", **_distributed(res)},
            "runtime_identifier": self._runtime(kind),
        }
        if res.get("gpu_label_id") is not None:
            body["accelerator_label_id"] = str(res["gpu_label_id"])
        if self.settings.timeout_s:
            body.update(timeout=self.settings.timeout_s, kill_on_timeout=True)
        return self._create_once("create_job", lambda: self.client.create_job(body, retry=False),
                                 lambda: self._find_job(job_name))

    def _create_run(self, job: dict[str, Any], attempt: int, job_input: dict[str, Any]) -> dict[str, Any]:
        # The run carries this attempt's input too (a run's environment overrides the job's): a retry
        # runs what its plan says, not what the first attempt was given.
        environment = {ATTEMPT_ENV: str(attempt), INPUT_ENV: json.dumps(job_input, sort_keys=True), **self._secrets(job_input)}

        def find() -> dict[str, Any] | None:
            runs = self.client.list_job_runs(str(job["id"]))
            return next((r for r in runs if _attempt(r) >= attempt), None)

        return self._create_once("create_job_run",
                                 lambda: self.client.create_job_run(str(job["id"]), environment=environment, retry=False), find)

    def _create_once(self, call: str, create: Callable[[], dict[str, Any]], find: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Create something at most once: after a transient failure, look for it before trying again."""
        for attempt in range(1, self.client.max_attempts + 1):
            try:
                return create()
            except CMLError as exc:
                if not exc.transient or attempt == self.client.max_attempts:
                    raise
            found = find()
            if found is not None:
                return found
            self.client.sleep(self.client.delay(attempt))
        raise CMLError(call, 0, "unreachable")

    def _runtime(self, kind: str) -> str:
        """The configured runtime, else the Studio's template job's (looked up once per kind)."""
        if self.settings.runtime_identifier:
            return self.settings.runtime_identifier
        if kind not in self._runtimes:
            template = TEMPLATE_JOBS[kind]
            found = self.client.list_jobs(name=template)
            runtime = str(found[0].get("runtime_identifier") or "") if found else ""
            if not runtime:
                raise CMLError("create_job", 0, f"no ML runtime for {kind} jobs: set FTCTL_CML_RUNTIME (a runtime identifier) "
                                                f"or keep the Studio's template job {template} in the project")
            self._runtimes[kind] = runtime
        return self._runtimes[kind]

    def _secrets(self, job_input: dict[str, Any]) -> dict[str, str]:
        """The secrets the input names (`hf_token_env`, `{from_env: NAME}`), from this environment, for the run only."""
        return {name: self.environ[name] for name in sorted(_token_names(job_input)) if self.environ.get(name)}

    # -- observe ---------------------------------------------------------------------------------

    def observe(self, job_name: str) -> JobObservation:
        return self.observe_many([job_name])[job_name]

    def observe_many(self, job_names: Iterable[str]) -> dict[str, JobObservation]:
        """What each job is now, from one listing of the project's jobs (with their latest runs)."""
        names = list(job_names)
        out: dict[str, JobObservation] = {}
        jobs = self._listing(len(names))
        for name in names:
            if name.startswith("ftctl-export-") and self._endpoint_input(name) is not None:
                out[name] = self._observe_endpoint(name)
                continue
            job = jobs.get(name) if jobs is not None else self._find_job(name)
            if job is None:
                out[name] = JobObservation(name, JobState.NOT_LAUNCHED)
                continue
            latest = self._latest_run(job)
            out[name] = self._observation(name, job, latest) if latest else JobObservation(
                name, JobState.NOT_LAUNCHED, external_id=str(job["id"]), job_id=str(job["id"]))
        return out

    def find(self, prefixes: Iterable[str]) -> list[str]:
        """The project's jobs whose names start with one of `prefixes` (one listing), and the
        endpoint exports whose inputs the jobs folder keeps."""
        wanted = tuple(prefixes)
        if not wanted:
            return []
        listed = self.client.list_jobs()
        self._listed = (time.monotonic(), listed)
        names = {str(job.get("name")) for job in listed}
        folder = Path(self.settings.project_dir) / self.jobs_root
        if folder.is_dir():
            names |= {p.name for p in folder.iterdir() if p.is_dir() and self._endpoint_input(p.name) is not None}
        return sorted(n for n in names if n.startswith(wanted))

    def _listing(self, wanted: int) -> dict[str, dict[str, Any]] | None:
        """Every job of the project by name (one paginated listing: a call per 100 jobs of the
        project), when more than a few are wanted (a lookup by name is one call each) or when `find`
        has just listed them; the oldest of two jobs with one name (made by something else) is the one."""
        recent, self._listed = self._listed, None  # find's listing serves once, while it is fresh
        listed = recent[1] if recent is not None and time.monotonic() - recent[0] < LISTING_FRESH_S else None
        if listed is None:
            if wanted <= BY_NAME_UP_TO:
                return None
            listed = self.client.list_jobs()
        jobs: dict[str, dict[str, Any]] = {}
        for job in sorted(listed, key=lambda j: str(j.get("created_at") or "")):
            jobs.setdefault(str(job.get("name")), job)
        return jobs

    def _find_job(self, job_name: str) -> dict[str, Any] | None:
        found = self.client.list_jobs(name=job_name)
        if len(found) > 1:  # created twice by something else: the oldest is the one
            found.sort(key=lambda j: str(j.get("created_at") or ""))
        return found[0] if found else None

    def _latest_run(self, job: dict[str, Any]) -> dict[str, Any] | None:
        if "latest" in job:  # list_jobs and get_job carry the latest run
            return job["latest"] or None
        runs = self.client.list_job_runs(str(job["id"]))
        return max(runs, key=lambda r: (_attempt(r), str(r.get("created_at") or ""))) if runs else None

    def _unadoptable(self, job_name: str, job: dict[str, Any], run: dict[str, Any] | None) -> JobObservation | None:
        """A CML job whose recorded input (its latest run's FTCTL_JOB_INPUT, else the job's) has not
        the digest its name says, as it is reported (`backends.unadoptable`); None for any other."""
        recorded = _environment(run or {}).get(INPUT_ENV) or _environment(job).get(INPUT_ENV)
        try:
            document = json.loads(recorded) if recorded else None
        except ValueError:
            document = None
        return unadoptable(job_name, document, attempt=_attempt(run) if run else 0, external_id=f"{job['id']}/{(run or {}).get('id', '')}")

    def _observation(self, job_name: str, job: dict[str, Any], run: dict[str, Any]) -> JobObservation:
        """What the job's run is now, with the CML job's id (`job_id`: what the Studio's row records)."""
        return replace(self._run_state(job_name, job, run), job_id=str(job["id"]))

    def _run_state(self, job_name: str, job: dict[str, Any], run: dict[str, Any]) -> JobObservation:
        refused = self._unadoptable(job_name, job, run)
        if refused:
            return refused
        status = str(run.get("status") or "ENGINE_UNKNOWN")
        attempt = _attempt(run)
        ids = f"{job['id']}/{run.get('id', '')}"
        if status in ACTIVE:
            stage = status.removeprefix("ENGINE_").lower()
            progress = read_json(self.job_dir(job_name) / "progress.json") or {"stage": stage}
            return JobObservation(job_name, JobState.RUNNING, attempt, progress=progress, external_id=ids)
        result = self._result(job_name, job, run)
        if result and result.get("job_name") == job_name:
            error = result.get("error") or {}
            state = JobState.SUCCEEDED if result.get("status") == "succeeded" and status == "ENGINE_SUCCEEDED" else JobState.FAILED
            if state is JobState.FAILED and not error:
                error = {"error_class": ENDED_WITHOUT_RESULT.get(status, ("killed", ""))[0], "message": f"CML says {status}"}
            return JobObservation(job_name, state, attempt, error.get("error_class", ""), error.get("message", ""),
                                  dict(result.get("metrics") or {}), dict(result.get("artifacts") or {}), {}, ids,
                                  runtime_s=JobObservation.runtime_of(result))
        if status == "ENGINE_SUCCEEDED":
            # The run succeeded but its result file is not visible from here (ftctl runs outside the project).
            outputs = (json.loads(_environment(job).get(INPUT_ENV) or "{}").get("outputs") or {})
            artifacts = {"adapter_dir": outputs["adapter_dir"]} if outputs.get("adapter_dir") else {}
            return JobObservation(job_name, JobState.SUCCEEDED, attempt, "",
                                  f"result not readable at {self.job_dir(job_name) / 'result.json'}", {}, artifacts, {}, ids)
        error_class, message = ENDED_WITHOUT_RESULT.get(status, ("killed", f"CML says {status}"))
        return JobObservation(job_name, JobState.FAILED, attempt, error_class, message, external_id=ids)

    def _result(self, job_name: str, job: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        """The run's result: rank 0's `result.json`, or for a training scaled out over CML workers
        (runners/cml_workers.py) what all its ranks' results say (`scaleout.job_result`)."""
        folder = self.job_dir(job_name)
        recorded = _environment(run).get(INPUT_ENV) or _environment(job).get(INPUT_ENV) or "{}"
        try:
            world_size = topology(json.loads(recorded).get("resources")).world_size
        except (ValueError, AttributeError):
            world_size = 1
        if world_size <= 1:
            return read_json(folder / "result.json")
        ranks = {0: read_json(folder / "result.json")} | {
            rank: read_json(folder / f"result.rank{rank}.json") for rank in range(1, world_size)}
        return dict(job_result(ranks, world_size) or {})

    # -- endpoint export (cml_model) ---------------------------------------------------------------

    def _launch_endpoint(self, job_name: str, job_input: dict[str, Any], attempt: int) -> JobObservation:
        name = str(job_input["export"]["registered_model_name"])
        model = self._find_model(name)
        if model is None:
            body = {"name": name, "description": f"{name}: base model + adapter, deployed by ftctl ({job_name})"}
            model = self._create_once("create_model", lambda: self.client.create_model(body, retry=False),
                                      lambda: self._find_model(name))
        _fault_point("create_model")
        self._save_endpoint_input(job_name, job_input)
        builds = self._builds(str(model["id"]), job_name)
        if not any(n >= attempt for n, _ in builds):
            body = self._build_body(job_name, job_input, attempt)
            self._create_once("create_model_build", lambda: self.client.create_model_build(str(model["id"]), body, retry=False),
                              lambda: next((b for n, b in self._builds(str(model["id"]), job_name) if n >= attempt), None))
        return self._observe_endpoint(job_name, model)

    def _build_body(self, job_name: str, job_input: dict[str, Any], attempt: int) -> dict[str, Any]:
        res = {**ENDPOINT_DEFAULTS, **{k: v for k, v in (job_input.get("resources") or {}).items() if v is not None}}
        export = job_input["export"]
        environment = {
            "FINE_TUNING_STUDIO_BASE_MODEL_HF_NAME": str(job_input["model"]["name_or_path"]),
            "FINE_TUNING_STUDIO_ADAPTER_LOCATION": str(export.get("adapter_path") or ""),
            "FINE_TUNING_STUDIO_GEN_CONFIG_STRING": json.dumps(export.get("generation_config") or {}),
            **self._secrets(job_input),
        }
        return {
            "file_path": f"{self.settings.runners_dir.rstrip('/')}/{ENDPOINT_SCRIPT}",
            "function_name": ENDPOINT_FUNCTION,
            "runtime_identifier": self._runtime("export"),
            "comment": f"ftctl:{job_name}:{attempt}",
            "auto_deploy_model": True,
            "auto_deployment_config": {"cpu": float(res["cpu"]), "memory": float(res["memory"]), "nvidia_gpus": int(res["gpu"]),
                                       "environment": environment, "replicas": 1},
        }

    def _find_model(self, name: str) -> dict[str, Any] | None:
        found = self.client.list_models(name=name)
        return found[0] if found else None

    def _builds(self, model_id: str, job_name: str) -> list[tuple[int, dict[str, Any]]]:
        """(attempt, build) of this job's builds: the comment `ftctl:<job>:<attempt>` names them."""
        out = []
        for build in self.client.list_model_builds(model_id):
            tag, _, number = str(build.get("comment") or "").rpartition(":")
            if tag == f"ftctl:{job_name}" and number.isdigit():
                out.append((int(number), build))
        return sorted(out, key=lambda pair: pair[0])

    def _endpoint_input(self, job_name: str) -> dict[str, Any] | None:
        saved = read_json(self.job_dir(job_name) / "input.json")
        return saved if _is_endpoint("export", saved) else None

    def _save_endpoint_input(self, job_name: str, job_input: dict[str, Any]) -> None:
        """An endpoint has no CML job to hold its input: keep it in the job folder (no secrets in it)."""
        folder = self.job_dir(job_name)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "input.json", job_input)

    def _observe_endpoint(self, job_name: str, model: dict[str, Any] | None = None) -> JobObservation:
        job_input = self._endpoint_input(job_name) or {}
        refused = unadoptable(job_name, job_input, attempt=0) if job_input else None
        if refused:
            return refused
        name = str((job_input.get("export") or {}).get("registered_model_name") or "")
        model = model or (self._find_model(name) if name else None)
        builds = self._builds(str(model["id"]), job_name) if model else []
        if not model or not builds:
            return JobObservation(job_name, JobState.NOT_LAUNCHED)
        attempt, build = builds[-1]
        ids = f"model {model['id']} build {build['id']}"
        status = str(build.get("status") or "")
        if status == "build failed":
            return JobObservation(job_name, JobState.FAILED, attempt, "runtime", f"CML model build {build['id']} failed", external_id=ids)
        if status != "built":
            return JobObservation(job_name, JobState.RUNNING, attempt, progress={"stage": f"build {status}"}, external_id=ids)
        deployments = self.client.list_model_deployments(str(model["id"]), str(build["id"]))
        deployment = deployments[-1] if deployments else None
        state = str((deployment or {}).get("status") or "pending")
        if deployment is None or state in ("pending", "deploying"):
            return JobObservation(job_name, JobState.RUNNING, attempt, progress={"stage": f"deployment {state}"}, external_id=ids)
        ids += f" deployment {deployment['id']}"
        if state == "deployed":
            artifacts = {"cml_model_id": model["id"], "cml_model_name": name, "cml_build_id": build["id"],
                         "cml_deployment_id": deployment["id"], "cml_model_crn": model.get("crn", "")}
            return JobObservation(job_name, JobState.SUCCEEDED, attempt, artifacts=artifacts, external_id=ids)
        return JobObservation(job_name, JobState.FAILED, attempt, "runtime", f"CML model deployment is {state}", external_id=ids)

    # -- cancel, queue ---------------------------------------------------------------------------

    def start_queued(self) -> list[str]:
        return []  # CML schedules runs itself: nothing waits in ftctl

    def cancel(self, job_name: str) -> bool:
        job = self._find_job(job_name)
        latest = self._latest_run(job) if job else None
        if job is None or latest is None or latest.get("status") not in ACTIVE - {"ENGINE_STOPPING"}:
            return False
        self.client.stop_job_run(str(job["id"]), str(latest["id"]))
        return True

    def links(self, job_name: str, external_id: str) -> dict[str, str]:
        """API addresses of a job and its run (`external_id` is `job id/run id`)."""
        job_id, _, run_id = external_id.partition("/")
        if not job_id or " " in external_id:
            return {}
        base = f"{self.client.base_url}/api/v2/projects/{self.client.project_id}/jobs/{job_id}"
        return {"job": base, **({"run": f"{base}/runs/{run_id}"} if run_id else {})}


def _is_endpoint(kind: str, job_input: Mapping[str, Any]) -> bool:
    return kind == "export" and (job_input.get("export") or {}).get("type") == "cml_model"


def _attempt(run: Mapping[str, Any]) -> int:
    try:
        return int(_environment(run).get(ATTEMPT_ENV) or 1)
    except ValueError:
        return 1


def _environment(item: Mapping[str, Any]) -> dict[str, str]:
    """A job's or run's environment: CML returns it as a JSON string."""
    value = item.get("environment")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def _distributed(res: Mapping[str, Any]) -> dict[str, str]:
    """Distributed training settings for the runner (num_workers, dist_*), as environment values."""
    if int(res.get("num_workers") or 1) <= 1:
        return {}
    out = {"FTCTL_NUM_WORKERS": str(res["num_workers"])}
    for key in ("dist_cpu", "dist_memory", "dist_gpu"):
        if res.get(key) is not None:
            out[f"FTCTL_{key.upper()}"] = str(res[key])
    return out


def _token_names(value: Any) -> set[str]:
    """The variables the input names: `hf_token_env` values and config bodies' `{from_env: NAME}`."""
    if isinstance(value, dict):
        found = {str(v) for k, v in value.items() if k == "hf_token_env" and v}
        return found.union(references(value), *(_token_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_token_names(v) for v in value))
    return set()


def _fault_point(name: str) -> None:
    """Tests of crash safety set FTCTL_FAULT_KILL_AFTER=create_job to die right after that call."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
