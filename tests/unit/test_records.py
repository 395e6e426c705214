"""Studio rows as values (`reconciler.records`): how each value format compares as the Studio sees it
(NULL and '' alike, ints, floats at float32, JSON and YAML text parsed), how a field diff shows a
JSON column, how the Studio writes a config body, a row typed as its ORM declares it, and digests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.records import (
    STUDIO_COLUMNS,
    as_shown,
    comparable,
    config_text,
    digest,
    float32,
    parsed_config,
    storable,
)


def test_float32_is_the_value_the_studios_api_carries() -> None:
    assert float32(0.9) == 0.8999999761581421 != 0.9
    assert float32(float32(0.9)) == float32(0.9)
    assert float32(1) == 1.0


@pytest.mark.parametrize(("table", "column", "written", "read_back"), [
    ("fine_tuning_jobs", "train_test_split", 0.9, 0.8999999761581421),  # a float column: float32 either way
    ("fine_tuning_jobs", "learning_rate", "0.0002", 0.0002),  # a float read as text
    ("fine_tuning_jobs", "dataset_fraction", None, 0.0),
    ("fine_tuning_jobs", "num_epochs", "3", 3),  # an int column
    ("fine_tuning_jobs", "num_gpu", None, ""),
    ("configs", "is_default", 1, True),
    ("fine_tuning_jobs", "cml_job_id", None, ""),  # a text column: NULL is ''
    ("models", "description", None, ""),
    ("configs", "config", '{"r": 8, "lora_alpha": 16}', '{ "lora_alpha":16,\n "r":8 }'),  # JSON text: parsed
    ("datasets", "features", '["a", "b"]', '[ "a","b" ]'),
    ("fine_tuning_jobs", "lora_config", '{"r": 8}', '{"r":8}'),
    ("evaluation_jobs", "generation_config", None, ""),
])
def test_values_the_studio_sees_alike_compare_equal(table: str, column: str, written: Any, read_back: Any) -> None:
    assert comparable(table, {column: written})[column] == comparable(table, {column: read_back})[column]


@pytest.mark.parametrize(("table", "column", "one", "other"), [
    ("fine_tuning_jobs", "train_test_split", 0.9, 0.8),
    ("fine_tuning_jobs", "num_epochs", 3, "three"),  # not an int: stays as it is, and differs
    ("configs", "config", '{"r": 8}', '{"r": 16}'),
    ("configs", "config", '{"r": 8}', "{not json"),  # malformed text compares as text
    ("datasets", "features", '["a", "b"]', '["b", "a"]'),  # a list's order matters
    ("models", "description", "", "a model"),
    ("prompts", "prompt_template", '{"a": 1}', '{"a":1}'),  # not a JSON column: text as it is
])
def test_values_the_studio_tells_apart_compare_unequal(table: str, column: str, one: Any, other: Any) -> None:
    assert comparable(table, {column: one})[column] != comparable(table, {column: other})[column]


def test_an_axolotl_config_is_compared_as_yaml() -> None:
    one = {"type": "axolotl", "config": "base_model: m\nsequence_len: 512\n"}
    other = {"type": "axolotl", "config": "sequence_len: 512\nbase_model: m   # the model\n"}
    assert comparable("configs", one)["config"] == comparable("configs", other)["config"] == {"base_model": "m", "sequence_len": 512}
    assert comparable("configs", {"type": "lora_config", "config": "r: 8"})["config"] == "r: 8", "YAML only for axolotl"


@pytest.mark.parametrize("table", sorted(STUDIO_COLUMNS))
def test_a_comparable_row_has_every_column_of_its_table(table: str) -> None:
    assert list(comparable(table, {})) == [column for column, _ in STUDIO_COLUMNS[table]]


@pytest.mark.parametrize(("text", "yaml", "parsed"), [
    ('{"b": 1, "a": [1, 2]}', False, {"b": 1, "a": [1, 2]}),
    ("a: 1\nb: [x]\n", True, {"a": 1, "b": ["x"]}),
    ("{broken", False, "{broken"),
    ("a: [", True, "a: ["),
])
def test_parsed_config_parses_or_keeps_the_text(text: str, yaml: bool, parsed: Any) -> None:
    assert parsed_config(text, yaml=yaml) == parsed


@pytest.mark.parametrize(("table", "column", "value", "shown"), [
    ("configs", "config", '{"r": 8}', {"r": 8}),
    ("configs", "config", "", None),
    ("configs", "config", None, None),
    ("configs", "config", "{broken", "{broken"),
    ("fine_tuning_jobs", "num_epochs", 3, 3),
    ("models", "description", "", ""),  # not a JSON column: shown as it is
])
def test_a_field_diff_shows_json_columns_parsed(table: str, column: str, value: Any, shown: Any) -> None:
    assert as_shown(table, column, value) == shown


def test_config_bodies_are_written_as_the_studio_writes_them() -> None:
    body = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    assert config_text("lora_config", body) == json.dumps(body) == '{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}'
    assert config_text("axolotl", {"base_model": "m", "adapter": "lora"}) == "base_model: m\nadapter: lora\n", "YAML, key order kept"


def test_a_storable_row_has_every_column_typed_as_the_studio_declares() -> None:
    row = storable("fine_tuning_jobs", {"id": "j1", "num_epochs": "3", "learning_rate": "0.0002", "num_gpu": None, "extra": "x"})
    assert list(row) == [column for column, _ in STUDIO_COLUMNS["fine_tuning_jobs"]], "every column, in order; no other"
    assert (row["num_epochs"], row["learning_rate"], row["num_gpu"], row["adapter_name"]) == (3, 0.0002, None, None)
    assert type(row["num_epochs"]) is int and type(row["learning_rate"]) is float
    assert storable("configs", {"id": "c", "is_default": True})["is_default"] == 1


def test_a_digest_reads_the_value_not_its_spelling() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2}) and len(digest({})) == 16
    int(digest("x"), 16)  # hexadecimal
