"""Engines and worker engines of the fake CML server: what `cml.workers_v1` (tests/fakes/cml_runtime)
talks to, with each worker a real process.

An engine is something CML runs code in: a job run's engine (registered by the fake engine that
runs it, `RunnerEngine`) or a worker engine. A job run's engine may launch workers; each gets its own
engine id and the environment CML gives a worker (`CDSW_ENGINE_ID`, `CDSW_ENGINE_TYPE=worker`,
`CDSW_MASTER_ID`, `CDSW_MASTER_IP`, `CDSW_IP_ADDRESS`, the API settings) plus the `env` it was
launched with, never its master's job environment (as in CML, a worker has what it is given). The
process is started by the `starter` the engine registers (`FakeCML.on_worker`); its status is read
off the process: `scheduling` until started, `running`, then `succeeded` (exit 0) or `failed`, or
`stopped` when stopped. Stopping sends SIGTERM to the worker's process group, then SIGKILL after
`STOP_GRACE_S`. When a job run's engine ends, the workers it left running are stopped, as CML
stops a session's workers when it exits, and recorded in `stragglers` (tests assert there are none:
the job itself should have stopped them).

Owned by the fake CML server (`FakeCML.workers`); every method is called under its lock except
`stop`, which waits on processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STOP_GRACE_S = 5.0
LOOPBACK = "127.0.0.1"


@dataclass
class Engine:
    id: str
    project_id: str
    kind: str  # "job" (a job run's engine) or "worker"
    master_id: str = ""  # a worker's master engine
    ip_address: str = LOOPBACK


@dataclass
class FakeWorker:
    id: str
    project_id: str
    master_id: str
    cpu: float
    memory: float
    nvidia_gpu: int = 0
    kernel: str = "python3"
    script: str = ""
    code: str = ""
    env: dict[str, str] = field(default_factory=dict)
    accelerator_label_id: int | None = None
    created_at: str = ""
    ip_address: str = LOOPBACK
    process: Any = None  # what the starter returned: a subprocess.Popen
    stopped: bool = False
    start_error: str = ""

    @property
    def status(self) -> str:
        if self.start_error:
            return "failed"
        if self.process is None:
            return "scheduling"
        code = self.process.poll()
        if code is None:
            return "stopping" if self.stopped else "running"
        return "stopped" if self.stopped else "succeeded" if code == 0 else "failed"

    def to_api(self) -> dict[str, Any]:
        code = self.process.poll() if self.process is not None else None
        return {"id": self.id, "project_id": self.project_id, "master_id": self.master_id, "status": self.status,
                "ip_address": self.ip_address, "cpu": self.cpu, "memory": self.memory, "nvidia_gpu": self.nvidia_gpu,
                "accelerator_label_id": self.accelerator_label_id, "kernel": self.kernel, "script": self.script,
                "code": self.code, "created_at": self.created_at, "exit_code": code}


WorkerStarter = Callable[[FakeWorker, dict[str, str]], Any]  # (worker, its whole environment) -> a Popen


@dataclass
class FakeWorkers:
    """The engines and workers of one fake CML server."""

    api_env: Callable[[], dict[str, str]]  # the API settings every engine gets (CDSW_API_URL, ...)
    engines: dict[str, Engine] = field(default_factory=dict)
    workers: dict[str, FakeWorker] = field(default_factory=dict)
    stragglers: list[FakeWorker] = field(default_factory=list)  # left running by a job run that ended
    starter: WorkerStarter | None = None

    def engine_env(self, engine: Engine) -> dict[str, str]:
        env = {**self.api_env(), "CDSW_PROJECT_ID": engine.project_id, "CDSW_ENGINE_ID": engine.id,
               "CDSW_ENGINE_TYPE": engine.kind, "CDSW_IP_ADDRESS": engine.ip_address}
        if engine.master_id:
            env |= {"CDSW_MASTER_ID": engine.master_id, "CDSW_MASTER_IP": self.engines[engine.master_id].ip_address}
        return env

    def launch(self, master: Engine, body: dict[str, Any], new_id: Callable[[], str], now: str) -> list[FakeWorker]:
        if self.starter is None:
            raise RuntimeError("no worker starter: the fake engine registers one (FakeCML.on_worker)")
        launched = []
        for _ in range(int(body.get("n") or 1)):
            worker = FakeWorker(new_id(), master.project_id, master.id, float(body["cpu"]), float(body["memory"]),
                                int(body.get("nvidia_gpu") or 0), str(body.get("kernel") or "python3"),
                                str(body.get("script") or ""), str(body.get("code") or ""), dict(body.get("env") or {}),
                                body.get("accelerator_label_id"), now)
            engine = Engine(worker.id, master.project_id, "worker", master.id)
            self.engines[engine.id] = engine
            self.workers[worker.id] = worker
            try:
                worker.process = self.starter(worker, self.engine_env(engine) | worker.env)
            except OSError as exc:
                worker.start_error = str(exc)
            launched.append(worker)
        return launched

    def of(self, master_id: str) -> list[FakeWorker]:
        return [w for w in self.workers.values() if w.master_id == master_id]

    def end_engine(self, engine_id: str) -> list[FakeWorker]:
        """A job run's engine ended: the workers it left running are stragglers (stop them after)."""
        left = [w for w in self.of(engine_id) if w.status in ("scheduling", "running")]
        self.stragglers.extend(left)
        self.engines.pop(engine_id, None)
        return left


def stop(worker: FakeWorker) -> None:
    """SIGTERM the worker's process group, SIGKILL it after STOP_GRACE_S (outside the server's lock)."""
    process = worker.process
    if process is None or process.poll() is not None:
        return
    worker.stopped = True
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE_S)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the starter starts each worker in its own session (its pid is the group's)
