"""What reconciling the status of 100 running CML jobs costs: CML API calls and wall time.

    python tests/bench/cml_status.py        (also a section of `make bench`)

Against the fake CML API (tests/fakes/cml_server.py) on loopback, in a project holding the Studio's
two template jobs, 50 jobs of other people and 100 ftctl training jobs, launched with the real
`CMLBackend.launch` from valid job inputs (names from `jobinput.named_input`, as the planner makes them) and scripted to hang, so
they stay ENGINE_RUNNING. Measured, each the median of 5 counted runs after a warm-up:

- `CMLBackend.observe_many(names)`: one paginated listing of the project's jobs with their latest
  runs, with the client's default page size (100) and with the fake's (10);
- for contrast, the naive way: `observe(name)` once per job;
- end to end: `ftctl status --offline --format json` (a whole process) on a store where 100
  FineTuningJobs were applied with `--backend cml`.

Calls are counted by the client (`CMLClient.calls`, requests sent) and by the server
(`FakeCML.calls`, by operation). Target: observing 100 jobs takes a listing, not a call per job
(calls <= 3). A report, not a test: a missed target still exits 0; a failed run exits 1.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from reconciler.backends.cml import CMLBackend, CMLSettings  # noqa: E402
from reconciler.backends.cml_http import CMLClient  # noqa: E402
from reconciler.contract import JobInput  # noqa: E402
from reconciler.jobinput import JobSettings, named_input, train_input  # noqa: E402
from reconciler.runtime import JobState  # noqa: E402
from tests.fakes.cml_server import DEFAULT_RUNTIME, RUNNING, FakeCML  # noqa: E402

N_JOBS = 100  # running ftctl jobs whose status is reconciled
BENCH_STORE_ID = "0be4c4a5-0000-4000-8000-000000000000"  # the store the jobs belong to (it names them)
N_OTHER = 50  # unrelated jobs in the project (plus the Studio's two templates)
RUNS = 5  # counted runs per figure (after one warm-up)
CLIENT_PAGE_SIZE = CMLClient.__dataclass_fields__["page_size"].default  # 100: what ftctl asks for
FAKE_PAGE_SIZE = FakeCML.__init__.__kwdefaults__["page_size"]  # 10: the fake's default page size
TARGET_CALLS = 3
TARGET = f"calls <= {TARGET_CALLS} for {N_JOBS} jobs (listing, not per job)"
WORK = REPO / ".bench" / "cml-status"
FTCTL = str(REPO / ".venv" / "bin" / "ftctl") if (REPO / ".venv" / "bin" / "ftctl").exists() else "ftctl"


class CMLBenchError(Exception):
    """A run failed or showed something other than what was set up; the message says what."""


@dataclass
class Figure:
    """One way of reconciling the status of the N jobs, over several runs."""

    name: str
    times: list[float] = field(default_factory=list)  # seconds, counted runs only
    calls: list[int] = field(default_factory=list)  # CML API calls the server saw, per counted run
    client_calls: list[int] = field(default_factory=list)  # requests the client sent (in-process figures only)
    by_operation: Counter[str] = field(default_factory=Counter)  # the server's count of the last counted run
    target: int | None = None  # calls, an upper bound; None: for contrast only

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "PASS" if max(self.calls) <= self.target else "MISS"

    def operations(self) -> str:
        return ", ".join(f"{op} {n}" for op, n in sorted(self.by_operation.items())) or "none"


# -- the project: templates, other people's jobs, ftctl's running jobs -------------------------------


def train_inputs(n: int, settings: JobSettings) -> list[tuple[str, dict[str, Any]]]:
    """(job name, job input) of n ftctl training jobs, as ftctl builds them from Studio rows."""
    rows = {
        "models": {"id": "m-1", "type": "huggingface", "huggingface_model_name": "HuggingFaceTB/SmolLM2-135M"},
        "datasets": {"id": "d-1", "type": "project_csv", "location": "data/tickets.csv",
                     "features": json.dumps(["instruction", "intent"])},
        "prompts": {"id": "p-1", "prompt_template": "### CUSTOMER: {instruction}\n### ACTION: {intent}",
                    "input_template": "### CUSTOMER: {instruction}\n### ACTION: ", "completion_template": "{intent}"},
    }
    out = []
    for i in range(n):
        job = {"base_model_id": "m-1", "dataset_id": "d-1", "prompt_id": "p-1", "adapter_name": f"bench-lora-{i:03d}",
               "lora_config": json.dumps({"r": 8, "lora_alpha": 16}), "num_cpu": 2, "num_memory": 8, "num_gpu": 1}
        name, job_input = named_input("FineTuningJob", f"bench-lora-{i:03d}", 1, store_id=BENCH_STORE_ID,
                                      build=lambda n, job=job: train_input(n, job, rows=lambda table, _id: rows[table], settings=settings))
        assert job_input is not None
        JobInput.model_validate(job_input)  # exactly what ftctl would send
        out.append((name, job_input))
    return out


def add_other_jobs(cml: FakeCML, n: int) -> None:
    """Jobs of other people in the project, half of them with a run (the default script: it succeeds)."""
    client = CMLClient.from_environ(cml.env())
    for i in range(n):
        kind = ("nightly-etl", "weekly-report", "ad-hoc-notebook", "nightly-feature-refresh", "model-monitoring")[i % 5]
        job = cml.add_job(f"{kind}-{i:02d}", f"scripts/{kind}.py", DEFAULT_RUNTIME, cpu=1, memory=4,
                          environment={"OWNER": f"user{i % 7}"})
        if i % 2 == 0:
            client.create_job_run(job.id)


@contextmanager
def project(page_size: int = CLIENT_PAGE_SIZE) -> Iterator[tuple[FakeCML, CMLBackend, list[str]]]:
    """A fake CML holding the templates, N_OTHER other jobs and N_JOBS running ftctl jobs; the
    backend (client page size `page_size`) and the ftctl jobs' names. Counters are reset."""
    with FakeCML(page_size=CLIENT_PAGE_SIZE, id_seed=7) as cml, tempfile.TemporaryDirectory() as folder:
        cml.add_studio_templates()
        add_other_jobs(cml, N_OTHER)
        cml.script_job("ftctl-train-", "hang")
        client = CMLClient.from_environ(cml.env(), page_size=page_size)
        # project_dir: an empty folder, so no progress file of a real job is read
        backend = CMLBackend(client, CMLSettings(project_dir=folder), ".app/jobs", environ={})
        names = []
        for name, job_input in train_inputs(N_JOBS, JobSettings()):
            backend.launch(name, "train", job_input)
            names.append(name)
        settle(cml, lambda: backend.observe_many(names), names)
        cml.reset_counters()
        client.calls = 0
        yield cml, backend, names
        if cml.server_errors or cml.callback_errors:
            raise CMLBenchError(f"the fake CML failed: {cml.server_errors or cml.callback_errors}")


