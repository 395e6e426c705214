"""What ftctl knows about jobs at run time, as plain values: `JobState` and `JobObservation`.

Backends observe their jobs and return these; the planner reads them to decide what to launch,
retry, register or export next; views show them. Pure values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

CONTRACT_VERSION: Literal[1] = 1  # of the job-input / job-result documents (see contract.py)
RETRYABLE = ("transient", "killed")  # error classes `retries: N` relaunches
BACKENDS = ("local", "cml")  # where jobs run


class RunnerKind(StrEnum):
    """The programs a job runs (`runners/<kind>.py`): the closed set every backend accepts."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    EXPORT = "export"


class JobState(StrEnum):
    NOT_LAUNCHED = "not launched"
    QUEUED = "queued"  # launched, waiting for a slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobObservation:
    job_name: str
    state: JobState
    attempt: int = 0
    error_class: str = ""
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    external_id: str = ""  # the backend's id for the run (local: the job folder; CML: job/run ids)
    job_id: str = ""  # the backend's own id of the job, where it has one (CML: the CML job's id)
    runtime_s: float = 0.0  # how long the run took, from its result (finished_at - started_at); 0 when not known

    def to_dict(self) -> dict[str, Any]:
        return {"job_name": self.job_name, "state": self.state.value, "attempt": self.attempt, "error_class": self.error_class,
                "message": self.message, "metrics": dict(self.metrics), "artifacts": dict(self.artifacts),
                "progress": dict(self.progress), "external_id": self.external_id,
                **({"job_id": self.job_id} if self.job_id else {}), **({"runtime_s": self.runtime_s} if self.runtime_s else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobObservation:
        return cls(str(data["job_name"]), JobState(data["state"]), int(data.get("attempt") or 0), str(data.get("error_class") or ""),
                   str(data.get("message") or ""), dict(data.get("metrics") or {}), dict(data.get("artifacts") or {}),
                   dict(data.get("progress") or {}), str(data.get("external_id") or ""), str(data.get("job_id") or ""),
                   float(data.get("runtime_s") or 0.0))

    @staticmethod
    def runtime_of(result: dict[str, Any]) -> float:
        """The seconds a job result says its run took (0.0 when it does not say)."""
        started, finished = result.get("started_at"), result.get("finished_at")
        if not isinstance(started, int | float) or not isinstance(finished, int | float) or not started:
            return 0.0
        return max(0.0, float(finished) - float(started))

    @property
    def studio_job_id(self) -> str:
        """What the Studio's job row records of this job (`cml_job_id`): the CML job's id on CML, which
        the Studio's job pages match against the project's CML jobs; the job name elsewhere."""
        return self.job_id or self.job_name

    @property
    def resumed_from_step(self) -> int | None:
        """The step a training resumed at from its checkpoint (its result once it ended, its progress
        while it runs); None when it trained from the start."""
        step = self.metrics.get("resumed_from_step", self.progress.get("resumed_from_step"))
        return int(step) if isinstance(step, int | float) and not isinstance(step, bool) and step > 0 else None

    def summary(self) -> str:
        resumed = f"resumed at step {self.resumed_from_step}" if self.resumed_from_step else ""
        if self.state is JobState.FAILED:
            return f"failed ({self.error_class or 'unknown'}): {self.message}"
        if self.state is JobState.RUNNING and self.progress:
            p = self.progress
            if p.get("stage") in ("succeeded", "failed"):
                return "running: finishing"
            parts = [f"step {p.get('step')}/{p.get('total_steps')}" if p.get("total_steps") else str(p.get("stage", ""))]
            if p.get("epoch") is not None:
                parts.append(f"epoch {p['epoch']:.2g}")
            if p.get("loss") is not None:
                parts.append(f"loss {p['loss']:.4g}")
            if p.get("eta_s") is not None:
                parts.append(f"ETA {p['eta_s']:.0f} s")
            return "running: " + ", ".join(x for x in [*parts, resumed] if x)
        if self.state is JobState.SUCCEEDED:
            if self.artifacts.get("cml_model_name"):
                return f"succeeded: deployed as CML model {self.artifacts['cml_model_name']}"
            if self.artifacts.get("registered_model_name"):
                return f"succeeded: {self.artifacts['registered_model_name']} version {self.artifacts.get('registered_model_version', '?')}"
            shown = [f"{k} {v:.3g}" for k, v in self.metrics.items() if k in ("train_loss", "exact_match", "rougeL")]
            shown += [resumed] if resumed else []
            return "succeeded" + (f" ({', '.join(shown)})" if shown else "")
        return self.state.value
