"""Backends run jobs: `local` (subprocesses on this machine, the default) and `cml` (CML jobs and
model endpoints over the CML API v2); `fake` stands in for `local` in tests.

A backend launches a runner with a job-input document under a deterministic job name (its
idempotency key), observes it (`JobObservation`), cancels it, and says where its log is. Every
backend passes the same contract tests (tests/contract/).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from reconciler.jobinput import EVALUATION_FOLDER, records_its_input
from reconciler.runtime import JobObservation, JobState, RunnerKind

# A job name every backend can take as a folder and as a CML job name: no separators, no `..`.
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,199}")
INPUT_MISMATCH = "input_mismatch"  # the error class of a job found under a name its recorded input does not have


class BackendError(Exception):
    """A job could not be launched, observed or stopped."""


class Backend(Protocol):
    name: str

    def paths(self, job_name: str) -> dict[str, str]: ...
    def check_launch(self, job_name: str, kind: str, job_input: dict[str, Any]) -> None:
        """Raise BackendError for what `launch` would refuse (name, runner, outputs), touching nothing."""
    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1) -> JobObservation: ...
    def observe(self, job_name: str) -> JobObservation: ...
    def observe_many(self, job_names: Iterable[str]) -> dict[str, JobObservation]: ...
    def find(self, prefixes: Iterable[str]) -> list[str]: ...
    def start_queued(self) -> list[str]: ...
    def cancel(self, job_name: str) -> bool: ...
    def log_path(self, job_name: str) -> Path: ...
    def links(self, job_name: str, external_id: str) -> dict[str, str]: ...


def unadoptable(job_name: str, recorded: Any, *, attempt: int, external_id: str = "") -> JobObservation | None:
    """None when a found job's recorded input has the digest its name says (`jobinput.records_its_input`);
    else what the job is reported as: failed (`input_mismatch`), so nothing of it (its result, its
    adapter, its metrics) is adopted, and it is never launched again under that name."""
    if records_its_input(job_name, recorded):
        return None
    return JobObservation(job_name, JobState.FAILED, attempt, INPUT_MISMATCH,
                          "its recorded input is not the one its name says (edited or written by something else): not adopted; "
                          "replace the object (--replace Kind/name) to run it again", external_id=external_id)


def check_job_name(job_name: str) -> None:
    """Refuse a job name that is not a plain name (a separator, `..`, NUL, an absolute path)."""
    if not isinstance(job_name, str) or not JOB_NAME.fullmatch(job_name):
        raise BackendError(f"job name {str(job_name)[:80]!r} refused: letters, digits, - and _ only")


def check_runner(kind: str) -> None:
    """Refuse a runner outside the closed set (`runners/<kind>.py` is run)."""
    if kind not in {k.value for k in RunnerKind}:
        raise BackendError(f"job kind {str(kind)[:80]!r} refused: one of {', '.join(k.value for k in RunnerKind)}")


def check_outputs(job_input: dict[str, Any], folder: Path, cwd: Path | None = None) -> None:
    """Refuse a job input whose outputs are not in `folder`, the job's own (the runner writes there).
    Relative paths, in the input or the folder, are the runner's: from `cwd` (default: this directory)."""
    outputs = job_input.get("outputs")
    base = str(cwd or Path.cwd())

    def absolute(path: str) -> str:  # compared as text: `..` folded, no symlink followed (job_dir checked those)
        return os.path.normpath(os.path.join(base, path))

    own = absolute(str(folder))
    want = {"dir": own, "result": os.path.join(own, "result.json"), "progress": os.path.join(own, "progress.json"),
            "adapter_dir": os.path.join(own, "adapter"), "evaluation_dir": os.path.join(own, EVALUATION_FOLDER)}
    optional = {"adapter_dir", "evaluation_dir"}  # None when the job has none; evaluation_dir may be left out
    if not isinstance(outputs, dict) or not set(want) - {"evaluation_dir"} <= set(outputs) <= set(want) or any(
            not (isinstance(v, str) and "\0" not in v and absolute(v) == want[k]) and not (k in optional and v is None)
            for k, v in outputs.items()):
        raise BackendError(f"job input refused: its outputs are not in the job's folder {own}")


def read_json(path: Path) -> dict[str, Any]:
    """A job file's JSON object, or {} when it is missing, partial or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write a job file atomically (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, default=str), encoding="utf-8")
    os.replace(tmp, path)
