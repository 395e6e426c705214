"""A fake Cloudera Machine Learning API v2 on loopback: the calls ftctl's CML backend makes (jobs, job
runs, model endpoints, the model registry), read off reference/cml-api-v2.md, not off ftctl.

`with FakeCML() as cml:` serves on `cml.url` (a random free port on 127.0.0.1) until the block ends;
`cml.env()` gives the three values a client reads inside CML (`CDSW_API_URL`, `CDSW_APIV2_KEY`,
`CDSW_PROJECT_ID`). Standard library only. `python -m tests.fakes.cml_server --templates` serves one
from the command line (for `make demo-cml`) until interrupted.

Served under `/api/v2` (JSON in and out, snake_case, ids like CML's `a1b2-c3d4-e5f6-g7h8`, RFC 3339
UTC timestamps with milliseconds):

- Projects: GET `/projects/{p}` (get_project).
- Jobs: GET/POST `/projects/{p}/jobs` (list_jobs, create_job); GET/DELETE `/projects/{p}/jobs/{j}`
  (get_job, delete_job); GET/POST `/projects/{p}/jobs/{j}/runs` (list_job_runs, create_job_run); GET
  `/projects/{p}/jobs/{j}/runs/{r}` (get_job_run); POST `/projects/{p}/jobs/{j}/runs/{r}:stop`
  (stop_job_run).
- Models: GET/POST `/projects/{p}/models` (list_models, create_model); GET `/projects/{p}/models/{m}`
  (get_model); GET/POST `.../models/{m}/builds` (list_model_builds, create_model_build); GET
  `.../builds/{b}` (get_model_build); GET/POST `.../builds/{b}/deployments` (list_model_deployments,
  create_model_deployment); GET `.../deployments/{d}` (get_model_deployment); POST
  `.../deployments/{d}:stop` (stop_model_deployment).
- Registry: GET `/registry/models` (list_registered_models), GET `/registry/models/{id}`
  (get_registered_model).
- Workers (what `cml.workers_v1` of the fake runtime calls, tests/fakes/cml_runtime; the real
  module's calls are not public): GET/POST `/projects/{p}/engines/{e}/workers` (list_workers,
  launch_workers), POST `.../workers/{w}:stop` (stop_worker). An engine is a job run's, registered
  by the fake engine that runs it (`add_engine`, `end_engine`); each worker is a real process the
  engine's starter runs (`on_worker`); see tests/fakes/cml_workers.py.

Behaviour:

- Auth: every request needs `authorization: Bearer <api_key>`; otherwise 401 `{code: 16, message}`.
  An unknown project, job, run, model, build, deployment or registered model is 404 `{code: 5}`; an
  unknown path 404, a known path with another method 405 `{code: 12}`.
- Strict bodies: each POST body is checked against the request's field list (`SCHEMAS`): an unknown
  field, a wrong JSON type or a missing required field is 400 `{code: 3, message}` naming the field.
  `null` counts as "not set" (as protobuf JSON does). `project_id`/`job_id`/`model_id`/`build_id` in a
  body must equal the path's. Lists accept only `search_filter` (a JSON object as a string; unknown
  keys are 400), `sort` (`field` or `-field`), `page_size` and `page_token` (opaque; tied to the
  query it came from), and answer `next_page_token` ("" on the last page). Job names need not be
  unique (as in CML).
- Job runs move through a status script, one step per observation (get_job_run, the run showing up
  in list_job_runs, or as a job's `latest` run in list_jobs or get_job), each status held for `polls_per_status` observations; create_job_run answers
  the first status. Default: SCHEDULING → STARTING → RUNNING → SUCCEEDED. `script_job` changes it per
  job; stop_job_run turns a run that has not finished into ENGINE_STOPPING, then ENGINE_STOPPED.
  `on_run(callback)` is called with (job, run, environment) when a run is created.
- Model builds go `build_statuses` (default pending → building → built) and deployments
  `deployment_statuses` (pending → deploying → deployed), one step per observation; a build with
  `auto_deploy_model` gets a deployment (from `auto_deployment_config`) when it is built.
- Faults (`inject`, `fail_next`) are decided before the request touches any state: a 429/5xx or a
  dropped connection never applies half a mutation. Only `fail_next(..., fault_after_effect=True)`
  answers the fault after the effect (the job was created, the client never heard).
- Introspection: `requests` (every request: method, path, status, body, operation, query, fault;
  status 0 for a dropped connection), `calls` (a Counter by operation name, faulted requests
  included), `jobs`, `runs`, `models`, `builds`, `deployments`, `registered_models` (by id),
  `reset_counters()`; `callback_errors` (what on_run callbacks raised) and `server_errors` (bugs in
  the fake itself, answered 500).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import random
import signal
import socket
import string
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.cml_workers import Engine, FakeWorker, FakeWorkers, WorkerStarter, stop

# --- statuses ------------------------------------------------------------------------------------
SCHEDULING, STARTING, RUNNING = "ENGINE_SCHEDULING", "ENGINE_STARTING", "ENGINE_RUNNING"
STOPPING, STOPPED, UNKNOWN = "ENGINE_STOPPING", "ENGINE_STOPPED", "ENGINE_UNKNOWN"
SUCCEEDED, FAILED, TIMEDOUT = "ENGINE_SUCCEEDED", "ENGINE_FAILED", "ENGINE_TIMEDOUT"
ENGINE_STATUSES = (SCHEDULING, STARTING, RUNNING, STOPPING, STOPPED, UNKNOWN, SUCCEEDED, FAILED, TIMEDOUT)
TERMINAL = frozenset({STOPPED, SUCCEEDED, FAILED, TIMEDOUT})
# `script_job(key, "fail")` etc.: the status scripts behind each outcome keyword.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "succeed": (SCHEDULING, STARTING, RUNNING, SUCCEEDED),
    "fail": (SCHEDULING, STARTING, RUNNING, FAILED),
    "timeout": (SCHEDULING, STARTING, RUNNING, TIMEDOUT),
    "hang": (SCHEDULING, STARTING, RUNNING),  # stays ENGINE_RUNNING until stopped
    "stopped": (SCHEDULING, STARTING, RUNNING, STOPPING, STOPPED),  # stopped by someone else
}
BUILD_STATUSES = ("pending", "building", "built")
BUILD_TERMINAL = frozenset({"built", "build failed"})
DEPLOYMENT_STATUSES = ("pending", "deploying", "deployed")

FAULT_KINDS = ("429", "500", "502", "503", "504", "reset", "slow")
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 6, 429: 8, 500: 13, 501: 12}
_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
_ID_ALPHABET = string.ascii_lowercase + string.digits


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- request schemas -------------------------------------------------------------------------------
class _Type(NamedTuple):
    name: str
    check: Callable[[Any], bool]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


STR = _Type("a string", lambda v: isinstance(v, str))
NUMBER = _Type("a number", _is_number)
INT = _Type("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
BOOL = _Type("a boolean", lambda v: isinstance(v, bool))
STR_MAP = _Type(
    "an object of strings",
    lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
)
STR_LIST = _Type("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))

SHORT_CREATE_MODEL_DEPLOYMENT: dict[str, Any] = {
    "cpu": NUMBER, "memory": NUMBER, "nvidia_gpus": INT, "environment": STR_MAP, "replicas": INT,
}
# request name -> {field: type, or a nested schema (a JSON object checked the same way)}
SCHEMAS: dict[str, dict[str, Any]] = {
    "CreateJobRequest": {
        "project_id": STR, "name": STR, "script": STR, "cpu": NUMBER, "memory": NUMBER, "nvidia_gpu": INT,
        "environment": STR_MAP, "arguments": STR, "timeout": INT, "kill_on_timeout": BOOL, "kernel": STR,
        "runtime_identifier": STR, "runtime_addon_identifiers": STR_LIST, "parent_id": STR,
        "accelerator_label_id": STR,
    },
    "CreateJobRunRequest": {"project_id": STR, "job_id": STR, "environment": STR_MAP, "arguments": STR},
    "StopJobRunRequest": {"project_id": STR, "job_id": STR, "run_id": STR},
    "CreateModelRequest": {
        "project_id": STR, "name": STR, "description": STR, "disable_authentication": BOOL,
        "registered_model_id": STR,
    },
    "CreateModelBuildRequest": {
        "project_id": STR, "model_id": STR, "file_path": STR, "function_name": STR, "kernel": STR,
        "runtime_identifier": STR, "runtime_addon_identifiers": STR_LIST, "comment": STR,
        "auto_deploy_model": BOOL, "auto_deployment_config": SHORT_CREATE_MODEL_DEPLOYMENT,
        "model_root_dir": STR, "registered_model_version_id": STR,
    },
    "CreateModelDeploymentRequest": {
        "project_id": STR, "model_id": STR, "build_id": STR, **SHORT_CREATE_MODEL_DEPLOYMENT,
    },
    "StopModelDeploymentRequest": {"project_id": STR, "model_id": STR, "build_id": STR, "deployment_id": STR},
    "LaunchWorkersRequest": {
        "n": INT, "cpu": NUMBER, "memory": NUMBER, "nvidia_gpu": INT, "kernel": STR, "script": STR, "code": STR,
        "env": STR_MAP, "accelerator_label_id": INT, "resource_profile_id": INT, "resource_group_id": INT,
    },
    "StopWorkerRequest": {},
}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} not found: {ident}")


def check_body(request: str, body: Any, schema: dict[str, Any] | None = None, prefix: str = "") -> dict[str, Any]:
    """The body without its nulls; ApiError(400) naming the first unknown or mistyped field."""
    schema = SCHEMAS[request] if schema is None else schema
    if not isinstance(body, dict):
        raise _bad(f"invalid {request}: the body must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = prefix + key
        if key not in schema:
            raise _bad(f'proto: unknown field "{name}" in {request}')
        if value is None:
            continue
        kind = schema[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise _bad(f'invalid value for field "{name}" in {request}: expected an object, got {json.dumps(value)}')
            out[key] = check_body(request, value, kind, name + ".")
        elif not kind.check(value):
            raise _bad(f'invalid value for field "{name}" in {request}: expected {kind.name}, got {json.dumps(value)}')
        else:
            out[key] = value
    return out


def _require(request: str, body: dict[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) in (None, ""):
            raise _bad(f'missing required field "{name}" in {request}')


# --- resources -------------------------------------------------------------------------------------
@dataclass
class _Progress:
    """Something whose status follows a script, one step per `per` observations."""

    script: list[str]
    per: int = 1
    polls: int = 0

    @property
    def status(self) -> str:
        return self.script[min(self.polls // max(self.per, 1), len(self.script) - 1)]

    def observe(self) -> str | None:
        """One observation; the new status when it changed."""
        before = self.status
        self.polls += 1
        return self.status if self.status != before else None

    def restart(self, script: Sequence[str]) -> None:
        self.script, self.polls = list(script), 0


CREATOR = {"username": "ftctl", "name": "Fine Tuning", "email": "ftctl@example.com"}


@dataclass
class FakeJob:
    id: str
    project_id: str
    name: str
    script: str
    runtime_identifier: str = ""
    kernel: str = ""
    cpu: float = 1
    memory: float = 1
    nvidia_gpu: int = 0
    environment: dict[str, str] = field(default_factory=dict)
    arguments: str = ""
    timeout: int = 0
    kill_on_timeout: bool = False
    runtime_addon_identifiers: list[str] = field(default_factory=list)
    parent_id: str = ""
    accelerator_label_id: str = ""
    created_at: str = field(default_factory=now_rfc3339)
    updated_at: str = ""

    def to_api(self, latest: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "script": self.script,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpu": self.nvidia_gpu,
            "engine_image_id": "",
            "kernel": self.kernel,
            "runtime_identifier": self.runtime_identifier,
            "runtime_addon_identifiers": list(self.runtime_addon_identifiers),
            "type": "manual",
            "schedule": "",
            "parent_id": self.parent_id,
            "environment": json.dumps(self.environment),
            "arguments": self.arguments,
            "timeout": self.timeout,
            "timeout_kill": self.kill_on_timeout,
            "kill_on_timeout": self.kill_on_timeout,
            "paused": False,
            "accelerator_label_id": self.accelerator_label_id,
            "creator": dict(CREATOR),
            "latest": latest,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
        }


_RUN_STAMPS = {SCHEDULING: "scheduling_at", STARTING: "starting_at", RUNNING: "running_at"}


@dataclass
class FakeRun(_Progress):
    id: str = ""
    job_id: str = ""
    project_id: str = ""
    job_name: str = ""
    cpu: float = 1
    memory: float = 1
    nvidia_gpu: int = 0
    arguments: str = ""
    environment: dict[str, str] = field(default_factory=dict)  # the job's, overridden by the run's
    runtime_identifier: str = ""
    kernel: str = ""
    created_at: str = field(default_factory=now_rfc3339)
    stamps: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # every status it has shown, in order

    def stamp(self, status: str) -> None:
        self.history.append(status)
        key = "finished_at" if status in TERMINAL else _RUN_STAMPS.get(status)
        if key and key not in self.stamps:
            self.stamps[key] = now_rfc3339()

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "project_id": self.project_id,
            "status": self.status,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpu": self.nvidia_gpu,
            "arguments": self.arguments,
            "environment": json.dumps(self.environment),
            "runtime_identifier": self.runtime_identifier,
            "kernel": self.kernel,
            "creator": dict(CREATOR),
            "created_at": self.created_at,
            "scheduling_at": self.stamps.get("scheduling_at", ""),
            "starting_at": self.stamps.get("starting_at", ""),
            "running_at": self.stamps.get("running_at", ""),
            "finished_at": self.stamps.get("finished_at", ""),
        }


@dataclass
class FakeModel:
    id: str
    project_id: str
    name: str
    description: str = ""
    disable_authentication: bool = False
    registered_model_id: str = ""
    access_key: str = ""
    created_at: str = field(default_factory=now_rfc3339)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "description": self.description,
            "crn": f"crn:cdp:ml:us-west-1:fake-tenant:workspace:fake-workspace/{self.id}",
            "access_key": self.access_key,
            "auth_enabled": not self.disable_authentication,
            "registered_model_id": self.registered_model_id,
            "default_resources": {"cpu": 1, "memory": 2, "nvidia_gpus": 0},
            "default_replication_policy": {"type": "fixed", "num_replicas": 1},
            "run_as": 0,
            "visibility": "private",
            "creator": dict(CREATOR),
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass
class FakeBuild(_Progress):
    id: str = ""
    project_id: str = ""
    model_id: str = ""
    build_number: int = 1
    file_path: str = ""
    function_name: str = ""
    kernel: str = ""
    runtime_identifier: str = ""
    runtime_addon_identifiers: list[str] = field(default_factory=list)
    comment: str = ""
    model_root_dir: str = ""
    registered_model_version_id: str = ""
    auto_deploy_model: bool = False
    auto_deployment_config: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_rfc3339)
    built_at: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_id": self.model_id,
            "project_id": self.project_id,
            "build_number": self.build_number,
            "status": self.status,
            "comment": self.comment,
            "file_path": self.file_path,
            "function_name": self.function_name,
            "kernel": self.kernel,
            "runtime_identifier": self.runtime_identifier,
            "runtime_addon_identifiers": list(self.runtime_addon_identifiers),
            "model_root_dir": self.model_root_dir,
            "registered_model_version_id": self.registered_model_version_id,
            "crn": f"crn:cdp:ml:us-west-1:fake-tenant:workspace:fake-workspace/{self.id}",
            "creator": dict(CREATOR),
            "created_at": self.created_at,
            "updated_at": self.built_at or self.created_at,
            "built_at": self.built_at,
        }


@dataclass
class FakeDeployment(_Progress):
    id: str = ""
    project_id: str = ""
    model_id: str = ""
    build_id: str = ""
    cpu: float = 1
    memory: float = 2
    nvidia_gpus: int = 0
    environment: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    created_at: str = field(default_factory=now_rfc3339)
    stopped_at: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_id": self.model_id,
            "build_id": self.build_id,
            "project_id": self.project_id,
            "status": self.status,
            "cpu": self.cpu,
            "memory": self.memory,
            "nvidia_gpus": self.nvidia_gpus,
            "environment": json.dumps(self.environment),
            "replicas": self.replicas,
            "crn": f"crn:cdp:ml:us-west-1:fake-tenant:workspace:fake-workspace/{self.id}",
            "deployer": dict(CREATOR),
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "stopped_at": self.stopped_at,
        }


@dataclass
class FakeRegisteredModel:
    model_id: str
    name: str
    description: str = ""
    versions: list[dict[str, Any]] = field(default_factory=list)  # API-shaped model versions
    created_at: str = field(default_factory=now_rfc3339)

    def to_api(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "name": self.name,
            "description": self.description,
            "visibility": "PRIVATE",
            "creator": {"user_name": CREATOR["username"], "name": CREATOR["name"]},
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "model_versions": json.loads(json.dumps(self.versions)),
        }


class Request(NamedTuple):
    method: str
    path: str  # without the query string
    status: int  # 0: the connection was dropped without an answer
    body: Any  # the parsed JSON body (the raw text when it was not JSON; None when empty)
    operation: str  # list_jobs, create_job, ... ("unknown" for a path the API does not have)
    query: dict[str, str]
    fault: str | None  # the injected fault it got ("429", "503", "reset", "slow"...), if any


@dataclass
class _Fault:
    kind: str  # one of FAULT_KINDS
    after_effect: bool = False
    delay: float = 0.0
    retry_after: int = 0


@dataclass
class _Scripted:
    key: str
    statuses: tuple[str, ...]
    per: int | None
    once: bool
    seq: int


class _Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


_RESET = _Response(0, {}, b"")  # drop the connection without answering


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, {"Content-Type": "application/json"} | (headers or {}), json.dumps(body).encode())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    code = _GRPC_CODES.get(status, 14 if status >= 500 else 2)
    return _json(status, {"code": code, "message": message, "details": []}, headers)


def _gateway_error(status: int) -> _Response:
    """What the ingress in front of CML answers: HTML, not the API's JSON."""
    reason = _REASONS.get(status, "Error")
    html = f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return _Response(status, {"Content-Type": "text/html"}, html.encode())


