"""The local backend (the embedded default): runners as subprocesses on this machine.

Each job has a folder `<root>/<job name>/` holding `input.json`, `log.txt`, `progress.json`,
`result.json`, `launch.json` (pid, attempt) and `lock`. A launched runner inherits an exclusive
`flock` on `lock` and holds it for its whole life, so any ftctl process, including one started
after a crash, tells a running job from a finished or dead one without trusting pids: the lock
is held -> running; else `result.json` -> finished; else launched but gone -> failed (killed).
A job whose `input.json` has not the digest its name ends with is reported failed
(`input_mismatch`) and never adopted nor started again under that name.
Launching is idempotent by job name: a job that is running or has a result is never started
again unless a retry asks for the next attempt. Jobs run in their own process group (cancel
stops the whole group). At most `max_running` jobs run at once; the rest wait for a slot.
A training whose `resources` ask for more than one process (`num_workers` x `gpu`, see
`reconciler.scaleout`) runs under torchrun (`python -m torch.distributed.run --standalone`, the
same interpreter) with that many processes on this machine, gloo on CPU; the log holds every
rank's output prefixed `[rankR]:`, the ranks die with the launcher, and the job's result is read
from every rank's (`scaleout.job_result`: a rank's own failure, or `killed` for one that vanished).
Whatever the caller passes, a job folder is a plain name resolved strictly inside the jobs root,
and the runner is one of the closed set (`RunnerKind`); anything else is refused (`BackendError`).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.backends import (
    INPUT_MISMATCH,
    BackendError,
    check_job_name,
    check_outputs,
    check_runner,
    read_json,
    unadoptable,
    write_json,
)
from reconciler.runtime import JobObservation, JobState
from reconciler.scaleout import job_result, topology

RUNNERS = Path(__file__).resolve().parent.parent.parent / "runners"
DEFAULT_ROOT = ".app/jobs"


class LocalBackend:
    name = "local"

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT, *, max_running: int = 1,
                 python: str = sys.executable, environ: dict[str, str] | None = None, runners: Path = RUNNERS,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        self.cwd = Path(cwd or os.getcwd())  # the project root: runners run there, and a job input's relative paths are its
        self.root = self.cwd / root
        self.runners = runners
        self.max_running = max_running
        self.python = python
        self.environ = dict(os.environ if environ is None else environ)
        self._running: int | None = None  # counted once per ftctl process, then kept up to date

    def job_dir(self, job_name: str) -> Path:
        """`<root>/<job name>`, refused unless the name is plain and the folder inside the root."""
        check_job_name(job_name)
        folder = self.root / job_name
        root, real = self.root.resolve(), folder.resolve()
        if real == root or not real.is_relative_to(root):
            raise BackendError(f"job name {job_name!r} refused: its folder is outside the jobs folder {self.root}")
        return folder

    def paths(self, job_name: str) -> dict[str, str]:
        folder = self.job_dir(job_name)
        return {"dir": str(folder), "result": str(folder / "result.json"), "progress": str(folder / "progress.json")}

    # -- launch ----------------------------------------------------------------------------------

    def check_launch(self, job_name: str, kind: str, job_input: dict[str, Any]) -> None:
        """A plain name whose folder is inside the jobs root, a runner of the closed set, and an input
        whose outputs are that folder: refused (BackendError) otherwise, before anything is written."""
        check_runner(kind)
        check_outputs(job_input, self.job_dir(job_name), self.cwd)

    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1) -> JobObservation:
        """Start the job unless it is running or already has this attempt; return what it is now."""
        self.check_launch(job_name, kind, job_input)
        folder = self.job_dir(job_name)
        if folder.is_dir():  # launched before (by a run that crashed, or another ftctl): maybe still there
            current = self.observe(job_name)
            if current.state in (JobState.RUNNING, JobState.QUEUED) or current.error_class == INPUT_MISMATCH or (
                    current.attempt >= attempt and current.state is not JobState.NOT_LAUNCHED):
                return current
        folder.mkdir(parents=True, exist_ok=True)
        if self.running_count() >= self.max_running:
            write_json(folder / "input.json", job_input)
            write_json(folder / "queued.json", {"kind": kind, "attempt": attempt, "queued_at": time.time()})
            return JobObservation(job_name, JobState.QUEUED, attempt)
        return self._start(job_name, kind, job_input, attempt)

    def _start(self, job_name: str, kind: str, job_input: dict[str, Any], attempt: int) -> JobObservation:
        check_runner(kind)
        folder = self.job_dir(job_name)
        if attempt > 1:
            self._archive(folder, attempt - 1)
        write_json(folder / "input.json", job_input)
        lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.observe(job_name)  # another ftctl started it a moment ago
            command, world_size = self.command(folder, kind, job_input)
            with open(folder / "log.txt", "ab") as log:
                process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, pass_fds=(lock_fd,), env=self.environ, cwd=self.cwd,
                )
            write_json(folder / "launch.json", {"pid": process.pid, "attempt": attempt, "kind": kind, "launched_at": time.time(),
                                                "world_size": world_size})
            (folder / "queued.json").unlink(missing_ok=True)
            self._running = self.running_count() + 1
        finally:
            os.close(lock_fd)  # the runner holds its inherited copy for its whole life
        return JobObservation(job_name, JobState.RUNNING, attempt, external_id=str(folder))

    def command(self, folder: Path, kind: str, job_input: dict[str, Any]) -> tuple[list[str], int]:
        """(the command that runs the job, its world size): the runner itself, or torchrun running
        `world_size` copies of it when a training asks for more than one process."""
        runner = [str(self.runners / f"{kind}.py"), "--input", str(folder / "input.json")]
        world_size = topology(job_input.get("resources")).world_size if kind == "train" else 1
        if world_size == 1:
            return [self.python, *runner], 1
        launcher = [self.python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world_size}",
                    "--max-restarts=0", "--role=rank", "--tee=3", f"--log-dir={folder / 'ranks'}"]
        return [*launcher, *runner], world_size

    def start_queued(self) -> list[str]:
        """Start queued jobs while there are free slots; the names of those started."""
        started = []
        self._running = None  # a fresh count: some jobs may have finished
        for queued in sorted(self.root.glob("*/queued.json"), key=lambda p: p.stat().st_mtime):
            if self.running_count() >= self.max_running:
                break
            info, job_input = read_json(queued), read_json(queued.parent / "input.json")
            if not info or not job_input or (queued.parent / "cancelled").exists():
                continue  # cancelled (or being cancelled) while it waited
            job_name = queued.parent.name
            self._start(job_name, info["kind"], job_input, int(info["attempt"]))
            started.append(job_name)
        return started

    @staticmethod
    def _archive(folder: Path, attempt: int) -> None:
        target = folder / f"attempt-{attempt}"
        target.mkdir(exist_ok=True)
        ranks = [p.name for p in [*folder.glob("result.rank*.json"), *folder.glob("progress.rank*.json"), folder / "ranks"]]
        for name in ("result.json", "progress.json", "log.txt", "launch.json", "cancelled", *ranks):
            if (folder / name).exists():
                os.replace(folder / name, target / name)

    # -- observe ---------------------------------------------------------------------------------

    def observe(self, job_name: str) -> JobObservation:
        folder = self.job_dir(job_name)
        launch = read_json(folder / "launch.json")
        queued = read_json(folder / "queued.json")
        refused = self.unadoptable(job_name, launch or queued, folder)
        if refused:
            return refused
        if not launch:
            if queued:
                return JobObservation(job_name, JobState.QUEUED, int(queued.get("attempt", 1)))
            if (folder / "cancelled").exists():  # cancelled while it waited for a slot: it never ran
                attempt = int(read_json(folder / "cancelled").get("attempt", 1))
                return JobObservation(job_name, JobState.FAILED, attempt, "cancelled", "cancelled (ftctl cancel) before it started")
            return JobObservation(job_name, JobState.NOT_LAUNCHED)
        attempt = int(launch.get("attempt", 1))
        progress = read_json(folder / "progress.json")
        if _locked(folder / "lock"):
            return JobObservation(job_name, JobState.RUNNING, attempt, progress=progress, external_id=str(folder))
        world_size = int(launch.get("world_size") or 1)
        result = self.result(folder, world_size)
        stopped = not result or (world_size > 1 and result.get("status") != "succeeded")  # its ranks saw peers go first
        if stopped and (folder / "cancelled").exists():
            return JobObservation(job_name, JobState.FAILED, attempt, "cancelled", "cancelled (ftctl cancel)", progress=progress,
                                  external_id=str(folder))
        if not result:
            return JobObservation(job_name, JobState.FAILED, attempt, "killed",
                                  "the job ended without a result (killed, or its process died)", progress=progress,
                                  external_id=str(folder))
        error = result.get("error") or {}
        state = JobState.SUCCEEDED if result.get("status") == "succeeded" else JobState.FAILED
        return JobObservation(job_name, state, attempt, error.get("error_class", ""), error.get("message", ""),
                              dict(result.get("metrics") or {}), dict(result.get("artifacts") or {}), progress, str(folder),
                              runtime_s=JobObservation.runtime_of(result))

    @staticmethod
    def result(folder: Path, world_size: int) -> dict[str, Any]:
        """The job's result: rank 0's `result.json`, or, for a run of several processes, what its
        ranks' results say together (`scaleout.job_result`); {} when there is none."""
        if world_size <= 1:
            return read_json(folder / "result.json")
        ranks = {0: read_json(folder / "result.json")} | {
            rank: read_json(folder / f"result.rank{rank}.json") for rank in range(1, world_size)}
        return dict(job_result(ranks, world_size) or {})

    def unadoptable(self, job_name: str, launched: dict[str, Any], folder: Path | None = None) -> JobObservation | None:
        """A job launched (or queued) here whose input.json has not the digest its name says, as
        it is reported (`backends.unadoptable`); None for any other job. `folder`: its `job_dir`,
        when the caller has it already (each `job_dir` resolves two paths; observing calls it per job)."""
        if not launched:
            return None
        folder = folder or self.job_dir(job_name)
        return unadoptable(job_name, read_json(folder / "input.json"), attempt=int(launched.get("attempt", 1)), external_id=str(folder))

    def observe_many(self, job_names: Iterable[str]) -> dict[str, JobObservation]:
        return {name: self.observe(name) for name in job_names}

    def find(self, prefixes: Iterable[str]) -> list[str]:
        """The jobs of this jobs folder whose names start with one of `prefixes`."""
        wanted = tuple(prefixes)
        if not wanted or not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.name.startswith(wanted) and p.is_dir())

    def running_count(self) -> int:
        """Jobs running now: counted from the locks once, then tracked (finishing jobs free slots for the
        next ftctl run, never too many at once)."""
        if self._running is None:
            self._running = sum(1 for lock in self.root.glob("*/lock") if _locked(lock)) if self.root.is_dir() else 0
        return self._running

    # -- cancel and logs -------------------------------------------------------------------------

    def cancel(self, job_name: str) -> bool:
        """Stop a running job (SIGTERM to its process group) or drop a queued one; either reads as
        failed, `cancelled`, and is never started or retried."""
        folder = self.job_dir(job_name)
        queued = read_json(folder / "queued.json")
        if queued and not (folder / "launch.json").exists():
            write_json(folder / "cancelled", {"attempt": int(queued.get("attempt", 1))})  # first: never NOT_LAUNCHED
            (folder / "queued.json").unlink(missing_ok=True)
            return True
        launch = read_json(folder / "launch.json")
        if not launch or not _locked(folder / "lock"):
            return False
        (folder / "cancelled").touch()  # stopped before the runner could record it: still `cancelled`, never retried
        try:
            os.killpg(int(launch["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def log_path(self, job_name: str) -> Path:
        return self.job_dir(job_name) / "log.txt"

    def links(self, job_name: str, external_id: str) -> dict[str, str]:
        return {}  # a local job is its folder (the external id): nothing to link to


def _locked(path: Path) -> bool:
    """Whether a runner holds the job's lock (it does for exactly as long as it lives)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
