"""Apply is idempotent: after an apply, `plan --detailed-exitcode` exits 0 ("No changes"), and a
second apply writes nothing (no history, no journal, no new serial, the same rows).

Projects: specs/demo, generated projects of 50 and 300 resources (tests/bench/generate.py), and a
Studio store made by the Studio itself (its tables and shipped defaults, tests/fakes/studio_store.py)
that ftctl applies the demo onto, with a config equal to a shipped default (shared, CF-004).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import (
    DEMO,
    apply,
    count,
    dump_all,
    dump_studio,
    make_generated,
    plan,
    query,
    show,
    steps_run,
)
from tests.fakes.studio_store import create_studio_store, populate_shipped_defaults

STORE = ".app/state.db"
# A Config whose body equals the Studio's shipped `default-lora`, and a job that uses it.
SHARED_LORA = """\
apiVersion: ftctl/v1
kind: Config
metadata: {name: studio-lora}
spec:
  type: lora_config
  config: {r: 16, lora_alpha: 32, lora_dropout: 0.05, bias: none, task_type: CAUSAL_LM}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: demo-shared-lora}
spec:
  base_model: tiny-llama
  dataset: demo-tickets
  prompt: demo-ticketing
  adapter_name: demo-shared-lora
  lora_config: studio-lora
  training_arguments: demo-training
  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}
"""


def _serial(db: Path) -> str:
    return query(db, "SELECT value FROM ftctl_meta WHERE key = 'serial'")[0][0]


def _assert_converged(root: Path, paths: list[str]) -> None:
    """plan says nothing to do; a second apply writes nothing at all."""
    db = root / STORE
    again = plan(root, *paths)
    assert again.returncode == 0, show(again)
    assert "No changes" in again.stdout, show(again)

    before = dump_all(db, skip_tables=("ftctl_lock",))
    history, journal, serial = count(db, "ftctl_history"), count(db, "ftctl_journal"), _serial(db)
    second = apply(root, *paths, seed="another-seed")  # a new seed must not matter: nothing is new
    assert second.returncode == 0, show(second)
    assert steps_run(second.stderr) == 0, show(second)
    assert count(db, "ftctl_history") == history, "a second apply added history rows"
    assert count(db, "ftctl_journal") == journal, "a second apply journaled steps"
    assert _serial(db) == serial
    assert dump_all(db, skip_tables=("ftctl_lock",)) == before


def test_demo_apply_then_plan_is_empty(demo_root: Path) -> None:
    first = apply(demo_root, DEMO)
    assert first.returncode == 0, show(first)
    assert steps_run(first.stderr) == 3
    _assert_converged(demo_root, [DEMO])


@pytest.mark.parametrize("n", [50, 300])
def test_generated_project_apply_then_plan_is_empty(demo_root: Path, n: int) -> None:
    folder = make_generated(demo_root, n)
    first = apply(demo_root, folder)
    assert first.returncode == 0, show(first)
    assert steps_run(first.stderr) >= 3
    # Evaluations and exports of the generated project all use an adapter a job has yet to train.
    waiting = sum(1 for kind in ("evaluationjob", "modelexport") for _ in (demo_root / folder / kind).rglob("*.yaml"))
    assert count(demo_root / STORE, "ftctl_objects") == n - waiting, "every resource but the waiting ones is recorded"
    _assert_converged(demo_root, [folder])


def test_apply_onto_a_studio_store_with_its_shipped_defaults(demo_root: Path) -> None:
    db = demo_root / STORE
    db.parent.mkdir(parents=True, exist_ok=True)
    create_studio_store(db)
    populate_shipped_defaults(db)
    shipped = dump_studio(db)
    (demo_root / "shared.yaml").write_text(SHARED_LORA, encoding="utf-8")
    folder = make_generated(demo_root, 20)
    paths = [DEMO, "shared.yaml", folder]

    first = apply(demo_root, *paths)

    assert first.returncode == 0, show(first)
    after = dump_studio(db)
    for table, rows in shipped.items():
        assert set(rows) <= set(after[table]), f"a shipped {table} row was changed or removed"
    # The config equal to the shipped default-lora shares its row (CF-004) instead of copying it.
    default_lora = query(db, "SELECT id FROM configs WHERE type = 'lora_config' AND is_default = 1")
    assert len(default_lora) == 1
    assert query(db, "SELECT store_id, origin FROM ftctl_objects WHERE kind = 'Config' AND name = 'studio-lora'") == [
        (default_lora[0][0], "shared")]
    _assert_converged(demo_root, paths)