# --- routes ----------------------------------------------------------------------------------------
# (path pattern under /api/v2, {method: operation}); "{x}" captures an id, "{x}:stop" an id + ":stop".
_P, _J, _M, _B = "projects/{project_id}", "jobs/{job_id}", "models/{model_id}", "builds/{build_id}"
ROUTES: list[tuple[str, dict[str, str]]] = [
    (f"{_P}", {"GET": "get_project"}),
    (f"{_P}/jobs", {"GET": "list_jobs", "POST": "create_job"}),
    (f"{_P}/{_J}", {"GET": "get_job", "DELETE": "delete_job"}),
    (f"{_P}/{_J}/runs", {"GET": "list_job_runs", "POST": "create_job_run"}),
    (f"{_P}/{_J}/runs/{{run_id}}:stop", {"POST": "stop_job_run"}),
    (f"{_P}/{_J}/runs/{{run_id}}", {"GET": "get_job_run"}),
    (f"{_P}/models", {"GET": "list_models", "POST": "create_model"}),
    (f"{_P}/{_M}", {"GET": "get_model"}),
    (f"{_P}/{_M}/builds", {"GET": "list_model_builds", "POST": "create_model_build"}),
    (f"{_P}/{_M}/{_B}", {"GET": "get_model_build"}),
    (f"{_P}/{_M}/{_B}/deployments", {"GET": "list_model_deployments", "POST": "create_model_deployment"}),
    (f"{_P}/{_M}/{_B}/deployments/{{deployment_id}}:stop", {"POST": "stop_model_deployment"}),
    (f"{_P}/{_M}/{_B}/deployments/{{deployment_id}}", {"GET": "get_model_deployment"}),
    ("registry/models", {"GET": "list_registered_models"}),
    (f"{_P}/engines/{{engine_id}}/workers", {"GET": "list_workers", "POST": "launch_workers"}),
    (f"{_P}/engines/{{engine_id}}/workers/{{worker_id}}:stop", {"POST": "stop_worker"}),
    ("registry/models/{model_id}", {"GET": "get_registered_model"}),
]
MUTATIONS = frozenset({
    "create_job", "delete_job", "create_job_run", "stop_job_run", "create_model", "create_model_build",
    "create_model_deployment", "stop_model_deployment", "launch_workers", "stop_worker",
})
LIST_PARAMS = frozenset({"search_filter", "sort", "page_size", "page_token"})


