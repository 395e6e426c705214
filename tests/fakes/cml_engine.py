"""What CML does with a job run, for the fake CML server: run the job's script, for real.

`FakeCML.on_run(RunnerEngine(project_dir))` makes each new run execute `python <project>/<script>`
in the project folder with the run's environment (the job's, overridden by the run's), as a CML
engine does, before the run's status script plays. It runs synchronously, so by the time ftctl
sees the run finish, the runner's result file is there. A runner that exits non-zero turns the
run into ENGINE_FAILED. Used with the stub runners beside this file (fast, contract-true) by the
contract and end-to-end tests, and by `make demo-cml` with the real runners.

Given the fake server (`RunnerEngine(project_dir, cml=cml)`), each run also gets an engine of its
own, as in CML: the environment a CML runtime has (`CDSW_ENGINE_ID`, `CDSW_IP_ADDRESS`, the API
settings) and the runtime's `cml` package (tests/fakes/cml_runtime, first on PYTHONPATH), so the
job can launch workers with `cml.workers_v1`; each worker is a real process in the project folder
(`start_worker`, in its own session so it can be stopped whole), its output kept in `worker_logs`.
When the run ends, the workers it left running are stopped (the server's `stragglers` lists them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fakes.cml_server import FakeCML
from tests.fakes.cml_workers import FakeWorker

STUB_RUNNERS = Path(__file__).resolve().parent / "stub_runners"
CML_RUNTIME = Path(__file__).resolve().parent / "cml_runtime"  # the runtime's `cml` package
# What a CML engine's environment has that a test machine's may not; the rest of ours is left out.
_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
         "HF_DATASETS_OFFLINE", "FTCTL_FORCE_OFFLINE", "OMP_NUM_THREADS")


@dataclass
class RunnerEngine:
    project_dir: Path
    python: str = sys.executable
    timeout_s: float = 300.0
    runs: list[dict[str, Any]] = field(default_factory=list)  # (job name, script, exit code) of every run
    cml: FakeCML | None = None  # the server: with it, runs get an engine and may launch workers
    worker_logs: dict[str, IO[bytes]] = field(default_factory=dict)  # worker id -> its output

    def __post_init__(self) -> None:
        if self.cml is not None:
            self.cml.on_worker(self.start_worker)

    def __call__(self, job: dict[str, Any], run: dict[str, Any], environment: dict[str, str]) -> str | None:
        script = self.project_dir / str(job["script"])
        engine = self.cml.add_engine(str(job["project_id"])) if self.cml is not None else None
        env = self._base_env() | (self.cml.engine_env(engine) if self.cml is not None and engine is not None else {})
        try:
            done = subprocess.run([self.python, str(script)], cwd=self.project_dir, env=env | environment,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.timeout_s)
        finally:
            if self.cml is not None and engine is not None:
                self.cml.end_engine(engine)
        self.runs.append({"job": job["name"], "script": job["script"], "run": run["id"], "code": done.returncode,
                          "output": (done.stdout + done.stderr)[-2000:]})
        return None if done.returncode == 0 else "fail"

    def start_worker(self, worker: FakeWorker, environment: dict[str, str]) -> subprocess.Popen[bytes]:
        """Run a launched worker's script (or code) in the project folder, as its own process group."""
        command = [self.python, str(self.project_dir / worker.script)] if worker.script else [self.python, "-c", worker.code]
        log = self.worker_logs[worker.id] = tempfile.TemporaryFile()  # noqa: SIM115 - read after the worker ends
        return subprocess.Popen(command, cwd=self.project_dir, env=self._base_env() | environment, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def worker_output(self, worker_id: str) -> str:
        log = self.worker_logs[worker_id]
        log.seek(0)
        return log.read().decode(errors="replace")

    def _base_env(self) -> dict[str, str]:
        """What a CML engine's environment has: ours, filtered; the runtime's `cml` package when serving workers."""
        env = {k: v for k, v in os.environ.items() if k in _KEEP}
        if self.cml is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CML_RUNTIME), env.get("PYTHONPATH", "")) if p)
        return env
