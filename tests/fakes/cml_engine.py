"""What CML does with a job run, for the fake CML server: run the job's script, for real.

`FakeCML.on_run(RunnerEngine(project_dir))` makes each new run execute `python <project>/<script>`
in the project folder with the run's environment (the job's, overridden by the run's), as a CML
engine does, before the run's status script plays. It runs synchronously, so by the time ftctl
sees the run finish, the runner's result file is there. A runner that exits non-zero turns the
run into ENGINE_FAILED. Used with the stub runners beside this file (fast, contract-true) by the
contract and end-to-end tests, and by `make demo-cml` with the real runners.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STUB_RUNNERS = Path(__file__).resolve().parent / "stub_runners"
# What a CML engine's environment has that a test machine's may not; the rest of ours is left out.
_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
         "HF_DATASETS_OFFLINE", "FTCTL_FORCE_OFFLINE", "OMP_NUM_THREADS")


@dataclass
class RunnerEngine:
    project_dir: Path
    python: str = sys.executable
    timeout_s: float = 300.0
    runs: list[dict[str, Any]] = field(default_factory=list)  # (job name, script, exit code) of every run

    def __call__(self, job: dict[str, Any], run: dict[str, Any], environment: dict[str, str]) -> str | None:
        script = self.project_dir / str(job["script"])
        env = {k: v for k, v in os.environ.items() if k in _KEEP} | environment
        done = subprocess.run([self.python, str(script)], cwd=self.project_dir, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=self.timeout_s)
        self.runs.append({"job": job["name"], "script": job["script"], "run": run["id"], "code": done.returncode,
                          "output": (done.stdout + done.stderr)[-2000:]})
        return None if done.returncode == 0 else "fail"
