"""Small YAML files that would exhaust memory or time: the real CLI in a subprocess with its memory
and time capped by the harness (RLIMIT_AS, timeout), never by a speed assertion. Each gets a clear
diagnostic, no traceback, and uses nothing of the file it refuses.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reconciler.manifests import yamlsafe
from tests.e2e.helpers import ftctl, show

CAP = 2 * 1024**3
TIMEOUT = 60
HEADER = "apiVersion: ftctl/v1\nkind: Dataset\n"


def validate(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    (tmp_path / "ftctl.toml").write_text("")
    (tmp_path / "m.yaml").write_text(text)
    proc = ftctl(tmp_path, "validate", "--offline", "m.yaml", timeout=TIMEOUT, memory_cap=CAP)
    assert "Traceback" not in proc.stdout + proc.stderr, show(proc)
    return proc


def test_a_megabyte_string_aliased_90000_times_is_one_ld005(tmp_path: Path) -> None:
    """90,000 aliases pass the 100,000-value limit; the characters they expand to (~90 GB) do not."""
    text = (HEADER + "metadata: {name: big}\nspec:\n  type: project_csv\n  location: d.csv\n"
            f"  description: &s {'x' * 1_000_000}\n  labels: [" + ", ".join(["*s"] * 90_000) + "]\n")
    proc = validate(tmp_path, text)
    assert proc.returncode == 1, show(proc)
    assert proc.stdout.count("LD-005 error: the file expands past") == 1, show(proc)


def test_500_documents_each_under_the_document_limit_are_one_ld005(tmp_path: Path) -> None:
    """Each document expands to 90,000 values (under the 100,000 per document); 500 of them are 45
    million values from a file of 150 KB."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [" + ", ".join(["*a"] * 10) + "]\nc: &c [" + ", ".join(["*b"] * 10) + "]\n"
    doc = HEADER + "metadata: {name: n}\nspec:\n  type: project_csv\n  location: d.csv\n" + bomb + "d: [" + ", ".join(["*c"] * 100) + "]\n"
    proc = validate(tmp_path, "---\n".join([doc] * 500))
    assert proc.returncode == 1, show(proc)
    assert proc.stdout.count("LD-005") == 1 and "the file expands past" in proc.stdout, show(proc)


def test_300000_diagnostics_in_one_file_are_all_positioned(tmp_path: Path) -> None:
    """Every unknown field is an SC-001 at its own line: positions come from one index of line
    starts, so the run is linear in the number of diagnostics."""
    n = 300_000
    text = HEADER + "metadata: {name: many}\nspec:\n  type: project_csv\n  location: d.csv\n" + "".join(f"  k{i}: 1\n" for i in range(n))
    proc = validate(tmp_path, text)
    assert proc.returncode == 1, show(proc)
    lines = [line for line in proc.stdout.splitlines() if " SC-001 error: " in line]
    assert len(lines) == n, show(proc)
    assert lines[0].startswith("m.yaml:7:3: ") and lines[-1].startswith(f"m.yaml:{n + 6}:3: "), (lines[0], lines[-1])


def test_an_alias_bomb_in_one_document_still_names_that_document(tmp_path: Path) -> None:
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 6))
    fine = HEADER + "metadata: {name: fine}\nspec: {type: project_csv, location: d.csv}\n"
    proc = validate(tmp_path, fine + "---\n" + HEADER + "metadata: {name: laughs}\n" + laughs)
    assert "m.yaml:6:1: LD-005 error: document 2 expands past 100,000 values through aliases" in proc.stdout, show(proc)


@pytest.mark.parametrize("seed", range(5))
def test_line_positions_match_counting_newlines(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(["a", "b", "\n", "\r", "é"]) for _ in range(500))
    lines = yamlsafe.Lines(text)
    for index in [*range(0, len(text) + 1, 7), len(text), len(text) + 5, -1]:
        clamped = max(0, min(index, len(text)))
        expected = (text.count("\n", 0, clamped) + 1, clamped - (text.rfind("\n", 0, clamped) + 1) + 1)
        assert lines.position(index) == expected
