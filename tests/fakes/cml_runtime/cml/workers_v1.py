"""The fake CML runtime's workers API: `from cml.workers_v1 import launch_workers, ...` inside a job run
or a worker that the fake CML engine started.

The interface is CML's documented one (Cloudera docs, "Using workers API"):

- `launch_workers(n, cpu, memory, nvidia_gpu=0, kernel="python3", script="", code="",
  accelerator_label_id=None, resource_profile_id=None, resource_group_id=None, env={})`: starts `n`
  worker engines running `script` (a Python file; `code` when no script) with `env` added to their
  environment; returns a list of worker dicts (`id`, `status`, `ip_address`, ...).
- `list_workers()`: every worker this engine launched, as dicts.
- `await_workers(ids=None, wait_for_completion=True, timeout_seconds=60)`: waits until the workers
  (ids or worker dicts; all of this engine's when None) have exited successfully (or are running,
  when `wait_for_completion` is False); returns `{"workers": [...reached it], "failures": [...did
  not]}`. A worker that failed, was stopped, or had not got there by the timeout is a failure.
  `timeout_seconds=0`: no timeout.
- `stop_workers(*worker_id)`: stops the named workers (all of this engine's when none is named).

How it reaches the fake CML server is the fake's own (the real module's calls to CML are not a
public API): HTTP on the host of `CDSW_API_URL`, authorised by `CDSW_APIV2_KEY`, under
`/api/v2/projects/<CDSW_PROJECT_ID>/engines/<CDSW_ENGINE_ID>/workers`. Standard library only: a
runtime's package must not depend on what the job installs.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

POLL_S = 0.2  # how often await_workers looks again
DONE = "succeeded"
ENDED = frozenset({"succeeded", "failed", "stopped", "timedout"})


def launch_workers(n: int, cpu: float, memory: float, nvidia_gpu: int = 0, kernel: str = "python3", script: str = "",
                   code: str = "", accelerator_label_id: int | None = None, resource_profile_id: int | None = None,
                   resource_group_id: int | None = None, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    body = {"n": int(n), "cpu": float(cpu), "memory": float(memory), "nvidia_gpu": int(nvidia_gpu or 0), "kernel": kernel,
            "script": script, "code": code, "env": {str(k): str(v) for k, v in (env or {}).items()}}
    for name, value in (("accelerator_label_id", accelerator_label_id), ("resource_profile_id", resource_profile_id),
                        ("resource_group_id", resource_group_id)):
        if value is not None:
            body[name] = int(value)
    return list(_call("POST", "", body)["workers"])


def list_workers() -> list[dict[str, Any]]:
    return list(_call("GET", "")["workers"])


def await_workers(ids: Any = None, wait_for_completion: bool = True, timeout_seconds: float = 60) -> dict[str, list[dict[str, Any]]]:
    wanted = _ids(ids)
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    while True:
        mine = [w for w in list_workers() if wanted is None or w["id"] in wanted]
        reached = [w for w in mine if _reached(w, wait_for_completion)]
        hopeless = [w for w in mine if w not in reached and w["status"] in ENDED]
        if len(reached) + len(hopeless) == len(mine) or (deadline is not None and time.monotonic() >= deadline):
            return {"workers": reached, "failures": [w for w in mine if w not in reached]}
        time.sleep(POLL_S)


def stop_workers(*worker_id: Any) -> list[dict[str, Any]]:
    targets = _ids(list(worker_id)) if worker_id else {w["id"] for w in list_workers()}
    return [_call("POST", f"/{wid}:stop", {}) for wid in sorted(targets or ())]


def _reached(worker: dict[str, Any], wait_for_completion: bool) -> bool:
    status = worker["status"]
    return status == DONE if wait_for_completion else status == "running" or status == DONE


def _ids(ids: Any) -> set[str] | None:
    """Worker ids from an id, a worker dict, or a list of either; None for all."""
    if ids is None:
        return None
    items = ids if isinstance(ids, (list, tuple, set)) else [ids]
    return {str(item["id"]) if isinstance(item, dict) else str(item) for item in items}


def _call(method: str, suffix: str, body: dict[str, Any] | None = None) -> Any:
    api = urlsplit(os.environ["CDSW_API_URL"])
    path = f"/api/v2/projects/{os.environ['CDSW_PROJECT_ID']}/engines/{os.environ['CDSW_ENGINE_ID']}/workers{suffix}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api.scheme}://{api.netloc}{path}", data=data, method=method, headers={
        "authorization": f"Bearer {os.environ['CDSW_APIV2_KEY']}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"CML workers API: {method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc
