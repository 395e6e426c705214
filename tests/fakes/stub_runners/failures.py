"""The stub runners' side file of planned failures: a test names a job and the error class it is to
fail with (`fail_job`), and the stub runner of that job fails so (`planned`), through the runners'
own failure hook (runners/jobio.simulated_failure). It lives in the project folder, where every
backend runs its runners, and is no part of the job input (the published contract). Stdlib only."""

from __future__ import annotations

import json
from pathlib import Path

FAILURES = "stub-failures.json"  # {job name: error class}, in the project folder


def fail_job(project: Path, job_name: str, error_class: str) -> None:
    """Make the stub runners fail the job `job_name` with `error_class`."""
    path = project / FAILURES
    planned_now = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps({**planned_now, job_name: error_class}), encoding="utf-8")


def planned(job_name: str, project: Path = Path()) -> str | None:
    """The error class a test planned for this job, if any (a runner's project is its current directory)."""
    path = project / FAILURES
    return json.loads(path.read_text(encoding="utf-8")).get(job_name) if path.is_file() else None