def route(method: str, path: str) -> tuple[str, dict[str, str]] | ApiError:
    """(operation, path parameters) for a path under /api/v2, or the 404/405 it gets."""
    if not path.startswith("/api/v2/"):
        return ApiError(404, "Not Found")
    segments = [unquote(s) for s in path[len("/api/v2/") :].rstrip("/").split("/")]
    for pattern, methods in ROUTES:
        parts = pattern.split("/")
        if len(parts) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, seg in zip(parts, segments):
            if part.startswith("{"):
                name, _, suffix = part[1:].partition("}")
                if suffix:  # "{run_id}:stop"
                    if not seg.endswith(suffix) or len(seg) == len(suffix):
                        break
                    seg = seg[: -len(suffix)]
                if not seg or ":" in seg:
                    break
                params[name] = seg
            elif part != seg:
                break
        else:
            if method not in methods:
                return ApiError(405, "Method Not Allowed")
            return methods[method], params
    return ApiError(404, "Not Found")


DEFAULT_RUNTIME = (
    "docker.repository.cloudera.com/cloudera/cdsw/ml-runtime-pbj-jupyterlab-python3.11-cuda:2024.10.1-b12"
)
STUDIO_TEMPLATES = {
    "Accel_Finetuning_Base_Job": "ft/scripts/accel_fine_tune_base_script.py",
    "Mlflow_Evaluation_Base_Job": "ft/scripts/mlflow_evaluation_base_script.py",
}


