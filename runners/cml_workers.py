"""Scale-out on CML: a training with `resources.num_workers > 1` runs on that many CML engines, the
job's own and `num_workers - 1` CML workers, as the Studio's training script does it.

Who is what (`role`, from the environment):
- the **master** is the job run's engine (the CML backend sets FTCTL_NUM_WORKERS > 1). It launches
  each extra worker through the workers API the runtime provides (`cml.workers_v1`, else the older
  `cdsw`): `launch_workers(n=1, cpu=dist_cpu, memory=dist_memory, nvidia_gpu=dist_gpu, script=this
  runner, env=..., accelerator_label_id=gpu_label_id)`, with the master's address and port, the
  worker's node rank, the job input and the secrets the input names in `env` (a worker gets what it
  is given, not the job's environment). Then it runs node 0 itself, under torchrun, and watches:
  every worker must reach `running` within FTCTL_WORKERS_START_TIMEOUT_S and end `succeeded`
  within FTCTL_WORKERS_FINISH_TIMEOUT_S of node 0's end. The first failure (a worker that failed or
  was stopped, node 0 failing, a timeout) ends everything: the workers still active are stopped
  (`stop_workers`) and node 0 is terminated, so nothing is left running; the job's result is the
  failing rank's class (a rank that ended without a result was `killed`), a timeout is `transient`.
- a **node** is a worker the master launched (FTCTL_NODE_RANK): it becomes torchrun for its node.
- a **rank** is a process torchrun started (RANK in the environment): it trains as one rank of
  the world (`distributed.World`), as does any process outside CML scale-out (`role` "single").

Each node runs `max(1, gpu)` processes (one per GPU; one on CPU, with gloo): the world is
`num_workers x processes`, as `reconciler.scaleout.topology` reads the same `resources` (workers
get `dist_*`, each defaulting to the job's own). Every rank writes its result (rank 0 `result.json`,
rank R `result.rankR.json`, `distributed.World.rank_path`) and the backend reads the job's from them
all; the master writes `result.json` itself only for what no rank can say: a timeout, a stop, a
launch CML refused, a node that died without a result (`killed`). Stdlib only until torchrun runs;
never imports ftctl. Called by train.py's entry (`scale_out`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

try:  # imported as runners.cml_workers (tests); run as a program, its own folder is first on sys.path
    from runners import jobio
except ImportError:
    import jobio  # type: ignore[no-redef]

WORKERS_ENV = "FTCTL_NUM_WORKERS"  # set by the CML backend: this job run is the master of that many engines
NODE_RANK_ENV = "FTCTL_NODE_RANK"
MASTER_ADDR_ENV = "FTCTL_MASTER_ADDR"
MASTER_PORT_ENV = "FTCTL_MASTER_PORT"
START_TIMEOUT_ENV, START_TIMEOUT_S = "FTCTL_WORKERS_START_TIMEOUT_S", 1800.0  # CML may have to scale up a GPU node
FINISH_TIMEOUT_ENV, FINISH_TIMEOUT_S = "FTCTL_WORKERS_FINISH_TIMEOUT_S", 600.0
POLL_S = 1.0
STOP_GRACE_S = 15.0
WAITING = frozenset({"scheduling", "starting", "pending", "unknown"})
ENDED_BADLY = frozenset({"failed", "stopped", "timedout"})
VERDICT_TYPE = "ScaleOutFailure"  # the master's own verdict: reconciler.scaleout.MASTER_VERDICT reads it as the job's result
NODE_VARIABLES = (WORKERS_ENV, NODE_RANK_ENV, MASTER_ADDR_ENV, MASTER_PORT_ENV)


@dataclass(frozen=True)
class Scale:
    """What the job asks of CML: engines, processes on each, and each extra worker's resources."""

    nodes: int
    per_node: int
    cpu: float
    memory: float
    gpu: int
    accelerator_label_id: int | None = None

    @property
    def world_size(self) -> int:
        return self.nodes * self.per_node

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> Scale:
        res = job.get("resources") or {}

        def given(key: str, fallback: str, default: float) -> float:
            value = res.get(key)
            return float(value if value is not None else res.get(fallback) if res.get(fallback) is not None else default)

        label = res.get("gpu_label_id")
        return cls(nodes=max(1, int(res.get("num_workers") or 1)), per_node=max(1, int(res.get("gpu") or 0)),
                   cpu=given("dist_cpu", "cpu", 2), memory=given("dist_memory", "memory", 8), gpu=int(given("dist_gpu", "gpu", 0)),
                   accelerator_label_id=int(label) if label is not None and int(label) >= 0 else None)


def role(environ: Mapping[str, str]) -> str:
    """`rank` (started by torchrun), `node` (a CML worker of a scale-out), `master` (the job run of a
    scale-out on CML), or `single`."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return "rank"
    if environ.get(NODE_RANK_ENV, "").isdigit():
        return "node"
    if environ.get(WORKERS_ENV, "").isdigit() and int(environ[WORKERS_ENV]) > 1:
        return "master"
    return "single"


def scale_out(script: str, argv: list[str], environ: Mapping[str, str] | None = None) -> int | None:
    """Train.py's entry: the exit code when this process is a master or a node of a CML scale-out;
    None when it should simply train (a rank, or no scale-out)."""
    env = dict(os.environ if environ is None else environ)
    kind = role(env)
    if kind in ("rank", "single"):
        return None
    job = jobio.read_input(argv)
    if kind == "node":
        os.execve(sys.executable, node_command(script, argv, Scale.from_job(job), env), env)
    return supervise(job, script, argv, env)


def node_command(script: str, argv: list[str], scale: Scale, environ: Mapping[str, str]) -> list[str]:
    """torchrun for this node: its rank, the world's nodes and processes, the master's rendezvous."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={scale.nodes}", f"--node_rank={environ[NODE_RANK_ENV]}",
            f"--nproc_per_node={scale.per_node}", f"--master_addr={environ[MASTER_ADDR_ENV]}",
            f"--master_port={environ[MASTER_PORT_ENV]}", "--max_restarts=0", script, *argv]


def worker_env(job: dict[str, Any], environ: Mapping[str, str], *, rank: int, addr: str, port: int) -> dict[str, str]:
    """What a worker is launched with: ftctl's variables (the job input among them), the secrets the
    input names, and its place in the world. CML gives a worker nothing of its master's job environment."""
    forwarded = {k: v for k, v in environ.items() if k.startswith("FTCTL_") and k not in NODE_VARIABLES}
    secrets = {name: environ[name] for name in sorted(jobio._secret_names(job)) if environ.get(name)}
    return forwarded | secrets | {NODE_RANK_ENV: str(rank), MASTER_ADDR_ENV: addr, MASTER_PORT_ENV: str(port)}


# -- the master ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why the scale-out stopped early: who, and (for failures the master decides itself) the error."""

    who: str  # "worker", "node0", "timeout", "stopped", "launch"
    worker: dict[str, Any] | None = None
    error_class: str = ""
    message: str = ""


def assess(node0: int | None, workers: list[dict[str, Any]], ids: list[str], *, now: float, start_deadline: float,
           finish_deadline: float | None) -> Failure | bool:
    """One look at the scale-out: a Failure, True when every engine ended well, False to keep waiting.
    `node0` is node 0's exit code (None while it runs); `workers` what list_workers says of `ids`."""
    seen = {str(w.get("id")): w for w in workers}
    for wid in ids:
        worker = seen.get(wid)
        if worker is None:
            return Failure("worker", {"id": wid, "status": "gone"})
        if str(worker.get("status")) in ENDED_BADLY:
            return Failure("worker", worker)
    if node0 is not None and node0 != 0:
        return Failure("node0")
    waiting = [wid for wid in ids if str(seen[wid].get("status")) in WAITING]
    if waiting and now >= start_deadline:
        return Failure("timeout", error_class="transient",
                       message=f"CML worker {waiting[0]} was not running by the start timeout ({START_TIMEOUT_ENV})")
    if node0 is None:
        return False
    if all(seen[wid].get("status") == "succeeded" for wid in ids):
        return True
    if finish_deadline is not None and now >= finish_deadline:
        late = next(wid for wid in ids if seen[wid].get("status") != "succeeded")
        return Failure("timeout", error_class="transient",
                       message=f"CML worker {late} had not finished by the finish timeout after rank 0 ({FINISH_TIMEOUT_ENV})")
    return False


class _Stopped(BaseException):
    pass


def _stopped(_signum: int, _frame: Any) -> None:
    raise _Stopped


def supervise(job: dict[str, Any], script: str, argv: list[str], environ: Mapping[str, str], *,
              api: ModuleType | None = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """The master: launch the workers, run node 0, watch them all, stop everything on the first failure."""
    scale = Scale.from_job(job)
    outputs = job["outputs"]
    _clear_results(outputs["result"])
    started = time.time()
    jobio.Progress(outputs["progress"]).update(stage="launching workers", workers=scale.nodes - 1, world_size=scale.world_size)
    signal.signal(signal.SIGTERM, _stopped)
    ranks: dict[str, int] = {}  # worker id -> its node rank
    node0: subprocess.Popen[bytes] | None = None
    failure: Failure | None = None
    try:
        api = api or workers_api()
        addr = environ.get("CDSW_IP_ADDRESS") or "127.0.0.1"
        port = free_port(addr)
        for rank in range(1, scale.nodes):
            ranks[launch_worker(api, scale, script, worker_env(job, environ, rank=rank, addr=addr, port=port))] = rank
        node_env = {**environ, NODE_RANK_ENV: "0", MASTER_ADDR_ENV: addr, MASTER_PORT_ENV: str(port)}
        node0 = subprocess.Popen(node_command(script, argv, scale, node_env), env=node_env, start_new_session=True)
        failure = watch(api, node0, list(ranks), environ, clock=clock, sleep=sleep)
    except _Stopped:
        failure = Failure("stopped", error_class="cancelled", message="the job was stopped (SIGTERM); so were its workers")
    except _LaunchError as exc:
        failure = Failure("launch", error_class=exc.error_class, message=str(exc))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping is under way: finish it
        dead = _stop_all(api, list(ranks), node0)
    verdict = job_result(job, scale, failure, {wid: ranks[wid] for wid in dead}, started=started)
    if verdict is not None:
        jobio.write_json_atomic(outputs["result"], verdict)
        jobio.write_json_atomic(outputs["progress"], {**(_read(outputs["progress"]) or {}), "stage": "failed"})
    succeeded = failure is None and verdict is None and (_read(outputs["result"]) or {}).get("status") == "succeeded"
    return 0 if succeeded else 1


def watch(api: ModuleType, node0: subprocess.Popen[bytes], ids: list[str], environ: Mapping[str, str], *,
          clock: Callable[[], float], sleep: Callable[[float], None]) -> Failure | None:
    """Look every POLL_S until every engine ended well (None) or one failed (the Failure)."""
    start_deadline = clock() + float(environ.get(START_TIMEOUT_ENV) or START_TIMEOUT_S)
    finish_after = float(environ.get(FINISH_TIMEOUT_ENV) or FINISH_TIMEOUT_S)
    finish_deadline: float | None = None
    while True:
        code = node0.poll()
        if code == 0 and finish_deadline is None:
            finish_deadline = clock() + finish_after
        workers = [w for w in api.list_workers() if str(w.get("id")) in ids] if ids else []
        verdict = assess(code, workers, ids, now=clock(), start_deadline=start_deadline, finish_deadline=finish_deadline)
        if verdict is True:
            return None
        if isinstance(verdict, Failure):
            return verdict
        sleep(POLL_S)


class _LaunchError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def workers_api() -> ModuleType:
    """The runtime's workers API: `cml.workers_v1` (CML), else `cdsw` (older runtimes), as the Studio imports it."""
    for name in ("cml.workers_v1", "cdsw"):
        with contextlib.suppress(ImportError):
            return __import__(name, fromlist=["launch_workers"])
    raise _LaunchError("dependency", "resources.num_workers asks for CML workers, and this runtime has no workers API "
                                     "(cml.workers_v1 or cdsw): run the job in a CML ML runtime, or with num_workers 1")


def launch_worker(api: ModuleType, scale: Scale, script: str, env: dict[str, str]) -> str:
    """Launch one worker engine (as the Studio does: n=1 per rank, the label only when one is set)."""
    extra = {"accelerator_label_id": scale.accelerator_label_id} if scale.accelerator_label_id is not None else {}
    try:
        launched = api.launch_workers(n=1, cpu=scale.cpu, memory=scale.memory, nvidia_gpu=scale.gpu, script=script, env=env, **extra)
    except Exception as exc:  # the API refused: quota, a bad label, the service down
        raise _LaunchError("transient" if isinstance(exc, (ConnectionError, TimeoutError)) else "resources",
                           f"CML refused to launch worker rank {env[NODE_RANK_ENV]}: {exc}") from exc
    return str(launched[0]["id"])


def free_port(addr: str) -> int:
    with socket.socket() as probe:
        probe.bind((addr, 0))
        return int(probe.getsockname()[1])


def _stop_all(api: ModuleType | None, ids: list[str], node0: subprocess.Popen[bytes] | None) -> dict[str, str]:
    """Stop the workers still active and node 0; returns the workers that had ended badly by themselves
    (id -> status)."""
    dead: dict[str, str] = {}
    if api is not None and ids:
        try:
            workers = [w for w in api.list_workers() if str(w.get("id")) in ids]
        except Exception:  # the API did not answer: stop them all, whatever they are
            workers = [{"id": wid, "status": "unknown"} for wid in ids]
        dead = {str(w["id"]): str(w.get("status")) for w in workers if str(w.get("status")) in ENDED_BADLY}
        active = [str(w["id"]) for w in workers if str(w.get("status")) not in ENDED_BADLY | {"succeeded"}]
        if active:
            api.stop_workers(*active)
            api.await_workers(active, wait_for_completion=True, timeout_seconds=STOP_GRACE_S)
    if node0 is not None and node0.poll() is None:
        node0.terminate()  # torchrun passes SIGTERM on to its ranks, which write `cancelled`
        try:
            node0.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node0.pid, signal.SIGKILL)
            node0.wait()
    return dead


