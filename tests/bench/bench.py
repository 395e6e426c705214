"""`make bench`: wall-clock figures for whole `ftctl` processes, each against its target.

Every figure is the median of several runs (min–max beside it) after one uncounted warm-up run,
timed with `time.perf_counter()` around `subprocess.run`, as in reference/perf.md. Generated
projects live under `.bench/` and are reused while the generator and N are unchanged.

This is a report, not a test: a missed target still exits 0. It exits 1 when an ftctl run fails
(an exit code the command does not document, or validate reporting errors on a generated project,
which is valid by construction). Add further sections (plan/apply, training throughput) as
functions returning `Measurement`s and call them from `main`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
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

FTCTL = str(REPO / ".venv" / "bin" / "ftctl") if (REPO / ".venv" / "bin" / "ftctl").exists() else "ftctl"
# Bytecode caching on, as for any installed tool (and as `make` exports it): otherwise every run
# recompiles the reconciler package and that, not ftctl, dominates start-up.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["FTCTL_CACHE_DIR"] = str(BENCH_DIR / "cache")  # never the user's own parse cache


@dataclass
class Measurement:
    name: str
    times: list[float] = field(default_factory=list)  # seconds, counted runs only
    target: float | None = None  # seconds; None = report only
    error: str | None = None  # set when a run failed: the figure is not valid

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def verdict(self) -> str:
        if self.error:
            return "FAIL"
        if self.target is None:
            return ""
        return "PASS" if self.median < self.target else "MISS"

    def row(self) -> str:
        target = f"< {self.target:.2f} s" if self.target is not None else "-"
        if self.error or not self.times:
            return f"  {self.name:<62} {'-':>9} {'':>17}  {target:>9}  {self.verdict}"
        spread = f"[{min(self.times):.3f}–{max(self.times):.3f}]"
        return f"  {self.name:<62} {self.median:>7.3f} s {spread:>17}  {target:>9}  {self.verdict}  (n={len(self.times)})"


def section(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")
    print(f"  {'measurement':<62} {'median':>9} {'min–max':>17}  {'target':>9}")


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
            head = "\n".join((proc.stdout + proc.stderr).splitlines()[:15])
            m.error = f"`{' '.join(argv)}` exited {proc.returncode}:\n{head}"
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


def main() -> int:
    print("ftctl benchmarks")
    print(f"  machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
          f"{platform.system()} {platform.release()}")
    print(f"  python:  {platform.python_version()} ({sys.executable})")
    print(f"  ftctl:   {FTCTL}")
    results = bench_cli()
    failed = [m for m in results if m.error]
    missed = [m for m in results if m.verdict == "MISS"]
    print(f"\n{len(results)} figures: {len(results) - len(failed) - len(missed)} pass or report-only, "
          f"{len(missed)} missed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