# --- the fake --------------------------------------------------------------------------------------
RunCallback = Callable[[dict[str, Any], dict[str, Any], dict[str, str]], Any]


class FakeCML:
    """A fake CML API v2 server. Configure it before or while it serves; all methods are thread-safe.

    - `api_key`: the key requests must carry (default: a random one); `project_id`: the project it
      serves (default: a random CML-style id; `add_project` adds more).
    - `polls_per_status`: how many observations each scripted status lasts (runs, builds, deployments).
    - `page_size`: the default page size of lists; `search_match`: "exact" (default) or "contains"
      (substring, case-insensitive: what a client must filter again to be exact).
    - `id_seed`: makes the generated ids reproducible; `host`/`port`: where to listen (port 0: any free).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        project_id: str | None = None,
        polls_per_status: int = 1,
        page_size: int = 10,
        search_match: str = "exact",
        id_seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if search_match not in ("exact", "contains"):
            raise ValueError("search_match is 'exact' or 'contains'")
        self._lock = threading.RLock()
        self._ids = random.Random(id_seed)
        self.api_key = api_key or "".join(self._ids.choices(_ID_ALPHABET, k=40))
        self.project_id = project_id or self.new_id()
        self.projects: dict[str, dict[str, Any]] = {}
        self.polls_per_status = polls_per_status
        self.page_size = page_size
        self.search_match = search_match
        self.build_statuses: list[str] = list(BUILD_STATUSES)
        self.deployment_statuses: list[str] = list(DEPLOYMENT_STATUSES)
        self.jobs: dict[str, FakeJob] = {}
        self.runs: dict[str, FakeRun] = {}
        self.models: dict[str, FakeModel] = {}
        self.builds: dict[str, FakeBuild] = {}
        self.deployments: dict[str, FakeDeployment] = {}
        self.registered_models: dict[str, FakeRegisteredModel] = {}
        self.worker_engines = FakeWorkers(api_env=self.env)  # engines and their workers (real processes)
        self.requests: list[Request] = []
        self.calls: Counter[str] = Counter()
        self.callback_errors: list[BaseException] = []  # what on_run callbacks raised
        self.server_errors: list[BaseException] = []  # bugs in the fake (answered 500)
        self._scripts: list[_Scripted] = []
        self._seq = 0
        self._callbacks: list[RunCallback] = []
        self._fail: list[tuple[_Fault, frozenset[str] | None]] = []
        self._inject_rate = 0.0
        self._inject_kinds: tuple[str, ...] = ()
        self._inject_rng = random.Random(0)
        self._inject_ops: frozenset[str] | None = None
        self._slow_delay = 0.2
        self._retry_after: tuple[int, ...] = (0, 1)
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_project(self.project_id)

    # --- configuration ---------------------------------------------------------------------------
    def new_id(self) -> str:
        """A CML-style id: four groups of four lowercase letters and digits (`a1b2-c3d4-e5f6-g7h8`)."""
        with self._lock:
            return "-".join("".join(self._ids.choices(_ID_ALPHABET, k=4)) for _ in range(4))

    def add_project(self, project_id: str | None = None, name: str = "fine-tuning-studio") -> str:
        project_id = project_id or self.new_id()
        with self._lock:
            stamp = now_rfc3339()
            self.projects[project_id] = {
                "id": project_id, "name": name, "description": "", "owner": dict(CREATOR),
                "default_engine_type": "ml_runtime", "permissions": {"admin": True, "business_user": False},
                "visibility": "private", "created_at": stamp, "updated_at": stamp,
            }
        return project_id

    def add_job(
        self, name: str, script: str, runtime_identifier: str = "", *, project_id: str | None = None, **fields: Any
    ) -> FakeJob:
        """A job already in the project (e.g. the Studio's templates); `fields` are FakeJob fields."""
        with self._lock:
            job = FakeJob(self.new_id(), project_id or self.project_id, name, script, runtime_identifier, **fields)
            self.jobs[job.id] = job
            return job

    def add_studio_templates(self, runtime_identifier: str = DEFAULT_RUNTIME) -> dict[str, FakeJob]:
        """The Studio's two template jobs, found by name and cloned for each training and evaluation."""
        return {
            name: self.add_job(name, script, runtime_identifier, cpu=2, memory=8, nvidia_gpu=1)
            for name, script in STUDIO_TEMPLATES.items()
        }

    def add_registered_model(
        self, name: str, versions: Iterable[dict[str, Any]] = (), *, description: str = ""
    ) -> str:
        """A model in the registry; each version a dict of MLflow metadata ({experiment_id, run_id, ...}).
        Returns its model_id (the versions' ids are in `registered_models[id].versions`)."""
        with self._lock:
            model_id = self.new_id()
            stamp = now_rfc3339()
            api_versions = []
            for number, meta in enumerate(versions, start=1):
                mlflow = {"experiment_id": "", "run_id": "", "artifact_uri": "", "tags": {}} | dict(meta)
                api_versions.append({
                    "model_version_id": self.new_id(), "model_id": model_id, "version": number,
                    "status": "REGISTERED", "created_at": stamp, "updated_at": stamp,
                    "creator": {"user_name": CREATOR["username"], "name": CREATOR["name"]},
                    "model_version_metadata": {"mlflow_metadata": mlflow},
                })
            self.registered_models[model_id] = FakeRegisteredModel(model_id, name, description, api_versions, stamp)
            return model_id

    def script_job(
        self, key: str, statuses: str | Sequence[str], *, polls_per_status: int | None = None, once: bool = False
    ) -> None:
        """How runs of the jobs `key` names go: a job id, a job name, or a name prefix (the most
        specific key wins: id or exact name, then the longest prefix, then the latest call).
        `statuses` is a list of EngineStatus values or an outcome: "succeed", "fail", "timeout",
        "hang" (stays ENGINE_RUNNING), "stopped". `once`: only the next run of such a job (before the
        standing script of the same key)."""
        script = _script(statuses)
        with self._lock:
            self._seq += 1
            self._scripts.append(_Scripted(key, script, polls_per_status, once, self._seq))

    def on_run(self, callback: RunCallback) -> RunCallback:
        """Call `callback(job, run, environment)` (API dicts, the run's merged environment) when a run
        is created, before create_job_run answers. It may return a status script or an outcome to use
        for that run; if it raises, the run ends ENGINE_FAILED (the error lands in `callback_errors`)."""
        with self._lock:
            self._callbacks.append(callback)
        return callback

    def on_worker(self, starter: WorkerStarter) -> WorkerStarter:
        """Start each launched worker with `starter(worker, environment)` (a Popen, in its own session)."""
        with self._lock:
            self.worker_engines.starter = starter
        return starter

    def add_engine(self, project_id: str | None = None) -> Engine:
        """Register a job run's engine; its environment for the workers API is `engine_env(engine)`."""
        with self._lock:
            engine = Engine(self.new_id(), project_id or self.project_id, "job")
            self.worker_engines.engines[engine.id] = engine
            return engine

    def engine_env(self, engine: Engine) -> dict[str, str]:
        with self._lock:
            return self.worker_engines.engine_env(engine)

    def end_engine(self, engine: Engine) -> list[FakeWorker]:
        """The engine's run ended: stop the workers it left running (recorded in `stragglers`)."""
        with self._lock:
            left = self.worker_engines.end_engine(engine.id)
        for worker in left:
            stop(worker)
        return left

    @property
    def stragglers(self) -> list[FakeWorker]:
        with self._lock:
            return list(self.worker_engines.stragglers)

    def inject(
        self,
        rate: float = 0.2,
        kinds: Iterable[str] = ("429", "503", "reset", "slow"),
        seed: int | None = None,
        *,
        slow_delay: float = 0.2,
        retry_after: int | Sequence[int] = (0, 1),
        operations: Iterable[str] | None = None,
    ) -> None:
        """Make `rate` of the requests (of `operations`, default all) fail with one of `kinds`: "429"
        (with Retry-After, drawn from `retry_after`), "500"/"502"/"503"/"504", "reset" (the connection
        is dropped without an answer) or "slow" (answered normally after `slow_delay` seconds). The
        draws come from `seed`, so a run of requests in one order always gets the same faults.
        `inject(0)` turns it off."""
        kinds = tuple(kinds)
        for kind in kinds:
            _check_kind(kind)
        with self._lock:
            self._inject_rate = rate
            self._inject_kinds = kinds
            self._inject_rng = random.Random(seed)
            self._inject_ops = frozenset(operations) if operations is not None else None
            self._slow_delay = slow_delay
            self._retry_after = (retry_after,) if isinstance(retry_after, int) else tuple(retry_after)

    def fail_next(
        self,
        n: int = 1,
        status: int | str = 503,
        *,
        operation: str | Iterable[str] | None = None,
        fault_after_effect: bool = False,
        delay: float | None = None,
        retry_after: int = 0,
    ) -> None:
        """The next `n` requests (of `operation`, default any) fail with `status`: an HTTP status
        (4xx/5xx) or "reset" or "slow". These go before any injected fault. With
        `fault_after_effect`, the request takes effect first and the fault is answered after (a
        created job whose answer the client never gets)."""
        kind = str(status)
        if kind not in ("reset", "slow") and not (kind.isdigit() and 400 <= int(kind) <= 599):
            raise ValueError(f"not a fault: {status!r}")
        ops = frozenset([operation] if isinstance(operation, str) else operation) if operation else None
        fault = _Fault(kind, fault_after_effect, self._slow_delay if delay is None else delay, retry_after)
        with self._lock:
            self._fail.extend([(fault, ops)] * n)

    def clear_faults(self) -> None:
        with self._lock:
            self._fail.clear()
            self._inject_rate = 0.0

    def reset_counters(self) -> None:
        """Forget the `calls` counters and the `requests` log."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()

    # --- helpers for tests -----------------------------------------------------------------------
    def jobs_named(self, name: str, project_id: str | None = None) -> list[FakeJob]:
        with self._lock:
            project_id = project_id or self.project_id
            return [j for j in self.jobs.values() if j.name == name and j.project_id == project_id]

    def runs_of(self, job: FakeJob | str) -> list[FakeRun]:
        job_id = job.id if isinstance(job, FakeJob) else job
        with self._lock:
            return [r for r in self.runs.values() if r.job_id == job_id]

    def env(self) -> dict[str, str]:
        """What a client reads inside CML (CDSW_API_URL is the v1 URL there; clients use its host)."""
        return {"CDSW_API_URL": self.url + "/api/v1", "CDSW_APIV2_KEY": self.api_key, "CDSW_PROJECT_ID": self.project_id}

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (the API is under `url + "/api/v2"`)."""
        assert self._server is not None, "use FakeCML as a context manager (or call start())"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v2"

    def start(self) -> FakeCML:
        fake = self

        class Handler(_Handler):
            cml = fake

        server = _Server((self._host, self._port), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-cml", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeCML:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling ------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, auth: str | None, raw_body: bytes) -> _Response:
        split = urlsplit(raw_path)
        path = split.path
        query_lists = parse_qs(split.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in query_lists.items()}
        body: Any = None
        malformed = False
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except ValueError:
                body, malformed = raw_body.decode("utf-8", "replace"), True
        routed = route(method, path)
        operation = routed[0] if isinstance(routed, tuple) else "unknown"
        with self._lock:
            self.calls[operation] += 1
            fault = self._decide_fault(operation)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind != "slow" and not fault.after_effect:
            response = self._fault_response(fault)
        else:
            try:
                response = self._dispatch(routed, auth, query_lists, body, raw_body, malformed)
            except ApiError as e:
                response = _error(e.status, e.message)
            except Exception as e:  # a bug in the fake: answer it rather than drop the connection
                with self._lock:
                    self.server_errors.append(e)
                response = _error(500, f"fake CML error: {e!r}")
            if fault is not None and fault.after_effect:
                response = self._fault_response(fault)
        with self._lock:
            self.requests.append(
                Request(method, path, response.status, body, operation, query, fault.kind if fault else None)
            )
        return response

    def _decide_fault(self, operation: str) -> _Fault | None:
        for i, (fault, ops) in enumerate(self._fail):
            if ops is None or operation in ops:
                del self._fail[i]
                return fault
        if self._inject_rate <= 0 or not self._inject_kinds:
            return None
        if self._inject_ops is not None and operation not in self._inject_ops:
            return None
        rng = self._inject_rng
        if rng.random() >= self._inject_rate:
            return None
        kind = rng.choice(self._inject_kinds)
        return _Fault(kind, False, self._slow_delay, rng.choice(self._retry_after))

    @staticmethod
    def _fault_response(fault: _Fault) -> _Response:
        if fault.kind == "reset":
            return _RESET
        status = int(fault.kind)
        if status == 429:
            return _error(429, "rate limit exceeded, retry later", {"Retry-After": str(fault.retry_after)})
        if status in (502, 503, 504):
            return _gateway_error(status)
        return _error(status, "injected fault")

    def _dispatch(
        self, routed: tuple[str, dict[str, str]] | ApiError, auth: str | None,
        query: dict[str, list[str]], body: Any, raw_body: bytes, malformed: bool,
    ) -> _Response:
        scheme, _, key = (auth or "").strip().partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            raise ApiError(401, "Unauthorized: a valid API key is required (authorization: Bearer <key>)")
        if isinstance(routed, ApiError):
            raise routed
        operation, params = routed
        if malformed:
            raise _bad("invalid JSON in the request body")
        if operation.startswith("list_"):
            for name, values in query.items():
                if name not in LIST_PARAMS:
                    raise _bad(f'unknown query parameter "{name}"')
                if len(values) > 1:
                    raise _bad(f'query parameter "{name}" given more than once')
        elif query:
            raise _bad(f'unknown query parameter "{next(iter(query))}"')
        if operation.startswith(("get_", "list_", "delete_")) and raw_body.strip():
            raise _bad(f"{operation} takes no body")
        flat = {k: v[-1] for k, v in query.items()}
        with self._lock:
            if "project_id" in params and params["project_id"] not in self.projects:
                raise _not_found("project", params["project_id"])
        handler: Callable[[dict[str, str], dict[str, str], Any], _Response] = getattr(self, "_op_" + operation)
        return handler(params, flat, body)

    # --- lookups (under the lock) ------------------------------------------------------------------
    def _job(self, params: dict[str, str]) -> FakeJob:
        job = self.jobs.get(params["job_id"])
        if job is None or job.project_id != params["project_id"]:
            raise _not_found("job", params["job_id"])
        return job

    def _run(self, params: dict[str, str]) -> FakeRun:
        job = self._job(params)
        run = self.runs.get(params["run_id"])
        if run is None or run.job_id != job.id:
            raise _not_found("job run", params["run_id"])
        return run

    def _model(self, params: dict[str, str]) -> FakeModel:
        model = self.models.get(params["model_id"])
        if model is None or model.project_id != params["project_id"]:
            raise _not_found("model", params["model_id"])
        return model

    def _build(self, params: dict[str, str]) -> FakeBuild:
        model = self._model(params)
        build = self.builds.get(params["build_id"])
        if build is None or build.model_id != model.id:
            raise _not_found("model build", params["build_id"])
        return build

    def _deployment(self, params: dict[str, str]) -> FakeDeployment:
        build = self._build(params)
        deployment = self.deployments.get(params["deployment_id"])
        if deployment is None or deployment.build_id != build.id:
            raise _not_found("model deployment", params["deployment_id"])
        return deployment

    def _latest(self, job: FakeJob) -> dict[str, Any] | None:
        """The job's latest run, as list_jobs and get_job show it (`latest`); showing it observes it."""
        runs = [r for r in self.runs.values() if r.job_id == job.id]
        if not runs:
            return None
        self._observe_run(runs[-1])
        return runs[-1].to_api()

    @staticmethod
    def _same(request: str, body: dict[str, Any], params: dict[str, str], *names: str) -> None:
        for name in names:
            if name in body and body[name] != params[name]:
                raise _bad(f'field "{name}" in {request} ({body[name]}) differs from the path ({params[name]})')

    # --- listing -----------------------------------------------------------------------------------
    def _page(
        self, op: str, items: list[Any], query: dict[str, str], render: Callable[[Any], dict[str, Any]],
    ) -> tuple[list[Any], str]:
        """The page of `items` the query asks for (filtered, sorted) and the next page's token."""
        filter_keys, sortable = LISTS[op]
        rendered = [(item, render(item)) for item in items]
        if query.get("search_filter"):
            try:
                wanted = json.loads(query["search_filter"])
            except ValueError:
                raise _bad("invalid search_filter: not JSON") from None
            if not isinstance(wanted, dict):
                raise _bad("invalid search_filter: expected a JSON object")
            for key, value in wanted.items():
                if key not in filter_keys:
                    raise _bad(f'invalid search_filter: unknown key "{key}" (known: {", ".join(sorted(filter_keys))})')
                rendered = [(i, r) for i, r in rendered if self._matches(_dig(r, filter_keys[key]), value)]
        if query.get("sort"):
            sort = query["sort"]
            key = sort.lstrip("+-")
            if key not in sortable:
                raise _bad(f'invalid sort: unknown field "{key}"')
            rendered.sort(key=lambda ir: ir[1][key], reverse=sort.startswith("-"))
        size_text = query.get("page_size") or "0"
        try:
            size = int(size_text)
        except ValueError:
            raise _bad(f'invalid page_size "{size_text}": expected an integer') from None
        if size < 0:
            raise _bad("invalid page_size: must not be negative")
        size = size or self.page_size
        fingerprint = hashlib.sha1(
            json.dumps([op, query.get("search_filter", ""), query.get("sort", "")]).encode()
        ).hexdigest()[:12]
        offset = _read_token(query["page_token"], fingerprint) if query.get("page_token") else 0
        page = rendered[offset : offset + size]
        token = _make_token(offset + size, fingerprint) if offset + size < len(rendered) else ""
        return [item for item, _ in page], token

    def _matches(self, actual: Any, wanted: Any) -> bool:
        if self.search_match == "contains" and isinstance(actual, str) and isinstance(wanted, str):
            return wanted.lower() in actual.lower()
        return bool(actual == wanted)

    # --- projects, jobs ----------------------------------------------------------------------------
    def _op_get_project(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            return _json(200, self.projects[params["project_id"]])

    def _op_list_jobs(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.project_id == params["project_id"]]
            page, token = self._page("list_jobs", jobs, query, lambda j: j.to_api())
            return _json(200, {"jobs": [j.to_api(self._latest(j)) for j in page], "next_page_token": token})

    def _op_get_job(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            job = self._job(params)
            return _json(200, job.to_api(self._latest(job)))

    def _op_create_job(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "CreateJobRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id")
        _require(request, fields, "name", "script")
        if not fields.get("kernel"):
            _require(request, fields, "runtime_identifier")
        with self._lock:
            if fields.get("parent_id") and self.jobs.get(fields["parent_id"]) is None:
                raise _not_found("parent job", fields["parent_id"])
            fields.pop("project_id", None)
            job = FakeJob(self.new_id(), params["project_id"], **fields)
            self.jobs[job.id] = job
            return _json(200, job.to_api(None))

    def _op_delete_job(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            job = self._job(params)
            del self.jobs[job.id]
            for run_id in [r.id for r in self.runs.values() if r.job_id == job.id]:
                del self.runs[run_id]
            return _json(200, {})

    def _script_for(self, job: FakeJob) -> tuple[tuple[str, ...], int]:
        best: _Scripted | None = None
        best_rank: tuple[int, int, int, int] = (-1, -1, -1, -1)
        for s in self._scripts:
            if s.key in (job.id, job.name):
                exact = 1
            elif job.name.startswith(s.key):
                exact = 0
            else:
                continue
            rank = (exact, len(s.key), int(s.once), s.seq)
            if rank > best_rank:
                best, best_rank = s, rank
        if best is None:
            return OUTCOMES["succeed"], self.polls_per_status
        if best.once:
            self._scripts.remove(best)
        return best.statuses, best.per or self.polls_per_status

    def _op_create_job_run(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "CreateJobRunRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id", "job_id")
        with self._lock:
            job = self._job(params)
            statuses, per = self._script_for(job)
            run = FakeRun(
                list(statuses), per, id=self.new_id(), job_id=job.id, project_id=job.project_id,
                job_name=job.name, cpu=job.cpu, memory=job.memory, nvidia_gpu=job.nvidia_gpu,
                arguments=fields.get("arguments", job.arguments),
                environment=dict(job.environment) | fields.get("environment", {}),
                runtime_identifier=job.runtime_identifier, kernel=job.kernel,
            )
            run.stamp(run.status)
            self.runs[run.id] = run
            callbacks = list(self._callbacks)
            job_api, run_api, env = job.to_api(None), run.to_api(), dict(run.environment)
        for callback in callbacks:  # outside the lock: a callback may take its time
            try:
                override = callback(job_api, run_api, env)
            except Exception as e:
                with self._lock:
                    self.callback_errors.append(e)
                    if run.script[-1] not in TERMINAL or run.script[-1] == SUCCEEDED:
                        run.script = [s for s in run.script if s not in TERMINAL] + [FAILED]
                continue
            if override is not None:
                with self._lock:
                    run.restart(_script(override))
                    run.history.clear()
                    run.stamp(run.status)
        with self._lock:
            return _json(200, run.to_api())

    def _observe_run(self, run: FakeRun) -> None:
        changed = run.observe()
        if changed is not None:
            run.stamp(changed)

    def _op_list_job_runs(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            job = self._job(params)
            runs = [r for r in self.runs.values() if r.job_id == job.id]
            page, token = self._page("list_job_runs", runs, query, lambda r: r.to_api())
            for run in page:
                self._observe_run(run)
            return _json(200, {"job_runs": [r.to_api() for r in page], "next_page_token": token})

    def _op_get_job_run(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            run = self._run(params)
            self._observe_run(run)
            return _json(200, run.to_api())

    def _op_stop_job_run(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "StopJobRunRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id", "job_id", "run_id")
        with self._lock:
            run = self._run(params)
            if run.status not in TERMINAL and run.status != STOPPING:
                run.restart([STOPPING, STOPPED])
                run.stamp(STOPPING)
            return _json(200, run.to_api())

    # --- workers -----------------------------------------------------------------------------------
    def _engine(self, params: dict[str, str]) -> Engine:
        engine = self.worker_engines.engines.get(params["engine_id"])
        if engine is None or engine.project_id != params["project_id"]:
            raise _not_found("engine", params["engine_id"])
        return engine

    def _op_launch_workers(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "LaunchWorkersRequest"
        fields = check_body(request, {} if body is None else body)
        _require(request, fields, "cpu", "memory")
        if not fields.get("script") and not fields.get("code"):
            raise _bad(f"{request}: a worker runs a script or code; neither was given")
        if int(fields.get("n") or 1) < 1:
            raise _bad(f"{request}: n must be at least 1")
        with self._lock:
            launched = self.worker_engines.launch(self._engine(params), fields, self.new_id, now_rfc3339())
            return _json(200, {"workers": [w.to_api() for w in launched]})

    def _op_list_workers(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            engine = self._engine(params)
            return _json(200, {"workers": [w.to_api() for w in self.worker_engines.of(engine.id)]})

    def _op_stop_worker(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        check_body("StopWorkerRequest", {} if body is None else body)
        with self._lock:
            engine = self._engine(params)
            worker = self.worker_engines.workers.get(params["worker_id"])
            if worker is None or worker.master_id != engine.id:
                raise _not_found("worker", params["worker_id"])
        stop(worker)  # outside the lock: it waits for the process to end
        with self._lock:
            return _json(200, worker.to_api())

    # --- models ------------------------------------------------------------------------------------
    def _op_list_models(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            models = [m for m in self.models.values() if m.project_id == params["project_id"]]
            page, token = self._page("list_models", models, query, lambda m: m.to_api())
            return _json(200, {"models": [m.to_api() for m in page], "next_page_token": token})

    def _op_get_model(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            return _json(200, self._model(params).to_api())

    def _op_create_model(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "CreateModelRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id")
        _require(request, fields, "name")
        with self._lock:
            registered = fields.get("registered_model_id")
            if registered and registered not in self.registered_models:
                raise _not_found("registered model", registered)
            fields.pop("project_id", None)
            model = FakeModel(self.new_id(), params["project_id"], access_key=self.new_id().replace("-", ""), **fields)
            self.models[model.id] = model
            return _json(200, model.to_api())

    def _op_list_model_builds(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            model = self._model(params)
            builds = [b for b in self.builds.values() if b.model_id == model.id]
            page, token = self._page("list_model_builds", builds, query, lambda b: b.to_api())
            for build in page:
                self._observe_build(build)
            return _json(200, {"model_builds": [b.to_api() for b in page], "next_page_token": token})

    def _op_get_model_build(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            build = self._build(params)
            self._observe_build(build)
            return _json(200, build.to_api())

    def _observe_build(self, build: FakeBuild) -> None:
        changed = build.observe()
        if changed in BUILD_TERMINAL:
            build.built_at = now_rfc3339()
        if changed == "built" and build.auto_deploy_model:
            config = build.auto_deployment_config
            self._new_deployment(build, config)

    def _op_create_model_build(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "CreateModelBuildRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id", "model_id")
        if not fields.get("registered_model_version_id"):
            _require(request, fields, "file_path", "function_name")
        if not fields.get("kernel"):
            _require(request, fields, "runtime_identifier")
        with self._lock:
            model = self._model(params)
            version = fields.get("registered_model_version_id")
            if version and not any(
                v["model_version_id"] == version for m in self.registered_models.values() for v in m.versions
            ):
                raise _not_found("registered model version", version)
            fields.pop("project_id", None)
            fields.pop("model_id", None)
            number = 1 + sum(1 for b in self.builds.values() if b.model_id == model.id)
            build = FakeBuild(
                list(self.build_statuses), self.polls_per_status, id=self.new_id(), project_id=model.project_id,
                model_id=model.id, build_number=number, **fields,
            )
            self.builds[build.id] = build
            return _json(200, build.to_api())

    def _new_deployment(self, build: FakeBuild, config: dict[str, Any]) -> FakeDeployment:
        deployment = FakeDeployment(
            list(self.deployment_statuses), self.polls_per_status, id=self.new_id(), project_id=build.project_id,
            model_id=build.model_id, build_id=build.id, **config,
        )
        self.deployments[deployment.id] = deployment
        return deployment

    def _op_list_model_deployments(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            build = self._build(params)
            deployments = [d for d in self.deployments.values() if d.build_id == build.id]
            page, token = self._page("list_model_deployments", deployments, query, lambda d: d.to_api())
            for deployment in page:
                deployment.observe()
            return _json(200, {"model_deployments": [d.to_api() for d in page], "next_page_token": token})

    def _op_get_model_deployment(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            deployment = self._deployment(params)
            deployment.observe()
            return _json(200, deployment.to_api())

    def _op_create_model_deployment(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "CreateModelDeploymentRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id", "model_id", "build_id")
        with self._lock:
            build = self._build(params)
            if build.status != "built":
                raise ApiError(400, f"model build {build.id} is {build.status}, not built")
            config = {k: v for k, v in fields.items() if k in SHORT_CREATE_MODEL_DEPLOYMENT}
            return _json(200, self._new_deployment(build, config).to_api())

    def _op_stop_model_deployment(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        request = "StopModelDeploymentRequest"
        fields = check_body(request, {} if body is None else body)
        self._same(request, fields, params, "project_id", "model_id", "build_id", "deployment_id")
        with self._lock:
            deployment = self._deployment(params)
            if deployment.status not in ("stopped", "failed", "stopping"):
                deployment.restart(["stopping", "stopped"])
                deployment.stopped_at = now_rfc3339()
            return _json(200, deployment.to_api())

    # --- registry ----------------------------------------------------------------------------------
    def _op_list_registered_models(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            models = list(self.registered_models.values())
            page, token = self._page("list_registered_models", models, query, lambda m: m.to_api())
            return _json(200, {"models": [m.to_api() for m in page], "next_page_token": token})

    def _op_get_registered_model(self, params: dict[str, str], query: dict[str, str], body: Any) -> _Response:
        with self._lock:
            model = self.registered_models.get(params["model_id"])
            if model is None:
                raise _not_found("registered model", params["model_id"])
            return _json(200, model.to_api())


def _scalars(sample: dict[str, Any]) -> frozenset[str]:
    return frozenset(k for k, v in sample.items() if isinstance(v, str | int | float))


def _keys(*names: str, **aliases: str) -> dict[str, str]:
    return {n: n for n in names} | aliases


# list operation -> (search_filter key -> the dotted field it matches, the fields `sort` takes)
LISTS: dict[str, tuple[dict[str, str], frozenset[str]]] = {
    "list_jobs": (
        _keys("name", "script", "type", "paused", "description", "creator.email", "creator.name", "creator.username"),
        _scalars(FakeJob("", "", "", "").to_api()),
    ),
    "list_job_runs": (
        _keys("status", "job_id", "arguments", "runtime_identifier", "creator.username"),
        _scalars(FakeRun(["x"]).to_api()),
    ),
    "list_models": (_keys("name", "description", "registered_model_id"), _scalars(FakeModel("", "", "").to_api())),
    "list_model_builds": (_keys("status", "comment", "runtime_identifier"), _scalars(FakeBuild(["x"]).to_api())),
    "list_model_deployments": (_keys("status"), _scalars(FakeDeployment(["x"]).to_api())),
    "list_registered_models": (
        _keys("description", model_name="name", **{"creator.user_name": "creator.user_name"}),
        _scalars(FakeRegisteredModel("", "").to_api()),
    ),
}


def _dig(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _make_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(f"{fingerprint}:{offset}".encode()).decode().rstrip("=")


def _read_token(token: str, fingerprint: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        seen, _, offset = text.partition(":")
        value = int(offset)
    except ValueError:
        raise _bad("invalid page_token") from None
    if seen != fingerprint or value < 0:
        raise _bad("invalid page_token: it belongs to another query")
    return value


def _script(statuses: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(statuses, str):
        if statuses not in OUTCOMES:
            raise ValueError(f"unknown outcome {statuses!r}: one of {sorted(OUTCOMES)} or a list of statuses")
        return OUTCOMES[statuses]
    script = tuple(statuses)
    if not script or any(s not in ENGINE_STATUSES for s in script):
        raise ValueError(f"a status script is a non-empty list of {ENGINE_STATUSES}")
    return script


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}: one of {FAULT_KINDS}")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent connects (a 1 s SYN retry each)
    daemon_threads = True
    block_on_close = False  # never wait for a client's open connection on exit

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that hung up or reset its side: nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    cml: FakeCML
    server_version = "FakeCML/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API (a dropped connection then matters)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        response = self.cml.handle(method, self.path, self.headers.get("Authorization"), raw)
        if response is _RESET:
            self.close_connection = True
            try:  # an RST rather than a FIN once the socket is closed
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake CML API v2 until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--project-id", default=None)
    parser.add_argument("--templates", action="store_true", help="add the Studio's template jobs")
    parser.add_argument("--polls-per-status", type=int, default=1)
    parser.add_argument("--inject-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    cml = FakeCML(
        args.api_key, project_id=args.project_id, polls_per_status=args.polls_per_status,
        host=args.host, port=args.port,
    )
    if args.templates:
        cml.add_studio_templates()
    if args.inject_rate:
        cml.inject(args.inject_rate, seed=args.seed, retry_after=0, slow_delay=0.1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cml:
        for name, value in cml.env().items():
            print(f"export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
