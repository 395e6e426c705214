"""`make bench`: wall-clock figures for whole `ftctl` processes, each against its target.

Every figure is the median of several runs (min–max beside it) after one uncounted warm-up run,
timed with `time.perf_counter()` around `subprocess.run`, as in reference/perf.md. Generated
projects live under `.bench/` and are reused while the generator and N are unchanged.

This is a report, not a test: a missed target still exits 0. It exits 1 when an ftctl run fails
(an exit code the command does not document, or validate reporting errors on a generated project,
which is valid by construction; apply or plan failing, or a plan showing other than the changes
made). Further sections are functions returning `Measurement`s, called from `main`; the training
throughput section (tests/bench/train_throughput.py) needs the ML stack (`make install-train`) and is
skipped without it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
GENERATOR = Path(__file__).with_name("generate.py")
sys.path.insert(0, str(REPO))
from tests.bench.generate import generate_project  # noqa: E402
from tests.e2e.helpers import DEMO_MODEL, copy_specs  # noqa: E402

FTCTL = str(REPO / ".venv" / "bin" / "ftctl") if (REPO / ".venv" / "bin" / "ftctl").exists() else "ftctl"
# Bytecode caching on, as for any installed tool (and as `make` exports it): otherwise every run
# recompiles the reconciler package and that, not ftctl, dominates start-up.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["FTCTL_CACHE_DIR"] = str(BENCH_DIR / "cache")  # never the user's own parse cache
CHILD_ENV["FTCTL_BACKEND"] = "fake"  # generated projects record their jobs; the launch section runs real ones
CHILD_ENV["FTCTL_JOBS_DIR"] = str(BENCH_DIR / "jobs")  # emptied with each fresh store


@dataclass
class Measurement:
    name: str
    times: list[float] = field(default_factory=list)  # seconds (or `unit`), counted runs only
    target: float | None = None  # seconds (or `unit`); None = report only
    error: str | None = None  # set when a run failed: the figure is not valid
    unit: str = "s"  # "s": lower is better, the target an upper bound; any other unit: a lower bound
    digits: int = 3
    at_most: bool = False  # a count (unit other than "s") whose target is an upper bound (<=), e.g. API calls

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def verdict(self) -> str:
        if self.error:
            return "FAIL"
        if self.target is None:
            return ""
        if self.unit != "s":
            if self.at_most:
                return "PASS" if self.median <= self.target else "MISS"
            return "PASS" if self.median >= self.target else "MISS"
        return "PASS" if self.median < self.target else "MISS"

    def row(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        bound = "<" if self.unit == "s" else "<=" if self.at_most else ">="
        target = f"{bound} {self.target:.2f}{unit}" if self.target is not None else "-"
        if self.error or not self.times:
            return f"  {self.name:<62} {'-':>9} {'':>17}  {target:>9}  {self.verdict}"
        d = self.digits
        spread = f"[{min(self.times):.{d}f}–{max(self.times):.{d}f}]"
        value = f"{self.median:>7.{d}f}{unit}" if self.unit == "s" else f"{self.median:>9.{d}f}"
        return f"  {self.name:<62} {value} {spread:>17}  {target:>9}  {self.verdict}  (n={len(self.times)})"


def section(title: str, *notes: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")
    for note in notes:
        print(f"  {note}")
    print(f"  {'measurement':<62} {'median':>9} {'min–max':>17}  {'target':>9}")


def failure(argv: Sequence[str], proc: subprocess.CompletedProcess[str], why: str = "") -> str:
    """What to print for a failed run: the command, its exit code, stderr in full (to 40 lines), stdout's head."""
    err = proc.stderr.splitlines()
    shown = err if len(err) <= 40 else [*err[:20], f"… {len(err) - 40} lines …", *err[-20:]]
    out = proc.stdout.splitlines()[:10]
    text = f"`{' '.join(argv)}` exited {proc.returncode}{': ' + why if why else ''}"
    text += "\nstderr:\n  " + ("\n  ".join(shown) if shown else "(empty)")
    if out:
        text += "\nstdout (head):\n  " + "\n  ".join(out)
    return text


