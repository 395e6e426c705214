"""What apply leaves in the store is what the Studio reads: checked with the independent Studio-side
reader (`studio_read` in tests/fakes/studio_store.py) and with SQLite's own view of each value.

- Values: INTEGER columns hold integers, DOUBLE columns reals (an integer-valued float in a manifest
  included), text columns text; features are JSON lists of strings; configs are valid JSON and no
  two have the same content; the Studio's uniqueness rules hold.
- Schema: a store ftctl creates has the Studio's DDL and its alembic head; an existing Studio
  store keeps its tables as they were, and one without `alembic_version` is left without it.
- The file is in WAL mode, so the Studio's server can keep using it while ftctl writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, apply, make_generated, query, show, tables
from tests.fakes.studio_store import (
    ALEMBIC_HEAD,
    SCHEMA,
    TABLES,
    create_studio_store,
    populate_shipped_defaults,
    studio_read,
)

STORE = ".app/state.db"
SQLITE_TYPES = {"INTEGER": {"integer", "null"}, "DOUBLE": {"real", "null"}, "VARCHAR": {"text", "null"}, "TEXT": {"text", "null"}}
# Values the manifests write as integers or without a row elsewhere in the demo: int-valued floats,
# a Hub dataset with features, an evaluation of the base model alone (not waiting for an adapter).
TYPED = """\
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: hub-sql}
spec:
  type: huggingface
  huggingface_name: philschmid/sql-create-context-copy
  features: [question, context, answer]
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: typed-job}
spec:
  base_model: tiny-llama
  dataset: demo-tickets
  prompt: demo-ticketing
  adapter_name: typed-job
  lora_config: demo-lora
  training_arguments: demo-training
  num_epochs: 2
  learning_rate: 1
  dataset_fraction: 1
  train_test_split: 0.5
  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: base-only}
spec:
  dataset: demo-tickets
  prompt: demo-ticketing
  generation_config: demo-generation
  combinations: [{model: tiny-llama}]
  resources: {cpu: 2, gpu: 0, memory: 4}