def job_result(job: dict[str, Any], scale: Scale, failure: Failure | None, dead: dict[str, int], *,
               started: float) -> dict[str, Any] | None:
    """The master's own verdict when no rank can give the job's (None: the ranks' results say it)."""
    if failure is not None and failure.error_class:  # a timeout, a stop, a launch refused
        return _failed(job, failure.error_class, failure.message, started=started)
    result = Path(job["outputs"]["result"])
    for wid, node in sorted(dead.items(), key=lambda item: item[1]):  # ended badly by itself, and left no result
        ranks = range(node * scale.per_node, (node + 1) * scale.per_node)
        if any(_read(result.with_name(f"{result.stem}.rank{rank}{result.suffix}")) is None for rank in ranks):
            return _failed(job, "killed", f"CML worker {wid} (node {node} of {scale.nodes}) ended without a result: "
                                          "it was killed, or its engine died", started=started)
    if _read(result) is None:
        return _failed(job, "killed", "rank 0 ended without a result: it was killed, or its process died", started=started)
    return None


def _failed(job: dict[str, Any], error_class: str, message: str, *, started: float) -> dict[str, Any]:
    return {"contract_version": jobio.CONTRACT_VERSION, "job_name": job["job_name"], "status": "failed", "metrics": {},
            "artifacts": {}, "error": {"error_class": error_class, "type": VERDICT_TYPE, "message": message},
            "started_at": started, "finished_at": time.time()}


def _clear_results(result_path: str) -> None:
    """A retry's master starts clean: no result of an earlier attempt may pass for this one's."""
    for path in [Path(result_path), *_rank_files(Path(result_path))]:
        path.unlink(missing_ok=True)


def _rank_files(result: Path) -> list[Path]:
    """The other ranks' results beside the job's (`result.rank1.json`, ...)."""
    return sorted(result.parent.glob(f"{result.stem}.rank*{result.suffix}"))


def _read(path: str | Path) -> dict[str, Any] | None:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
