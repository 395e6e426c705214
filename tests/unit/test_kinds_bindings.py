"""The kind bindings (`reconciler.kinds`) cover the Studio's tables, column by column.

A column added to `records.STUDIO_COLUMNS` without a declaration, or declared twice, or declared
for a table that has no such column, fails here. Each declared column is either read from a
manifest field (with a value format), derived (the row's id, the object's name or id), or one the
Studio itself leaves NULL (never written by ftctl either).
"""

from __future__ import annotations

import pytest

from reconciler.kinds import BINDINGS, BY_TABLE
from reconciler.models import MODELS
from reconciler.records import STUDIO_COLUMNS

NEVER_WRITTEN = {  # the Studio's own code leaves these NULL (it snapshots the config instead)
    ("fine_tuning_jobs", "training_arguments_config_id"), ("fine_tuning_jobs", "model_bnb_config_id"),
    ("fine_tuning_jobs", "adapter_bnb_config_id"), ("fine_tuning_jobs", "lora_config_id"),
    ("evaluation_jobs", "model_bnb_config_id"), ("evaluation_jobs", "adapter_bnb_config_id"),
    ("evaluation_jobs", "generation_config_id"),
}


def test_every_kind_has_one_binding() -> None:
    assert set(BINDINGS) == set(MODELS)
    assert set(BY_TABLE) == set(STUDIO_COLUMNS)


@pytest.mark.parametrize("table", sorted(STUDIO_COLUMNS))
def test_every_studio_column_is_declared_once_in_order(table: str) -> None:
    declared = [c.name for c in BY_TABLE[table].columns]
    assert declared == [name for name, _ in STUDIO_COLUMNS[table]]


@pytest.mark.parametrize("table", sorted(STUDIO_COLUMNS))
def test_each_column_says_where_its_value_comes_from(table: str) -> None:
    binding = BY_TABLE[table]
    for column in binding.columns:
        if column.derived:
            assert not column.path and column.codec is None, column
        elif (table, column.name) in NEVER_WRITTEN:
            assert column.codec is None and not column.path, column
        else:
            assert column.path and column.codec is not None, column
            model = binding.spec_model
            fields = model.model_fields if model is not None else {}
            if column.per_item:  # a field of the fan-out's item model
                annotation = fields[binding.items[0]].annotation
                fields = annotation.__args__[0].model_fields  # type: ignore[union-attr]
            assert column.path[0] in fields, (table, column.name, column.path)


def test_references_name_known_kinds_and_real_columns() -> None:
    for binding in BINDINGS.values():
        columns = {name for name, _ in STUDIO_COLUMNS.get(binding.table, ())}
        for ref in binding.references:
            assert ref.kind in BINDINGS and ref.column in columns
        assert set(binding.unique) <= columns and set(binding.run_inputs) <= columns
        assert set(binding.replace_columns) <= columns