def time_command(
    name: str, argv: Sequence[str], *, runs: int, target: float | None, ok: Callable[[int], bool] = (0).__eq__
) -> Measurement:
    """Time `argv` as a whole process: one warm-up, then `runs` counted runs."""
    m = Measurement(name, target=target)
    for i in range(runs + 1):
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=CHILD_ENV, cwd=REPO)
        except OSError as exc:
            m.error = f"`{' '.join(argv)}` could not start: {exc}"
            break
        elapsed = time.perf_counter() - start
        if not ok(proc.returncode):
            m.error = failure(argv, proc)
            break
        if i:  # run 0 is the warm-up
            m.times.append(elapsed)
    print(m.row(), flush=True)
    if m.error:
        print("    " + m.error.replace("\n", "\n    "), flush=True)
    return m


def project(n: int, files: str) -> Path:
    """A generated project under .bench/, regenerated when the generator or N changed."""
    root = BENCH_DIR / f"project-{n}-{files}"
    stamp = BENCH_DIR / f"project-{n}-{files}.stamp"
    want = f"{hashlib.sha256(GENERATOR.read_bytes()).hexdigest()} {n} {files}\n"
    if root.is_dir() and stamp.exists() and stamp.read_text() == want:
        return root
    shutil.rmtree(root, ignore_errors=True)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_project(tmp, n, files=files)
    tmp.rename(root)
    stamp.write_text(want)
    return root


def bench_cli() -> list[Measurement]:
    section("CLI start-up and offline validation (whole process)")
    out = [time_command("ftctl --help", [FTCTL, "--help"], runs=10, target=0.3)]
    for n, files, runs, target in ((1_000, "many", 5, None), (10_000, "many", 3, 2.0), (10_000, "one", 3, 2.0)):
        root = project(n, files)
        label = f"validate --offline, {n:,} resources, {'1 file' if files == 'one' else f'{n:,} files'}"
        # warm: the parse cache holds every file (the usual case: most files unchanged)
        out.append(time_command(label + ", cached", [FTCTL, "validate", "--offline", str(root)], runs=runs, target=target))
        # cold: every file parsed again (first run, or --no-cache)
        cold = [FTCTL, "validate", "--offline", "--no-cache", str(root)]
        out.append(time_command(label + ", no cache", cold, runs=runs, target=target))
    return out


# -- plan and apply --------------------------------------------------------------------------------

SUMMARY = re.compile(
    r"(?P<create>\d+) to create, (?P<update>\d+) to update, (?P<replace>\d+) to replace, "
    r"(?P<delete>\d+) to delete, (?P<noop>\d+) unchanged(?:, (?P<waiting>\d+) waiting)?"
)
EDITED = ("dataset/000/ds-00000.yaml", "Dataset/ds-00000", "description: Support tickets, slice 0\n")


class BenchError(Exception):
    """An ftctl run failed or showed something other than what was set up; the message says what."""


def run_ftctl(argv: Sequence[str], *, expect: int) -> tuple[float, subprocess.CompletedProcess[str]]:
    """One whole `ftctl` process, timed; BenchError unless it exits `expect`.

    FTCTL_DEBUG=1 changes nothing but the failure path: an internal error prints its traceback.
    """
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env={**CHILD_ENV, "FTCTL_DEBUG": "1"}, cwd=REPO)
    except OSError as exc:
        raise BenchError(f"`{' '.join(argv)}` could not start: {exc}") from exc
    elapsed = time.perf_counter() - start
    if proc.returncode != expect:
        raise BenchError(failure(argv, proc, f"expected exit {expect}"))
    return elapsed, proc


