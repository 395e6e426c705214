"""The fake Studio store (tests/fakes/studio_store.py): schema, shipped defaults, and the read checks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.fakes.studio_store import (
    ALEMBIC_HEAD,
    SCHEMA,
    StudioReadError,
    create_studio_store,
    populate_shipped_defaults,
    studio_export_json,
    studio_read,
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    create_studio_store(path)
    return path


def _execute(path: Path, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)
    conn.close()


def test_schema_matches_the_data_tier(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        for table, columns in SCHEMA.items():
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            assert [(r[1], r[2]) for r in info] == [(c, t) for c, t, _ in columns]
            assert [r[1] for r in info if r[5]] == ["id"] and [r[1] for r in info if r[3]] == ["id"]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(ALEMBIC_HEAD,)]
    conn.close()


def test_no_alembic_table_when_asked(tmp_path: Path) -> None:
    create_studio_store(tmp_path / "s.db", alembic=False)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name='alembic_version'").fetchall()
    conn.close()


def test_shipped_defaults_round_trip(store: Path) -> None:
    ids = populate_shipped_defaults(store)
    assert {t: len(v) for t, v in ids.items() if v} == {
        "datasets": 2, "models": 3, "prompts": 2, "adapters": 2, "configs": 4}
    rows = studio_read(store)
    by_name = {r["name"]: r for r in rows["datasets"]}
    assert json.loads(by_name["philschmid/sql-create-context-copy"]["features"]) == [
        "question", "answer", "context"]
    ticketing = by_name["Ticketing Actions"]
    assert (ticketing["type"], ticketing["location"]) == ("project_csv", "data/datasets/clean_ticketing.csv")
    assert json.loads(ticketing["features"]) == ["instruction", "intent"]
    assert all(m["name"] == m["huggingface_model_name"] and m["framework"] == "" for m in rows["models"])
    model_ids = {m["name"]: m["id"] for m in rows["models"]}
    llama = next(a for a in rows["adapters"] if a["name"] == "llama-2-sql")
    assert llama["model_id"] == model_ids["NousResearch/Llama-2-7b-hf"]
    assert llama["location"] == "data/adapters/llama-2-sql"
    assert {c["is_default"] for c in rows["configs"]} == {1}
    lora = next(c for c in rows["configs"] if c["type"] == "lora_config")
    assert lora["config"] == json.dumps({"r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                                         "bias": "none", "task_type": "CAUSAL_LM"})
    exported = studio_export_json(store)
    assert "framework" not in exported["models"][0] and exported["fine_tuning_jobs"] == []


def test_null_reads_as_protobuf_defaults(store: Path) -> None:
    _execute(store, "INSERT INTO fine_tuning_jobs (id, adapter_name) VALUES ('j1', 'a1')")
    job = studio_read(store)["fine_tuning_jobs"][0]
    assert (job["num_cpu"], job["learning_rate"], job["out_dir"]) == (0, 0.0, "")
    assert studio_export_json(store)["fine_tuning_jobs"] == [{"id": "j1", "adapter_name": "a1"}]


def test_float_in_integer_column_fails(store: Path) -> None:
    _execute(store, "INSERT INTO fine_tuning_jobs (id, num_cpu) VALUES ('j1', 1.5)")
    with pytest.raises(StudioReadError, match=r"fine_tuning_jobs id='j1' column 'num_cpu'"):
        studio_read(store)


def test_text_in_double_column_fails(store: Path) -> None:
    _execute(store, "INSERT INTO fine_tuning_jobs (id, learning_rate) VALUES ('j1', 'fast')")
    with pytest.raises(StudioReadError, match=r"fine_tuning_jobs .*'learning_rate'"):
        studio_read(store)


@pytest.mark.parametrize("features", ['{"a": 1}', "question,answer", "[1, 2]"])
def test_bad_features_fail(store: Path, features: str) -> None:
    _execute(store, "INSERT INTO datasets (id, type, name, features) VALUES ('d1', 'project', 'x', ?)",
             (features,))
    with pytest.raises(StudioReadError, match=r"datasets id='d1' column 'features'"):
        studio_read(store)


def test_bad_json_config_fails_but_axolotl_yaml_passes(store: Path) -> None:
    _execute(store, "INSERT INTO configs (id, type, config) VALUES ('c0', 'axolotl', 'a: 1')")
    studio_read(store)
    _execute(store, "INSERT INTO configs (id, type, config) VALUES ('c1', 'lora_config', 'r: 16')")
    with pytest.raises(StudioReadError, match=r"configs id='c1' column 'config'"):
        studio_read(store)


def test_duplicate_adapter_name_fails(store: Path) -> None:
    for adapter_id in ("a1", "a2"):
        _execute(store, "INSERT INTO adapters (id, type, name) VALUES (?, 'project', 'dup')", (adapter_id,))
    with pytest.raises(StudioReadError, match=r"adapters: duplicate name 'dup'"):
        studio_read(store)


def test_duplicate_config_content_fails(store: Path) -> None:
    populate_shipped_defaults(store)
    _execute(store, "INSERT INTO configs (id, type, config, is_default) VALUES ('c9', 'lora_config', ?, 0)",
             (json.dumps({"task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                          "bias": "none"}, indent=2),))
    with pytest.raises(StudioReadError, match=r"configs: duplicate 'lora_config'"):
        studio_read(store)


def test_missing_column_fails(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _execute(path, "CREATE TABLE configs (id VARCHAR NOT NULL, type VARCHAR, description VARCHAR, "
                   "config TEXT, PRIMARY KEY (id))")
    with pytest.raises(StudioReadError, match=r"configs: no such column: configs.model_family"):
        studio_read(path)