"""


def _ddl(db: Path) -> dict[str, list[tuple[str, str, int, int]]]:
    """table -> (column, declared type, not null, primary key) of each Studio table."""
    return {t: [(r[1], r[2], r[3], r[5]) for r in query(db, f"PRAGMA table_info({t})")] for t in TABLES}


def _create_statements(db: Path) -> list[tuple[str, str]]:
    """(table, CREATE statement) of each Studio table, as SQLite keeps it."""
    rows = query(db, "SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    return sorted((name, sql) for name, sql in rows if name in TABLES)


def _check_values(db: Path) -> None:
    rows = studio_read(db)  # raises StudioReadError where the Studio would fail or break its rules
    for table, cols in SCHEMA.items():
        for column, sql_type, _ in cols:
            found = {r[0] for r in query(db, f"SELECT DISTINCT typeof({column}) FROM {table}")}
            assert found <= SQLITE_TYPES[sql_type], f"{table}.{column} ({sql_type}) holds {sorted(found)}"
    for row in rows["datasets"]:
        features = json.loads(row["features"])
        assert isinstance(features, list) and features and all(isinstance(f, str) for f in features), row
    contents = []
    for row in rows["configs"]:
        if row["type"] != "axolotl":
            contents.append((row["type"], json.dumps(json.loads(row["config"]), sort_keys=True)))
    assert len(contents) == len(set(contents)), "two configs with the same content"
    for table, column in (("fine_tuning_jobs", "lora_config"), ("fine_tuning_jobs", "training_arguments_config"),
                          ("evaluation_jobs", "generation_config")):
        for (text,) in query(db, f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL AND {column} != ''"):
            assert isinstance(json.loads(text), dict), f"{table}.{column} is not a JSON object: {text!r}"


@pytest.mark.parametrize("project", ["demo", "generated-40"])
def test_the_studio_reads_what_apply_wrote(demo_root: Path, project: str) -> None:
    if project == "demo":
        (demo_root / "typed.yaml").write_text(TYPED, encoding="utf-8")
        paths = [DEMO, "typed.yaml"]
    else:
        paths = [make_generated(demo_root, 40)]  # 4 groups: 4 distinct Hub models (see the duplicate test below)
    applied = apply(demo_root, *paths)
    assert applied.returncode == 0, show(applied)
    db = demo_root / STORE
    _check_values(db)
    if project == "demo":
        assert query(db, "SELECT typeof(learning_rate), learning_rate, typeof(dataset_fraction), dataset_fraction, "
                         "typeof(num_epochs) FROM fine_tuning_jobs WHERE adapter_name = 'typed-job'") == [
            ("real", 1.0, "real", 1.0, "integer")]
        assert query(db, "SELECT features FROM datasets WHERE type = 'huggingface'") == [('["question", "context", "answer"]',)]
        assert len(query(db, "SELECT id FROM evaluation_jobs")) == 1


def test_a_new_store_has_the_studio_schema_and_alembic_head(demo_root: Path, tmp_path: Path) -> None:
    applied = apply(demo_root, DEMO)
    assert applied.returncode == 0, show(applied)
    db = demo_root / STORE
    assert query(db, "SELECT version_num FROM alembic_version") == [(ALEMBIC_HEAD,)]
    reference = tmp_path / "studio.db"
    create_studio_store(reference)
    assert _ddl(db) == _ddl(reference), "ftctl's Studio tables differ from what the Studio's ORM creates"
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("alembic", [False, True], ids=["without-alembic", "with-alembic"])
def test_an_existing_studio_store_is_used_as_it_is(demo_root: Path, alembic: bool) -> None:
    db = demo_root / STORE
    db.parent.mkdir(parents=True, exist_ok=True)
    create_studio_store(db, alembic=alembic)
    populate_shipped_defaults(db)
    ddl, sql = _ddl(db), _create_statements(db)

    applied = apply(demo_root, DEMO)

    assert applied.returncode == 0, show(applied)
    assert _ddl(db) == ddl and _create_statements(db) == sql, "the Studio's tables must never be altered"
    if alembic:
        assert query(db, "SELECT version_num FROM alembic_version") == [(ALEMBIC_HEAD,)]
    else:
        assert "alembic_version" not in tables(db), "ftctl stamped an existing Studio store"
    assert {t for t in tables(db) if t.startswith("ftctl_")} >= {"ftctl_objects", "ftctl_journal", "ftctl_history", "ftctl_lock"}
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    _check_values(db)


# The Studio refuses a second row for a Hub model or Hub dataset it already has (`add_model`,
# `add_dataset` check huggingface_model_name / huggingface_name), and studio_read enforces it.
TWO_HUB_MODELS = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: bloom-a}
spec: {type: huggingface, huggingface_model_name: bigscience/bloom-560m}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: bloom-b}
spec: {type: huggingface, huggingface_model_name: bigscience/bloom-560m}
"""
TWO_HUB_DATASETS = """\
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: sql-a}
spec: {type: huggingface, huggingface_name: philschmid/sql-create-context-copy, features: [question, context, answer]}
---
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: sql-b}
spec: {type: huggingface, huggingface_name: philschmid/sql-create-context-copy, features: [question, context, answer]}
"""
SHIPPED_HUB_MODEL = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: my-bloom}
spec: {type: huggingface, huggingface_model_name: bigscience/bloom-1b1}
"""


@pytest.mark.parametrize("case", ["two-hub-models", "two-hub-datasets", "hub-model-already-in-the-store"])
def test_apply_never_breaks_the_studios_hub_name_uniqueness(demo_root: Path, case: str) -> None:
    """Either ftctl refuses (validation error, exit 1, or a blocked plan, exit 3) or the store it
    leaves is one the Studio accepts: never a second row for the same Hub id."""
    db = demo_root / STORE
    text = {"two-hub-models": TWO_HUB_MODELS, "two-hub-datasets": TWO_HUB_DATASETS, "hub-model-already-in-the-store": SHIPPED_HUB_MODEL}[case]
    if case == "hub-model-already-in-the-store":
        db.parent.mkdir(parents=True, exist_ok=True)
        create_studio_store(db)
        populate_shipped_defaults(db)
    (demo_root / "hub.yaml").write_text(text, encoding="utf-8")

    applied = apply(demo_root, "hub.yaml")

    assert applied.returncode in (0, 1, 3) and "internal error" not in applied.stderr, show(applied)
    if db.exists():
        studio_read(db)