def plan_counts(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The counts of a text plan's summary line ("Plan for … : 0 to create, 1 to update, …")."""
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    match = SUMMARY.search(first)
    if not match:
        raise BenchError(failure(argv, proc, "no plan summary line on stdout"))
    return {k: int(v or 0) for k, v in match.groupdict().items()}


def expect_counts(argv: Sequence[str], proc: subprocess.CompletedProcess[str], **want: int) -> dict[str, int]:
    counts = plan_counts(argv, proc)
    wrong = {k: counts[k] for k, v in want.items() if counts[k] != v}
    if wrong:
        raise BenchError(failure(argv, proc, f"plan counts {counts}, expected {want}"))
    return counts


def fresh_store(name: str) -> Path:
    db = BENCH_DIR / "stores" / f"{name}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(CHILD_ENV["FTCTL_JOBS_DIR"], ignore_errors=True)  # the fake jobs of the previous store
    return db


def store_contents(db: Path) -> dict[str, int]:
    """Rows per table of a store, read with the stdlib (not ftctl)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def journal_states(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM ftctl_journal GROUP BY state").fetchall())


def report(m: Measurement) -> Measurement:
    print(m.row(), flush=True)
    if m.error:
        print("    " + m.error.replace("\n", "\n    "), flush=True)
    return m


def bench_plan_apply() -> list[Measurement]:
    section(
        "First apply, then plan: no change, one file changed (whole process, one file per resource)",
        "1,000-resource first apply: target < 1 s",
        "10,000-resource no-change plan: target < 2 s",
    )
    out: list[Measurement] = []
    for n, runs, apply_target, plan_target in ((1_000, 5, 1.0, None), (10_000, 3, None, 2.0)):
        out += _apply_and_plan(n, runs=runs, apply_target=apply_target, plan_target=plan_target)
    return out


def _apply_and_plan(n: int, *, runs: int, apply_target: float | None, plan_target: float | None) -> list[Measurement]:
    root = project(n, "many")
    label = f"{n:,} resources"
    apply_m = Measurement(f"apply, first (fresh store), {label}", target=apply_target)
    first_m = Measurement(f"plan, no change, first after apply, {label}", target=plan_target)
    warm_m = Measurement(f"plan, no change, again (cached parse), {label}", target=plan_target)
    cold_m = Measurement(f"plan, no change, --no-cache, {label}", target=plan_target)
    edit_m = Measurement(f"plan, 1 file changed (expect 1 update), {label}", target=None)
    measurements = [apply_m, first_m, warm_m, cold_m, edit_m]
    current = apply_m
    db = BENCH_DIR / "stores" / f"apply-{n}.db"
    applied: dict[str, int] = {}
    steps_shown = ""
    try:
        # Each repetition: a fresh store, the first apply into it, then the first plan after it.
        for i in range(runs + 1):
            db = fresh_store(f"apply-{n}")
            apply = [FTCTL, "apply", "--offline", "--auto-approve", "--create-store", "--store", str(db), str(root)]
            current = apply_m
            elapsed, proc = run_ftctl(apply, expect=0)
            applied = expect_counts(apply, proc, update=0, replace=0, delete=0, noop=0)
            steps = re.findall(r"^\[(\d+)/(\d+)\]", proc.stderr, re.M)
            steps_shown = steps[-1][1] if steps else "0"
            if i:
                apply_m.times.append(elapsed)
            plan = [FTCTL, "plan", "--offline", "--detailed-exitcode", "--store", str(db), str(root)]
            current = first_m
            elapsed, proc = run_ftctl(plan, expect=0)
            expect_counts(plan, proc, create=0, update=0, replace=0, delete=0, noop=applied["create"])
            if i:
                first_m.times.append(elapsed)
        report(apply_m)
        report(first_m)

        current = warm_m  # the same plan again and again: parse cache warm, store unchanged
        for i in range(runs + 1):
            elapsed, proc = run_ftctl(plan, expect=0)
            expect_counts(plan, proc, create=0, update=0, replace=0, delete=0)
            if i:
                warm_m.times.append(elapsed)
        report(warm_m)

        current = cold_m  # every file parsed again, as on a machine with no parse cache
        cold = [*plan[:2], "--no-cache", *plan[2:]]
        for i in range(runs + 1):
            elapsed, proc = run_ftctl(cold, expect=0)
            expect_counts(cold, proc, create=0, update=0, replace=0, delete=0)
            if i:
                cold_m.times.append(elapsed)
        report(cold_m)

        current = edit_m  # each run a new description in one file: always the first plan after an edit
        path = root / EDITED[0]
        original = path.read_bytes()
        try:
            for i in range(runs + 1):
                text = original.decode("utf-8")
                if text.count(EDITED[2]) != 1:
                    raise BenchError(f"{path}: expected one line {EDITED[2]!r} to edit")
                path.write_text(text.replace(EDITED[2], EDITED[2][:-1] + f" (edit {i})\n"), encoding="utf-8")
                elapsed, proc = run_ftctl(plan, expect=2)
                expect_counts(plan, proc, create=0, update=1, replace=0, delete=0)
                if f"~ {EDITED[1]}:" not in proc.stdout:
                    raise BenchError(failure(plan, proc, f"the update is not {EDITED[1]}"))
                if i:
                    edit_m.times.append(elapsed)
        finally:
            path.write_bytes(original)  # the project stays as generated (the stamp says so)
        report(edit_m)
    except BenchError as exc:
        current.error = str(exc)
        report(current)
        return [m for m in measurements if m.times or m is current]

    # For contrast: what the (last) first apply wrote, and in how many journaled steps.
    rows = store_contents(db)
    studio = {t: c for t, c in rows.items() if not t.startswith(("ftctl_", "alembic_", "sqlite_")) and c}
    journal = journal_states(db)
    waiting = applied.get("waiting", 0)
    print(f"    first apply wrote: {sum(studio.values()):,} Studio rows ("
          + ", ".join(f"{t} {c:,}" for t, c in sorted(studio.items())) + "); "
          f"ftctl_objects {rows.get('ftctl_objects', 0):,}, ftctl_history {rows.get('ftctl_history', 0):,}, "
          f"ftctl_applies {rows.get('ftctl_applies', 0)}")
    print(f"    {applied['create']:,} created, {waiting:,} waiting for a fine-tuning job's output (not written); "
          f"journal: {sum(journal.values())} steps ("
          + ", ".join(f"{c} {s}" for s, c in sorted(journal.items())) + f"), progress showed {steps_shown}; "
          f"store {db.stat().st_size / 1e6:.1f} MB", flush=True)
    if journal.keys() - {"done"} or sum(journal.values()) != int(steps_shown):
        apply_m.error = f"journal {journal} does not match the {steps_shown} steps apply reported"
        print("    " + apply_m.error, flush=True)
    return measurements


# -- status of running CML jobs ----------------------------------------------------------------------


def bench_cml_status() -> list[Measurement]:
    """CML API calls and wall time to reconcile the status of 100 running CML jobs (tests/bench/cml_status.py)."""
    from tests.bench import cml_status as cs

    section(
        f"Status of {cs.N_JOBS} running CML jobs: API calls and wall time (fake CML API on loopback)",
        f"project of {cs.N_JOBS + cs.N_OTHER + 2} jobs: {cs.N_JOBS} ftctl training jobs (hanging in ENGINE_RUNNING), "
        f"{cs.N_OTHER} others, the Studio's 2 templates",
        f"calls: CML API requests the fake served, per run; target {cs.TARGET}",
    )
    try:
        figures, applied = cs.measure()
    except (cs.CMLBenchError, OSError, ValueError, KeyError) as exc:
        return [report(Measurement(f"status of {cs.N_JOBS} running CML jobs", error=str(exc)))]
    out: list[Measurement] = []
    for figure in figures:
        calls = Measurement(f"{figure.name}: calls", times=[float(c) for c in figure.calls], target=figure.target,
                            unit="", digits=0, at_most=True)
        out += [report(calls), report(Measurement(f"{figure.name}: wall", times=figure.times))]
        print(f"    by operation: {figure.operations()}"
              + (f"; the client sent {max(figure.client_calls)}" if figure.client_calls else ""), flush=True)
    print(f"    the apply that launched the {cs.N_JOBS} jobs: "
          + ", ".join(f"{op} {n}" for op, n in sorted(applied.items())), flush=True)
    return out


# -- training throughput ---------------------------------------------------------------------------

TINY_MODEL = BENCH_DIR / "tiny-llama"
THROUGHPUT = Path(__file__).with_name("train_throughput.py")


RANDOM_MODEL = BENCH_DIR / "random-0.5b"  # built by train_throughput.py --build-random (GPU runs)


def bench_train_throughput(epochs: int = 10, runs: int = 3, device: str = "cpu", quant: str = "none") -> list[Measurement]:
    """CPU: the tiny model, float32. CUDA: a ~0.5B Llama with random weights, bf16 LoRA, or QLoRA (4-bit) with --quant 4bit."""
    what = "tiny model, demo data, CPU" if device == "cpu" else (
        f"~0.5B random Llama, demo data, CUDA, {'4-bit QLoRA' if quant == '4bit' else 'bf16 LoRA'}")
    section(
        f"Training throughput: runners/train.py against a bare trl script ({what})",
        f"tokens processed / trainer.train() time, {epochs} epochs, each side {runs} runs, alternating, "
        "each run its own process",
        "ratio: runner / bare of each side's fastest run (contention only slows a run); target >= 0.95",
    )
    python = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
    probe = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                            "sys.exit(any(u.find_spec(m) is None for m in ('torch', 'trl', 'peft', 'mlflow')))"])
    if probe.returncode != 0:
        print("  skipped: the ML stack is not installed in the venv (run `make install-train`)")
        return []
    ratio = Measurement("ratio runner / bare trl (best run of each)", target=0.95, unit="")
    try:
        build = [python, str(REPO / "runners" / "build_tiny_model.py"), "--data",
                 str(REPO / "specs" / "demo" / "data" / "tickets.csv"), "--out", str(TINY_MODEL)]
        proc = subprocess.run(build, capture_output=True, text=True, env=CHILD_ENV, cwd=REPO)
        if proc.returncode != 0:
            raise BenchError(failure(build, proc))
        argv = [python, str(THROUGHPUT), str(TINY_MODEL), "--device", "cpu", "--epochs", str(epochs), "--runs", str(runs)]
        if device == "cuda":
            argv = [python, str(THROUGHPUT), str(RANDOM_MODEL), "--device", "cuda", "--quant", quant, "--build-random",
                    "--tokenizer", str(TINY_MODEL), "--epochs", str(epochs), "--runs", str(runs)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=CHILD_ENV, cwd=REPO)
        if proc.returncode != 0:
            raise BenchError(failure(argv, proc))
        for line in proc.stdout.splitlines():
            if line.startswith(("  run ", "  model: ")):
                print("    " + line.strip(), flush=True)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    except (BenchError, ValueError, IndexError) as exc:
        ratio.error = str(exc)
        return [report(ratio)]
    runner = report(Measurement("runner, tokens/s", times=summary["runner_all"], unit="", digits=0))
    bare = report(Measurement("bare trl, tokens/s", times=summary["bare_all"], unit="", digits=0))
    ratio.times = [summary["ratio"]]
    report(ratio)
    print(f"    best runs: runner {summary['runner_best']:.0f}, bare {summary['bare_best']:.0f} tokens/s; "
          f"medians' ratio {summary['median_ratio']:.3f}", flush=True)
    return [runner, bare, ratio]


def bench_launch(runs: int = 3) -> list[Measurement]:
    """Wall time from `ftctl apply` starting to the training job's process having started."""
    section(
        "Time from apply to a launched job (specs/demo on a fresh store, local backend)",
        "from the start of `ftctl apply --offline --auto-approve specs/demo` to the runner's launch record; "
        "the job is then stopped",
    )
    m = Measurement("apply -> training job launched", target=None)
    try:
        if not TINY_MODEL.exists():
            subprocess.run([sys.executable, str(REPO / "runners" / "build_tiny_model.py"), "--data",
                            str(REPO / "specs/demo/data/tickets.csv"), "--out", str(TINY_MODEL)],
                           check=True, capture_output=True, env=CHILD_ENV, cwd=REPO)
        for run in range(runs):
            root = BENCH_DIR / f"launch-{run}"
            shutil.rmtree(root, ignore_errors=True)
            copy_specs(root)
            (root / "ftctl.toml").touch()  # the project root (.bench is inside the checkout): its store stays here
            shutil.copytree(TINY_MODEL, root / DEMO_MODEL)  # inside the project: ftctl reads no file outside its root
            env = {**CHILD_ENV, "FTCTL_BACKEND": "local", "MLFLOW_TRACKING_URI": f"sqlite:///{root}/.app/mlflow.db",
                   "FTCTL_JOBS_DIR": str(root / ".app/jobs")}  # each run its own jobs folder (CHILD_ENV's is shared)
            started = time.time()
            argv = [FTCTL, "apply", "--offline", "--auto-approve", "--create-store", "specs/demo"]
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root)
            if proc.returncode != 0:
                raise BenchError(failure(argv, proc))
            [launch] = (root / ".app/jobs").glob("*/ftctl-train-*/launch.json")  # <jobs>/<store id>/<job>
            m.times.append(json.loads(launch.read_text())["launched_at"] - started)
            subprocess.run([FTCTL, "cancel", "FineTuningJob/demo-ticketing-lora"], capture_output=True, env=env, cwd=root)
    except (BenchError, subprocess.CalledProcessError, ValueError) as exc:
        m.error = str(exc)
    return [report(m)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ftctl benchmarks (make bench [DEVICE=cuda] [QUANT=4bit])")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the training throughput's device")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none", help="cuda: QLoRA with bitsandbytes")
    args = parser.parse_args(argv)
    print("ftctl benchmarks")
    print(f"  machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
          f"{platform.system()} {platform.release()}")
    print(f"  python:  {platform.python_version()} ({sys.executable})")
    print(f"  ftctl:   {FTCTL}")
    results = bench_cli()
    results += bench_plan_apply()
    results += bench_cml_status()
    results += bench_train_throughput(device=args.device, quant=args.quant)
    results += bench_launch()
    failed = [m for m in results if m.error]
    missed = [m for m in results if m.verdict == "MISS"]
    print(f"\n{len(results)} figures: {len(results) - len(failed) - len(missed)} pass or report-only, "
          f"{len(missed)} missed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
