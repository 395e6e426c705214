"""The fake backend: launches nothing, records each launch, and lets tests script the outcome.

Same interface and job folders as the local backend. A launched job stays `running` until a test
writes its `result.json` (any job-result document), then reads as succeeded or failed exactly as
a real one would. Selected with FTCTL_BACKEND=fake; the test suite uses it wherever a job's work
is beside the point, so store and plan tests never start real training.
"""

from __future__ import annotations

import time
from typing import Any

from reconciler.backends import read_json, write_json
from reconciler.backends.local import LocalBackend
from reconciler.runtime import JobObservation, JobState


class FakeBackend(LocalBackend):
    name = "fake"

    def _start(self, job_name: str, kind: str, job_input: dict[str, Any], attempt: int) -> JobObservation:
        folder = self.job_dir(job_name)
        if attempt > 1:
            self._archive(folder, attempt - 1)
        write_json(folder / "input.json", job_input)
        write_json(folder / "launch.json", {"pid": 0, "attempt": attempt, "kind": kind, "launched_at": time.time(), "fake": True})
        with open(folder / "launches.log", "a", encoding="utf-8") as log:  # tests count launches: never two per attempt
            log.write(f"{attempt}\n")
        (folder / "queued.json").unlink(missing_ok=True)
        return JobObservation(job_name, JobState.RUNNING, attempt, external_id=str(folder))

    def observe(self, job_name: str) -> JobObservation:
        folder = self.job_dir(job_name)
        launch = read_json(folder / "launch.json")
        refused = self.unadoptable(job_name, launch, folder)
        if refused:
            return refused
        if launch and not (folder / "result.json").exists():
            return JobObservation(job_name, JobState.RUNNING, int(launch.get("attempt", 1)),
                                  progress=read_json(folder / "progress.json"), external_id=str(folder))
        return super().observe(job_name)

    def running_count(self) -> int:
        return 0  # fake jobs take no slot

    def cancel(self, job_name: str) -> bool:
        folder = self.job_dir(job_name)
        if not read_json(folder / "launch.json") or (folder / "result.json").exists():
            return False
        write_json(folder / "result.json", {"contract_version": 1, "job_name": job_name, "status": "failed",
                                             "error": {"error_class": "cancelled", "type": "Cancelled", "message": "cancelled (ftctl cancel)"},
                                             "started_at": 0, "finished_at": time.time()})
        return True