def settle(cml: FakeCML, observe: Callable[[], object], names: list[str], tries: int = 5) -> None:
    """Observe until every named job's run shows ENGINE_RUNNING (each observation moves a run one
    status along its script: SCHEDULING, STARTING, RUNNING, then it hangs)."""
    for _ in range(tries):
        if all(_status(cml, name) == RUNNING for name in names):
            return
        observe()
    states = Counter(_status(cml, name) for name in names)
    raise CMLBenchError(f"the jobs did not reach {RUNNING}: {dict(states)}")


def _status(cml: FakeCML, name: str) -> str:
    jobs = cml.jobs_named(name)
    runs = cml.runs_of(jobs[0]) if len(jobs) == 1 else []
    return runs[-1].status if len(runs) == 1 else f"{len(jobs)} jobs, {len(runs)} runs"


# -- in-process: observe_many against one observe per job ----------------------------------------------


def measure_backend(name: str, page_size: int, observe: Callable[[CMLBackend, list[str]], dict[str, Any]], *,
                    target: int | None, runs: int = RUNS) -> Figure:
    figure = Figure(name, target=target)
    with project(page_size) as (cml, backend, names):
        for i in range(runs + 1):
            cml.reset_counters()
            backend.client.calls = 0
            start = time.perf_counter()
            seen = observe(backend, names)
            elapsed = time.perf_counter() - start
            running = sum(1 for n in names if seen[n].state is JobState.RUNNING)
            if running != len(names):
                raise CMLBenchError(f"{name}: {running} of {len(names)} jobs observed running")
            if i:  # run 0 is the warm-up
                figure.times.append(elapsed)
                figure.calls.append(sum(cml.calls.values()))
                figure.client_calls.append(backend.client.calls)
                figure.by_operation = Counter(cml.calls)
    return figure


