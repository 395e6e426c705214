"""`make demo-cml`: the demo project on the CML backend, without CML.

Starts the fake CML API (tests/fakes/cml_server.py, with the Studio's template jobs) in this process,
with an engine that runs each job run's script for real (tests/fakes/cml_engine.RunnerEngine: the
real runners under `runners/`, in this folder, as a CML engine would in the project). Then, as
subprocesses with the fake's API settings (`cml.env()`):

    ftctl apply --offline --auto-approve --wait --backend cml specs/demo
    ftctl status --offline specs/demo

and stops the server. Run from the repository root after `make install-train` and building the tiny
model (`make demo-cml` does both).

A real run can take longer than the CML client waits for an answer (30 s, not configurable): about
10 s per job here, 20-60 s on a slow CPU. So create_job_run does not wait for it: the run's script
starts in a thread, the run shows ENGINE_RUNNING until the script ends, then ENGINE_SUCCEEDED (or
ENGINE_FAILED when it exits non-zero); its result file is written by then. The demo keeps its own store, job folders and MLflow store under .app/cml-demo/ (emptied
on each run: the fake CML starts empty), so it never mixes with `make demo`'s local jobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes.cml_engine import RunnerEngine
from tests.fakes.cml_server import FAILED, RUNNING, SUCCEEDED, TERMINAL, FakeCML

DEMO_DIR = Path(".app/cml-demo")
BIN = Path(sys.executable).parent


class BackgroundEngine:
    """Runs each new job run with `engine` in a thread; the run stays ENGINE_RUNNING until it ends."""

    def __init__(self, cml: FakeCML, engine: RunnerEngine) -> None:
        self.cml, self.engine = cml, engine
        self.threads: list[threading.Thread] = []
        self.timings: list[tuple[str, float, str]] = []  # (job name, seconds, final status)

    def __call__(self, job: dict[str, Any], run: dict[str, Any], environment: dict[str, str]) -> str:
        thread = threading.Thread(target=self._run, args=(job, run, environment), name=f"run-{run['id']}", daemon=True)
        self.threads.append(thread)
        thread.start()
        return "hang"  # SCHEDULING, STARTING, RUNNING: until _run says how it ended

    def _run(self, job: dict[str, Any], run: dict[str, Any], environment: dict[str, str]) -> None:
        start = time.perf_counter()
        try:
            failed = self.engine(job, run, environment) is not None
        except Exception as exc:  # the engine itself broke (a timeout): the run fails, as in CML
            self.cml.callback_errors.append(exc)
            failed = True
        final = FAILED if failed else SUCCEEDED
        with self.cml._lock:  # the fake has no call to end a run: change its script as its own handlers do
            fake_run = self.cml.runs.get(run["id"])
            if fake_run is not None and fake_run.status not in TERMINAL and fake_run.status != "ENGINE_STOPPING":
                fake_run.restart([RUNNING, final])  # the next observation shows the end (and stamps it)
        self.timings.append((str(job["name"]), time.perf_counter() - start, final))

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))


def main() -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    ftctl = str(BIN / "ftctl") if (BIN / "ftctl").exists() else "ftctl"
    with FakeCML() as cml:
        cml.add_studio_templates()
        engine = BackgroundEngine(cml, RunnerEngine(Path.cwd()))
        cml.on_run(engine)
        env = {k: v for k, v in os.environ.items() if k != "FTCTL_BACKEND"} | cml.env() | {
            "FTCTL_CML_RUNNERS_DIR": "runners",  # the real runners, run by the engine above
            "FTCTL_JOBS_DIR": str(DEMO_DIR / "jobs"),
            "FINE_TUNING_STUDIO_SQLITE_DB": str(DEMO_DIR / "state.db"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{DEMO_DIR}/mlflow.db",
        }
        print(f"fake CML API on {cml.api_url} (project {cml.project_id}); store, jobs and MLflow under {DEMO_DIR}/",
              flush=True)
        start = time.perf_counter()
        commands = [[ftctl, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--backend", "cml", "specs/demo"],
                    [ftctl, "status", "--offline", "specs/demo"]]
        codes = []
        for argv in commands:
            print(f"$ {' '.join(['ftctl', *argv[1:]])}", flush=True)
            codes.append(subprocess.run(argv, env=env).returncode)
            if codes[-1] != 0:
                break
        engine.join(timeout=60)
        print(f"\nCML job runs (each a real runner, run by the fake's engine), {time.perf_counter() - start:.0f} s in all:")
        for name, seconds, final in engine.timings:
            print(f"  {name}: {final} after {seconds:.1f} s")
        print("CML API calls: " + ", ".join(f"{op} {n}" for op, n in sorted(cml.calls.items())))
        problems = [*cml.callback_errors, *cml.server_errors]
        for problem in problems:
            print(f"fake CML: {problem!r}", file=sys.stderr)
        for record in engine.engine.runs:
            if record["code"] != 0:
                print(f"{record['job']} exited {record['code']}:\n{record['output']}", file=sys.stderr)
    return next((c for c in codes if c != 0), 1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
