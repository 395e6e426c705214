"""How a training job scales out: its world (workers x processes per worker) and what each worker
gets, from the job's `resources`; and the job's result from its ranks' results.

One reading of `resources` for every caller: the rules (what cannot run), the plan's views (the
world size and per-worker resources a launch asks for), and the backends (the local one runs
`world_size` processes under torchrun on this machine; CML launches `workers - 1` more workers,
each running `processes_per_worker`). A worker runs one process per GPU it has, one on CPU.
Worker 0 has `cpu`/`memory`/`gpu`; every other worker `dist_cpu`/`dist_memory`/`dist_gpu`, each
defaulting to worker 0's (as the Studio passes them).

Pure: values in, values out. The ranks' result files follow the runners' contract
(`runners/distributed.py`: rank 0 writes `result.json`, rank R `result.rankR.json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STOPPED_BY_LAUNCHER = ("cancelled",)  # what a rank reports when its launcher stopped it after another failed
# The error type of the verdict a CML scale-out's master writes as rank 0's result after stopping
# every node (runners/cml_workers.VERDICT_TYPE: a timeout, a stop, a launch CML refused, a CML worker
# that died without a result, by its id): it has seen every node, so it is the job's result.
MASTER_VERDICT = "ScaleOutFailure"


@dataclass(frozen=True)
class WorkerResources:
    cpu: float | None
    memory: float | None
    gpu: int

    def describe(self) -> str:
        parts = [f"{self.cpu:g} cpu" if self.cpu is not None else "", f"{self.memory:g} GB" if self.memory is not None else "",
                 f"{self.gpu} gpu" if self.gpu else ""]
        return ", ".join(p for p in parts if p) or "defaults"


@dataclass(frozen=True)
class Topology:
    """A training job's world: `workers` machines (CML workers, or groups of local processes)."""

    workers: int
    first: WorkerResources
    others: WorkerResources

    @property
    def processes_per_worker(self) -> int:
        return max(1, self.first.gpu)

    @property
    def world_size(self) -> int:
        return self.workers * self.processes_per_worker

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """`world 6 (3 workers x 2 processes); worker 0: 4 cpu, 16 GB, 2 gpu; workers 1-2: ... each`."""
        head = f"world {self.world_size} ({self.workers} worker{'s' if self.workers != 1 else ''} x " \
               f"{self.processes_per_worker} process{'es' if self.processes_per_worker != 1 else ''})"
        if self.workers == 1:
            return f"{head}; {self.first.describe()}"
        rest = "worker 1" if self.workers == 2 else f"workers 1-{self.workers - 1}"
        each = " each" if self.workers > 2 else ""
        return f"{head}; worker 0: {self.first.describe()}; {rest}: {self.others.describe()}{each}"

    def as_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "workers": self.workers, "processes_per_worker": self.processes_per_worker,
                "worker_0": vars(self.first).copy(), "other_workers": vars(self.others).copy()}


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def topology(resources: Mapping[str, Any] | None) -> Topology:
    """The world a job's `resources` (a job input's, or a manifest's as a dict) ask for."""
    res = resources or {}
    gpu = max(0, _int(res.get("gpu"), 0))
    first = WorkerResources(res.get("cpu"), res.get("memory"), gpu)
    dist_gpu = res.get("dist_gpu")
    others = WorkerResources(res.get("dist_cpu") if res.get("dist_cpu") is not None else first.cpu,
                             res.get("dist_memory") if res.get("dist_memory") is not None else first.memory,
                             max(0, _int(dist_gpu, gpu)) if dist_gpu is not None else gpu)
    return Topology(max(1, _int(res.get("num_workers"), 1)), first, others)


def job_result(results: Mapping[int, Mapping[str, Any] | None], world_size: int) -> Mapping[str, Any] | None:
    """The job's result from its ranks' (rank -> result, None where a rank wrote none).

    The CML master's verdict (`MASTER_VERDICT`, in rank 0's place) is the job's result: it names
    the CML worker that was lost, which a user needs to find its logs. Else a run of several ranks
    that did not all succeed, where a rank left no result at all, lost that rank (SIGKILL, the OOM
    killer): `killed`, whatever the others said after (a peer's broken connection, their launcher's
    stop). Else the earliest failure that is a rank's own (not `cancelled`, what a launcher's stop
    makes of the others); else rank 0's. None when no rank wrote anything."""
    main = results.get(0)
    if main and main.get("status") == "failed" and (main.get("error") or {}).get("type") == MASTER_VERDICT:
        return main
    written = [r for r in (results.get(rank) for rank in range(world_size)) if r]
    if not written:
        return None
    silent = [rank for rank in range(world_size) if not results.get(rank)]
    if world_size > 1 and silent and not all(r.get("status") == "succeeded" for r in written):
        ranks = ", ".join(str(r) for r in silent)
        return {**(main or written[0]), "status": "failed", "metrics": {}, "artifacts": {},
                "error": {"error_class": "killed", "type": "WorkerDied",
                          "message": f"rank {ranks} of {world_size} ended without a result (killed, or its process died)"}}
    own = [r for r in written if r.get("status") == "failed"
           and (r.get("error") or {}).get("error_class") not in STOPPED_BY_LAUNCHER]
    if own:
        return min(own, key=lambda r: float(r.get("finished_at") or 0.0))
    return main