def observe_many(backend: CMLBackend, names: list[str]) -> dict[str, Any]:
    return backend.observe_many(names)


def observe_each(backend: CMLBackend, names: list[str]) -> dict[str, Any]:
    return {name: backend.observe(name) for name in names}


# -- end to end: `ftctl status` on a store of 100 FineTuningJobs applied with --backend cml ------------------


def write_manifests(root: Path, n: int) -> Path:
    """A project of n FineTuningJobs sharing one model, dataset, prompt and pair of configs."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    rows = ["instruction,intent"] + [f"Customer {i} asks to cancel,cancel_order" for i in range(20)]
    (root / "data" / "tickets.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    def doc(kind: str, name: str, spec: dict[str, Any]) -> str:
        return json.dumps({"apiVersion": "ftctl/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})

    docs = [
        doc("Dataset", "bench-tickets", {"type": "project_csv", "location": "data/tickets.csv"}),
        doc("Model", "bench-model", {"type": "huggingface", "huggingface_model_name": "HuggingFaceTB/SmolLM2-135M"}),
        doc("Prompt", "bench-prompt", {"dataset": "bench-tickets", "prompt_template": "### CUSTOMER: {instruction}\n### ACTION: {intent}",
                                       "input_template": "### CUSTOMER: {instruction}\n### ACTION: ", "completion_template": "{intent}"}),
        doc("Config", "bench-lora", {"type": "lora_config", "config": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                                                                      "bias": "none", "task_type": "CAUSAL_LM"}}),
        doc("Config", "bench-training", {"type": "training_arguments", "config": {"num_train_epochs": 1, "learning_rate": 2e-4}}),
    ]
    docs += [doc("FineTuningJob", f"bench-lora-{i:03d}", {
        "base_model": "bench-model", "dataset": "bench-tickets", "prompt": "bench-prompt", "adapter_name": f"bench-lora-{i:03d}",
        "lora_config": "bench-lora", "training_arguments": "bench-training", "resources": {"cpu": 2, "memory": 8, "gpu": 1},
    }) for i in range(n)]
    manifest = root / "jobs.yaml"  # JSON documents are YAML
    manifest.write_text("---\n".join(d + "\n" for d in docs), encoding="utf-8")
    return manifest


def _ftctl(argv: list[str], env: dict[str, str], *, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=WORK)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        err = "\n  ".join(proc.stderr.splitlines()[-30:]) or "(empty)"
        raise CMLBenchError(f"`{' '.join(argv)}` exited {proc.returncode}\nstderr:\n  {err}")
    return elapsed, proc


def measure_cli(runs: int = RUNS) -> tuple[Figure, Counter[str]]:
    """`ftctl status` on a store of N_JOBS FineTuningJobs running on (fake) CML; also the apply's calls."""
    figure = Figure(f"ftctl status --offline --format json, {N_JOBS} jobs", target=TARGET_CALLS)
    manifest = write_manifests(WORK / "project", N_JOBS)
    db = WORK / "state.db"
    for suffix in ("", "-wal", "-shm", "-journal"):  # a fresh store: the fake CML starts empty too
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with FakeCML(page_size=CLIENT_PAGE_SIZE, id_seed=7) as cml:
        cml.add_studio_templates()
        add_other_jobs(cml, N_OTHER)
        cml.script_job("ftctl-train-", "hang")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "FTCTL_BACKEND")}
        env |= cml.env() | {
            "FTCTL_CACHE_DIR": str(WORK / "cache"),
            "FTCTL_JOBS_DIR": ".app/jobs",
            "FTCTL_CML_PROJECT_DIR": str(WORK),  # no job writes here: no progress or result is found
            "FTCTL_CML_RUNNERS_DIR": "runners",  # the fake runs nothing: any folder will do
            "HF_HUB_OFFLINE": "1",
        }
        cml.reset_counters()
        _ftctl([FTCTL, "apply", "--offline", "--auto-approve", "--create-store", "--backend", "cml", "--store", str(db), str(manifest)], env)
        applied = Counter(cml.calls)
        launched = [j for j in cml.jobs.values() if j.name.startswith("ftctl-train-")]
        if len(launched) != N_JOBS or applied["create_job_run"] != N_JOBS:
            raise CMLBenchError(f"apply launched {len(launched)} CML jobs and {applied['create_job_run']} runs, not {N_JOBS}")
        status = [FTCTL, "status", "--offline", "--format", "json", "--store", str(db), str(manifest)]
        settle(cml, lambda: _ftctl(status, env, ok=(0, 2)), [j.name for j in launched])
        for i in range(runs + 1):
            cml.reset_counters()
            elapsed, proc = _ftctl(status, env, ok=(0, 2))
            jobs = json.loads(proc.stdout)["jobs"]
            running = [j for j in jobs if j["backend"] == "cml" and j["state"] == "running"]
            if len(running) != N_JOBS:
                states = Counter((j["backend"], j["state"]) for j in jobs)
                raise CMLBenchError(f"ftctl status showed {dict(states)}, not {N_JOBS} cml jobs running")
            if i:
                figure.times.append(elapsed)
                figure.calls.append(sum(cml.calls.values()))
                figure.by_operation = Counter(cml.calls)
        if cml.server_errors:
            raise CMLBenchError(f"the fake CML failed: {cml.server_errors}")
    return figure, applied


