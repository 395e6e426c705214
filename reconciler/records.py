"""Studio rows as plain values: the columns of the Studio's seven tables, how values are written,
and how two rows are compared.

Pure. The store module builds its SQLAlchemy tables from `STUDIO_COLUMNS` (each column's manifest
field and value format is declared by its kind in `reconciler.kinds`); the planner compares
desired and live rows with `comparable`; plans record `digest`s of what they read. Comparison
removes every difference the Studio itself does not see, so a re-plan after an apply is empty:
NULL and '' are equal, floats are equal at float32 precision (the Studio's API carries float32),
JSON text is equal when it parses to the same value (key order and whitespace do not matter).
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

Row = dict[str, Any]

# table -> ((column, kind), ...) in the Studio's declaration order; kind: str | text | int | float.
STUDIO_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "models": tuple(
        (c, "str")
        for c in ("id", "type", "framework", "name", "description", "huggingface_model_name", "location",
                  "cml_registered_model_id", "mlflow_experiment_id", "mlflow_run_id")
    ),
    "datasets": (
        ("id", "str"), ("type", "str"), ("name", "str"), ("description", "text"), ("huggingface_name", "str"),
        ("location", "text"), ("features", "text"),
    ),
    "adapters": (
        ("id", "str"), ("type", "str"), ("name", "str"), ("description", "str"), ("huggingface_name", "str"),
        ("model_id", "str"), ("location", "text"), ("fine_tuning_job_id", "str"), ("prompt_id", "str"),
        ("cml_registered_model_id", "str"), ("mlflow_experiment_id", "str"), ("mlflow_run_id", "str"),
    ),
    "prompts": tuple(
        (c, "str")
        for c in ("id", "type", "name", "description", "dataset_id", "prompt_template", "input_template",
                  "completion_template")
    ),
    "fine_tuning_jobs": (
        ("id", "str"), ("base_model_id", "str"), ("dataset_id", "str"), ("prompt_id", "str"),
        ("num_workers", "int"), ("cml_job_id", "str"), ("adapter_id", "str"), ("num_cpu", "int"),
        ("num_gpu", "int"), ("num_memory", "int"), ("num_epochs", "int"), ("learning_rate", "float"),
        ("out_dir", "str"), ("training_arguments_config_id", "str"), ("model_bnb_config_id", "str"),
        ("adapter_bnb_config_id", "str"), ("lora_config_id", "str"), ("training_arguments_config", "str"),
        ("model_bnb_config", "str"), ("adapter_bnb_config", "str"), ("lora_config", "str"),
        ("dataset_fraction", "float"), ("train_test_split", "float"), ("user_script", "str"),
        ("user_config_id", "str"), ("framework_type", "str"), ("axolotl_config_id", "str"),
        ("gpu_label_id", "int"), ("adapter_name", "str"),
    ),
    "evaluation_jobs": (
        ("id", "str"), ("type", "str"), ("cml_job_id", "str"), ("parent_job_id", "str"),
        ("base_model_id", "str"), ("dataset_id", "str"), ("prompt_id", "str"), ("num_workers", "int"),
        ("adapter_id", "str"), ("num_cpu", "int"), ("num_gpu", "int"), ("num_memory", "int"),
        ("evaluation_dir", "str"), ("model_bnb_config_id", "str"), ("adapter_bnb_config_id", "str"),
        ("generation_config_id", "str"), ("model_bnb_config", "str"), ("adapter_bnb_config", "str"),
        ("generation_config", "str"),
    ),
    "configs": (
        ("id", "str"), ("type", "str"), ("description", "str"), ("config", "text"), ("model_family", "str"),
        ("is_default", "int"),
    ),
}
COLUMN_KINDS: dict[str, dict[str, str]] = {t: dict(cols) for t, cols in STUDIO_COLUMNS.items()}

# Columns holding JSON text (compared parsed). configs.config is JSON except for axolotl (YAML).
JSON_COLUMNS: dict[str, frozenset[str]] = {
    "datasets": frozenset({"features"}),
    "fine_tuning_jobs": frozenset({"training_arguments_config", "model_bnb_config", "adapter_bnb_config", "lora_config"}),
    "evaluation_jobs": frozenset({"model_bnb_config", "adapter_bnb_config", "generation_config"}),
    "configs": frozenset({"config"}),
}
YAML_CONFIG_TYPES = frozenset({"axolotl"})


def float32(value: float) -> float:
    """The value as the Studio's API carries it (0.9 -> 0.8999999761581421)."""
    return float(struct.unpack("f", struct.pack("f", float(value)))[0])


def comparable(table: str, row: Row) -> Row:
    """The row as the Studio sees it: NULL = '', ints as int, floats at float32, JSON parsed."""
    get = row.get
    yaml_body = table == "configs" and get("type") in YAML_CONFIG_TYPES
    return {column: convert(get(column), yaml_body) for column, convert in _CONVERTERS[table]}


def _int_value(value: Any, _yaml: bool) -> Any:
    return _as_int(value)


def _float_value(value: Any, _yaml: bool) -> Any:
    return 0.0 if value is None or value == "" else float32(value)


def _text_value(value: Any, _yaml: bool) -> Any:
    return "" if value is None else value if type(value) is str else str(value)


def _json_value(value: Any, yaml: bool) -> Any:
    text = _text_value(value, yaml)
    return parsed_config(text, yaml=yaml) if text else text


def _converter(table: str, column: str, kind: str) -> Any:
    if kind == "int":
        return _int_value
    if kind == "float":
        return _float_value
    return _json_value if column in JSON_COLUMNS.get(table, ()) else _text_value


# table -> ((column, converter), ...): `comparable` looks each column's conversion up once, not per row.
_CONVERTERS: dict[str, tuple[tuple[str, Any], ...]] = {
    table: tuple((column, _converter(table, column, kind)) for column, kind in columns)
    for table, columns in STUDIO_COLUMNS.items()
}


def _as_int(value: Any) -> Any:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return value  # not an int: compares unequal, and the diff shows it


def parsed_config(text: str, *, yaml: bool = False) -> Any:
    """JSON (or YAML) text parsed, for comparison; text that does not parse compares as text."""
    try:
        if yaml:
            import yaml as pyyaml

            return pyyaml.safe_load(text)
        return json.loads(text)
    except Exception:  # a malformed value stays as text: it differs from any well-formed one
        return text


def as_shown(table: str, column: str, value: Any) -> Any:
    """A column's value as a field diff shows it: a JSON column's text parsed ('' is None; text that
    does not parse stays text), any other column as it is. The planner shows diffs this way and
    plan verification compares ops with them this way."""
    if column not in JSON_COLUMNS.get(table, ()):
        return value
    if not isinstance(value, str) or not value:
        return value if value != "" else None
    try:
        return json.loads(value)
    except ValueError:
        return value


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_text(config_type: str, body: Any) -> str:
    """How the Studio writes a config body: `json.dumps` (key order kept), YAML for axolotl."""
    if config_type in YAML_CONFIG_TYPES:
        import yaml as pyyaml

        return str(pyyaml.safe_dump(body, sort_keys=False, default_flow_style=False))
    return json.dumps(body)


def storable(table: str, row: Row) -> Row:
    """The row with every column present and typed as the Studio's ORM declares it."""
    kinds = COLUMN_KINDS[table]
    out: Row = {}
    for column, kind in kinds.items():
        value = row.get(column)
        if value is not None and kind == "int":
            value = int(value)
        elif value is not None and kind == "float":
            value = float(value)
        out[column] = value
    return out
