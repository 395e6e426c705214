"""Shared helpers of the end-to-end tests: project copies, the real CLI as a subprocess, store dumps.

Everything here reads the store with `sqlite3` directly (never through `reconciler`), so the tests
check what ftctl leaves on disk, not what ftctl believes it wrote.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from tests.bench.generate import generate_project
from tests.fakes.studio_store import TABLES as STUDIO_TABLES
from tests.runners.helpers import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
FTCTL = [sys.executable, "-m", "reconciler.cli"]
DEMO = "specs/demo"
DEMO_MODEL = "specs/demo/models/tiny-llama"  # where the demo's manifests expect the model `make demo` builds
SEED = "e2e-seed"
TINY_MODEL_CONFIG = {"architectures": ["LlamaForCausalLM"]}
# Variables of the caller's environment that would change what the CLI does.
_SCRUBBED = ("FTCTL_FAULT_KILL_AT", "FTCTL_PLAN_SEED", "FTCTL_DEBUG", "FINE_TUNING_STUDIO_SQLITE_DB",
             "FTCTL_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "FTCTL_RUNNER_FAIL")
# The demo's training alone (make_training), on the tiny model, with its number of retries.
TRAINING = """\
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: tickets-lora}
spec:
  base_model: tiny-llama
  dataset: demo-tickets
  prompt: demo-ticketing
  lora_config: demo-lora
  training_arguments: demo-training
  retries: %(retries)d
"""
PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] ", re.M)
# Columns by which the Studio tells rows apart (a second row with the same value is a duplicate).
NAME_COLUMNS = {
    "datasets": ("name",), "models": ("name",), "prompts": ("name",), "adapters": ("name",),
    "fine_tuning_jobs": ("adapter_name",), "evaluation_jobs": ("parent_job_id", "base_model_id", "adapter_id"),
    "configs": ("type", "config"),
}


# -- projects ------------------------------------------------------------------------------------

def make_demo(root: Path) -> Path:
    """Copy specs/ under root and build the stand-in for the demo's tiny model; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    copy_specs(root)
    (root / "ftctl.toml").touch()  # the project root (the repository's is marked by .git)
    model = root / DEMO_MODEL
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG), encoding="utf-8")
    return root


def copy_specs(root: Path) -> None:
    """Copy specs/ to root/specs, without the demo's model should `make demo` have built it here."""
    shutil.copytree(REPO / "specs", root / "specs", ignore=lambda folder, _: ["models"] if folder.endswith("demo") else [])


def make_trainable_demo(root: Path) -> Path:
    """Copy specs/ under root with the real tiny model where the demo expects it (its jobs train); returns root."""
    root.mkdir(parents=True, exist_ok=True)
    copy_specs(root)
    (root / "ftctl.toml").touch()  # the project root: its store, jobs and MLflow store are under root/.app
    build_tiny_model(root / DEMO_MODEL)
    return root


def make_training(root: Path, tiny_model: Path, *, retries: int, configs: str | None = None) -> Path:
    """The demo's training alone (its data, resources and configs, or `configs`; a FineTuningJob with
    `retries`) on `tiny_model`, which stays outside the project (a read root); returns root."""
    demo = root / DEMO
    (demo / "data").mkdir(parents=True)
    shutil.copy(REPO / DEMO / "data/tickets.csv", demo / "data/tickets.csv")
    shutil.copy(REPO / DEMO / "resources.yaml", demo / "resources.yaml")
    (demo / "configs.yaml").write_text(configs if configs is not None else (REPO / DEMO / "configs.yaml").read_text())
    (demo / "job.yaml").write_text(TRAINING % {"retries": retries})
    (demo / "models").mkdir()
    (demo / "models/tiny-llama").symlink_to(tiny_model)
    (root / "ftctl.toml").write_text(f"read_roots = [{str(tiny_model.parent)!r}]\n")
    return root


def make_generated(root: Path, n: int, folder: str = "gen") -> str:
    """Write a generated project of n resources at root/folder; returns folder (relative to root)."""
    generate_project(root / folder, n)
    return folder


# -- the CLI -------------------------------------------------------------------------------------