def measure() -> tuple[list[Figure], Counter[str]]:
    """Every figure of this benchmark, and the CML calls of the apply that launched the CLI's jobs."""
    figures = [
        measure_backend(f"observe_many, {N_JOBS} jobs, page size {CLIENT_PAGE_SIZE} (client default)",
                        CLIENT_PAGE_SIZE, observe_many, target=TARGET_CALLS),
        measure_backend(f"observe_many, {N_JOBS} jobs, page size {FAKE_PAGE_SIZE} (fake's default)",
                        FAKE_PAGE_SIZE, observe_many, target=None),
        measure_backend(f"observe(name) once per job, {N_JOBS} jobs (naive)",
                        CLIENT_PAGE_SIZE, observe_each, target=None),
    ]
    cli, applied = measure_cli()
    return [*figures, cli], applied


def describe(figure: Figure) -> str:
    """`calls N (…by operation…), wall median [min–max]` of a figure."""
    calls = f"{min(figure.calls)}" if min(figure.calls) == max(figure.calls) else f"{min(figure.calls)}–{max(figure.calls)}"
    client = f", client sent {max(figure.client_calls)}" if figure.client_calls else ""
    unit, scale = ("s", 1.0) if statistics.median(figure.times) >= 1 else ("ms", 1000.0)
    wall = (f"{statistics.median(figure.times) * scale:.1f} {unit} "
            f"[{min(figure.times) * scale:.1f}–{max(figure.times) * scale:.1f}] (n={len(figure.times)})")
    return f"{calls} CML API calls ({figure.operations()}{client}); wall {wall}"


def verdict_line(figure: Figure) -> str:
    return f"{figure.verdict}  {TARGET}: {figure.name} made {max(figure.calls)} calls ({figure.operations()})"


def main() -> int:
    print(f"Status of {N_JOBS} running ftctl jobs on CML (fake CML API on loopback; project of "
          f"{N_JOBS + N_OTHER + 2} jobs: {N_JOBS} ftctl, {N_OTHER} others, 2 Studio templates)")
    try:
        figures, applied = measure()
    except (CMLBenchError, OSError, ValueError, KeyError) as exc:
        print(f"FAIL  {exc}")
        return 1
    for figure in figures:
        print(f"  {figure.name}:\n    {describe(figure)}")
    print(f"  (the apply that launched the {N_JOBS} jobs: "
          + ", ".join(f"{op} {n}" for op, n in sorted(applied.items())) + ")")
    for figure in figures:
        if figure.target is not None:
            print(verdict_line(figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