def _command(args: Sequence[str], step_size: int | None) -> list[str]:
    if step_size is None:
        return [*FTCTL, *args]
    # The executor batches up to STEP_SIZE changes per step; a smaller one gives more fault points.
    shim = ("import sys, reconciler.executor as executor; "
            f"executor.STEP_SIZE = {int(step_size)}; "
            "from reconciler.cli import main; main()")
    return [sys.executable, "-c", shim, *args]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def ftctl(cwd: Path, *args: str, env: dict[str, str] | None = None, step_size: int | None = None,
          timeout: float = 120, memory_cap: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in cwd; env adds to (a scrubbed copy of) this process's environment. Its
    stdin is not a terminal wherever the tests run (so apply needs --auto-approve, as in CI).
    `memory_cap`: the process's address space in bytes (RLIMIT_AS): a blowup fails it, not the machine."""
    return subprocess.run(_command(args, step_size), cwd=cwd, env=cli_env(env), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False, preexec_fn=None if memory_cap is None else _cap(memory_cap))


def local_ftctl(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real CLI in root on the local backend (jobs really run), MLflow's store at root/.app/mlflow.db."""
    local = {"FTCTL_BACKEND": "local", "MLFLOW_TRACKING_URI": f"sqlite:///{root}/.app/mlflow.db"}
    return ftctl(root, *args, env={**local, **(env or {})}, timeout=timeout)


def _cap(memory: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return limit


def ftctl_popen(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(_command(args, None), cwd=cwd, env=cli_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def apply(cwd: Path, *paths: str, store: str | None = None, seed: str | None = SEED, env: dict[str, str] | None = None,
          extra: Sequence[str] = (), step_size: int | None = None) -> subprocess.CompletedProcess[str]:
    """`ftctl apply PATHS --auto-approve --offline --create-store [--store S]` with a fixed plan seed
    (the first apply of a test creates its store)."""
    args = ["apply", *paths, "--auto-approve", "--offline", "--create-store", *(["--store", store] if store else []), *extra]
    return ftctl(cwd, *args, env={**({"FTCTL_PLAN_SEED": seed} if seed else {}), **(env or {})}, step_size=step_size)


def plan(cwd: Path, *paths: str, store: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ftctl plan PATHS --offline --detailed-exitcode [--store S]`."""
    return ftctl(cwd, "plan", *paths, "--offline", "--detailed-exitcode", *(["--store", store] if store else []), env=env)


def show(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion on a CLI run prints."""
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def steps_run(stderr: str) -> int:
    """The number of steps an apply announced in its `[i/n]` progress lines (0 when none)."""
    totals = {int(m.group(2)) for m in PROGRESS.finditer(stderr)}
    assert len(totals) <= 1, f"progress lines disagree on the step count: {sorted(totals)}"
    return totals.pop() if totals else 0


# -- reading the store ---------------------------------------------------------------------------

def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def tables(db: Path) -> set[str]:
    return {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(db: Path, table: str) -> list[str]:
    return [r[1] for r in query(db, f"PRAGMA table_info({table})")]


def dump_table(db: Path, table: str, *, skip: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """Every row of a table (all columns but `skip`, in declaration order), sorted; [] when absent."""
    if table not in tables(db):
        return []
    cols = [c for c in columns(db, table) if c not in skip]
    rows = query(db, f"SELECT {', '.join(cols)} FROM {table}")
    return sorted(rows, key=repr)


def dump_studio(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The seven Studio tables, every column (ids included), rows sorted."""
    return {t: dump_table(db, t) for t in STUDIO_TABLES}


def dump_all(db: Path, *, skip_tables: Sequence[str] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the store (Studio's, ftctl's, alembic's), rows sorted."""
    return {t: dump_table(db, t) for t in sorted(tables(db)) if t not in skip_tables and not t.startswith("sqlite_")}


def objects(db: Path) -> list[tuple[Any, ...]]:
    """ftctl's records without the columns that say when (serial, updated_at)."""
    return dump_table(db, "ftctl_objects", skip=("serial", "updated_at"))


def history(db: Path) -> Counter[tuple[Any, ...]]:
    """ftctl_history as a multiset of what was done (not when, nor by which apply)."""
    return Counter(query(db, "SELECT kind, name, action, store_table, row_id, before, after FROM ftctl_history"))


def journal(db: Path) -> list[tuple[int, str, int, str, dict[str, Any]]]:
    """(seq, apply_id, step, state, intent) of every journal row, in order."""
    rows = query(db, "SELECT seq, apply_id, step, state, intent FROM ftctl_journal ORDER BY seq")
    return [(seq, apply_id, step, state, json.loads(intent)) for seq, apply_id, step, state, intent in rows]


def count(db: Path, table: str) -> int:
    return int(query(db, f"SELECT COUNT(*) FROM {table}")[0][0])


def studio_row_ids(db: Path) -> set[str]:
    """`table/id` of every row in the Studio tables."""
    return {f"{t}/{r[0]}" for t in STUDIO_TABLES if t in tables(db) for r in query(db, f"SELECT id FROM {t}")}


def duplicates(db: Path) -> list[str]:
    """Rows the Studio could not tell apart: the same identifying values twice in one table."""
    out = []
    for table, cols in NAME_COLUMNS.items():
        if table not in tables(db):
            continue
        seen = Counter(query(db, f"SELECT {', '.join(cols)} FROM {table}"))
        out += [f"{table} {dict(zip(cols, key))} x{n}" for key, n in seen.items() if n > 1 and any(key)]
    return out


def insert_lock(db: Path, *, owner: str, host: str, pid: int, expires_at: float, acquired_at: float = 0.0) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("DELETE FROM ftctl_lock")
            conn.execute("INSERT INTO ftctl_lock (name, owner, host, pid, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                         ("apply", owner, host, pid, acquired_at, expires_at))
    finally:
        conn.close()


# -- jobs on the fake backend (FTCTL_BACKEND=fake) -----------------------------------------------

def jobs_env(jobs_dir: Path) -> dict[str, str]:
    """The environment that runs jobs on the fake backend with its job folders under jobs_dir."""
    return {"FTCTL_BACKEND": "fake", "FTCTL_JOBS_DIR": str(jobs_dir)}


def job_folders(jobs_dir: Path) -> dict[str, Path]:
    """Job name -> its folder, in every store's jobs folder (`<jobs dir>/<store id>/<job name>`)."""
    return {d.name: d for d in sorted(jobs_dir.glob("*/ftctl-*")) if d.is_dir()}


def launch_logs(jobs_dir: Path) -> dict[str, str]:
    """Job name -> its launches.log (one line per launch: the attempt number); {} when no folder."""
    return {name: (d / "launches.log").read_text(encoding="utf-8") if (d / "launches.log").exists() else ""
            for name, d in job_folders(jobs_dir).items()}


def write_result(jobs_dir: Path, job: str, status: str = "succeeded", *, metrics: dict[str, float] | None = None,
                 artifacts: dict[str, Any] | None = None, error_class: str = "", message: str = "") -> None:
    """Finish a fake job: write its job-result document (schemas/job-result.schema.json)."""
    error = {"error_class": error_class, "type": "TestFailure", "message": message or f"scripted {error_class} failure"} \
        if status == "failed" else None
    document = {"contract_version": 1, "job_name": job, "status": status, "metrics": metrics or {},
                "artifacts": artifacts or {}, "error": error, "started_at": 0, "finished_at": 0}
    folder = job_folders(jobs_dir).get(job, jobs_dir / job)
    assert (folder / "launch.json").is_file(), f"{job} was never launched: {sorted(launch_logs(jobs_dir))}"
    tmp = folder / ".result.json.tmp"
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, folder / "result.json")


def finish_new(root: Path, known: Collection[str] = ()) -> set[str]:
    """Finish every fake job under root/.app/jobs not in `known` (a training with its adapter folder,
    an evaluation scoring rougeL 0.9); returns every job's name."""
    jobs = job_folders(root / ".app" / "jobs")
    for name, folder in jobs.items():
        if name not in known:
            artifacts = {"adapter_dir": str(folder / "adapter")} if name.startswith("ftctl-train-") else {}
            metrics = {"rougeL": 0.9} if name.startswith("ftctl-eval-") else {"train_loss": 1.0}
            write_result(root / ".app" / "jobs", name, metrics=metrics, artifacts=artifacts)
    return set(jobs)


def converge(root: Path, env: dict[str, str], known: Collection[str] = ()) -> set[str]:
    """Apply the demo and finish what it launched (`finish_new`) until its plan has nothing left to
    do (exit 0); returns every job's name."""
    done_jobs = set(known)
    for _ in range(10):
        done = apply(root, DEMO, env=env)
        assert done.returncode == 0, show(done)
        done_jobs = finish_new(root, done_jobs)
        left = ftctl(root, "plan", DEMO, "--offline", "--detailed-exitcode", env=env)
        if left.returncode == 0:
            return done_jobs
        assert left.returncode == 2, show(left)
    raise AssertionError("did not converge")
