"""A stand-in for the Fine Tuning Studio's SQLite store, read off the Studio's spec, not off ftctl.

It owns an *independent* reading of the Studio's Data Tier (seeds/002, Data Tier and the resource
specifications; reference/upstream-store.md), so tests can check what ftctl's store writer leaves
behind. It never imports `reconciler`.

- `create_studio_store(path, alembic=True)`: the DDL SQLAlchemy's `Base.metadata.create_all` emits
  for the Studio's seven ORM tables (plus Alembic's `alembic_version` at revision 52d1db1b40a8).
- `populate_shipped_defaults(path)`: the Studio's shipped project defaults
  (specs/studio-defaults/defaults.yaml), written the way the Studio's add functions write them.
- `studio_read(path)`: every row as the Studio's ORM + protobuf conversion sees it (NULL reads as the
  protobuf default); raises `StudioReadError` wherever the Studio would fail or its application-level
  uniqueness rules are broken.
- `studio_export_json(path)`: {table: [non-null columns of each row]} (`MappedDict.to_dict`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import yaml

ALEMBIC_HEAD = "52d1db1b40a8"
DEFAULTS_PATH = Path(__file__).resolve().parents[2] / "specs" / "studio-defaults" / "defaults.yaml"
# SQLAlchemy 2.x renders `Double` as DOUBLE on SQLite (REAL affinity, like FLOAT).
DOUBLE_SQL = "DOUBLE"

_S, _T, _I, _D = "VARCHAR", "TEXT", "INTEGER", DOUBLE_SQL
_CFG = "configs"
# table -> [(column, sql type, referenced table or None)], in the Studio's column order.
SCHEMA: dict[str, list[tuple[str, str, str | None]]] = {
    "models": [(c, _S, None) for c in (
        "id", "type", "framework", "name", "description", "huggingface_model_name", "location",
        "cml_registered_model_id", "mlflow_experiment_id", "mlflow_run_id")],
    "datasets": [("id", _S, None), ("type", _S, None), ("name", _S, None), ("description", _T, None),
                 ("huggingface_name", _S, None), ("location", _T, None), ("features", _T, None)],
    "adapters": [("id", _S, None), ("type", _S, None), ("name", _S, None), ("description", _S, None),
                 ("huggingface_name", _S, None), ("model_id", _S, "models"), ("location", _T, None),
                 ("fine_tuning_job_id", _S, "fine_tuning_jobs"), ("prompt_id", _S, "prompts"),
                 ("cml_registered_model_id", _S, None), ("mlflow_experiment_id", _S, None),
                 ("mlflow_run_id", _S, None)],
    "prompts": [("id", _S, None), ("type", _S, None), ("name", _S, None), ("description", _S, None),
                ("dataset_id", _S, "datasets"), ("prompt_template", _S, None),
                ("input_template", _S, None), ("completion_template", _S, None)],
    "fine_tuning_jobs": [
        ("id", _S, None), ("base_model_id", _S, "models"), ("dataset_id", _S, "datasets"),
        ("prompt_id", _S, "prompts"), ("num_workers", _I, None), ("cml_job_id", _S, None),
        ("adapter_id", _S, "adapters"), ("num_cpu", _I, None), ("num_gpu", _I, None),
        ("num_memory", _I, None), ("num_epochs", _I, None), ("learning_rate", _D, None),
        ("out_dir", _S, None), ("training_arguments_config_id", _S, _CFG),
        ("model_bnb_config_id", _S, _CFG), ("adapter_bnb_config_id", _S, _CFG),
        ("lora_config_id", _S, _CFG), ("training_arguments_config", _S, None),
        ("model_bnb_config", _S, None), ("adapter_bnb_config", _S, None), ("lora_config", _S, None),
        ("dataset_fraction", _D, None), ("train_test_split", _D, None), ("user_script", _S, None),
        ("user_config_id", _S, _CFG), ("framework_type", _S, None), ("axolotl_config_id", _S, _CFG),
        ("gpu_label_id", _I, None), ("adapter_name", _S, None)],
    "evaluation_jobs": [
        ("id", _S, None), ("type", _S, None), ("cml_job_id", _S, None), ("parent_job_id", _S, None),
        ("base_model_id", _S, "models"), ("dataset_id", _S, "datasets"), ("prompt_id", _S, "prompts"),
        ("num_workers", _I, None), ("adapter_id", _S, "adapters"), ("num_cpu", _I, None),
        ("num_gpu", _I, None), ("num_memory", _I, None), ("evaluation_dir", _S, None),
        ("model_bnb_config_id", _S, _CFG), ("adapter_bnb_config_id", _S, _CFG),
        ("generation_config_id", _S, _CFG), ("model_bnb_config", _S, None),
        ("adapter_bnb_config", _S, None), ("generation_config", _S, None)],
    "configs": [("id", _S, None), ("type", _S, None), ("description", _S, None), ("config", _T, None),
                ("model_family", _S, None), ("is_default", _I, None)],
}
TABLES = tuple(SCHEMA)
# (table, column, which rows): what the Studio keeps unique in application code (empty values skipped).
_UNIQUE: list[tuple[str, str, Any]] = [
    ("datasets", "name", lambda r: r["type"] != "huggingface"),
    ("datasets", "huggingface_name", lambda r: r["type"] == "huggingface"),
    ("models", "huggingface_model_name", lambda r: True),
    ("adapters", "name", lambda r: True),
    ("prompts", "name", lambda r: True),
    ("fine_tuning_jobs", "adapter_name", lambda r: True),
]


class StudioReadError(Exception):
    """The Studio would fail (or break one of its own rules) reading this store."""


def _ddl(table: str) -> str:
    cols = SCHEMA[table]
    lines = [f"{name} {sql}{' NOT NULL' if name == 'id' else ''}" for name, sql, _ in cols]
    lines.append("PRIMARY KEY (id)")
    lines += [f"FOREIGN KEY({name}) REFERENCES {ref} (id)" for name, _, ref in cols if ref]
    return f"CREATE TABLE {table} (\n\t" + ", \n\t".join(lines) + "\n)"


def create_studio_store(path: str | os.PathLike[str], *, alembic: bool = True) -> None:
    with sqlite3.connect(path) as conn:
        for table in TABLES:
            conn.execute(_ddl(table))
        if alembic:
            conn.execute("CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n\t"
                         "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)")
            conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (ALEMBIC_HEAD,))
    conn.close()


# ----------------------------------------------------------------------------- shipped defaults

def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> str:
    row = {"id": str(uuid.uuid4()), **row}
    names = ", ".join(row)
    conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return row["id"]


def _project_path(location: str, manifest_dir: Path) -> str:
    """A manifest-relative path as the Studio stores it: relative to the project root, which the
    defaults' folder stands for (it holds ftctl.toml and the stand-ins of the Studio's data/)."""
    return os.path.relpath(os.path.normpath(manifest_dir / location), DEFAULTS_PATH.parent)


def _csv_features(location: str) -> list[str]:
    full = DEFAULTS_PATH.parent / location
    if full.is_file():
        return full.read_text().splitlines()[0].split(",")
    return ["instruction", "intent"]  # the shipped clean_ticketing.csv header


def _default_row(kind: str, name: str, spec: dict[str, Any], ids: dict[str, dict[str, str]],
                 manifest_dir: Path) -> tuple[str, dict[str, Any]]:
    if kind == "Dataset" and spec["type"] == "huggingface":
        return "datasets", {"type": "huggingface", "name": spec["huggingface_name"],
                            "huggingface_name": spec["huggingface_name"],
                            "description": spec.get("description", ""),
                            "features": json.dumps(spec["features"])}
    if kind == "Dataset":
        location = _project_path(spec["location"], manifest_dir)
        return "datasets", {"type": spec["type"], "name": name, "location": location,
                            "description": spec.get("description"),
                            "features": json.dumps(spec.get("features") or _csv_features(location))}
    if kind == "Model":
        hub_id = spec["huggingface_model_name"]
        return "models", {"type": "huggingface", "name": hub_id, "huggingface_model_name": hub_id}
    if kind == "Prompt":
        return "prompts", {"type": spec.get("type", "in_place"), "name": name,
                           "description": spec.get("description"),
                           "dataset_id": ids["datasets"][spec["dataset"]],
                           **{k: spec[k] for k in ("prompt_template", "input_template",
                                                   "completion_template")}}
    if kind == "Adapter":
        unset = dict.fromkeys(("description", "huggingface_name", "fine_tuning_job_id",
                               "cml_registered_model_id", "mlflow_experiment_id", "mlflow_run_id"), "")
        return "adapters", {**unset, "type": "project", "name": name,
                            "model_id": ids["models"][spec["model"]],
                            "location": _project_path(spec["location"], manifest_dir),
                            "prompt_id": ids["prompts"].get(spec.get("prompt", ""), "")}
    if kind == "Config":
        row = {"type": spec["type"], "config": json.dumps(spec["config"]), "is_default": 1}
        return "configs", {"id": spec["id"], **row} if spec.get("id") else row
    raise ValueError(f"defaults.yaml: unexpected kind {kind!r}")


def populate_shipped_defaults(path: str | os.PathLike[str],
                              defaults_path: str | os.PathLike[str] = DEFAULTS_PATH) -> dict[str, list[str]]:
    manifest_dir = Path(defaults_path).resolve().parent
    docs = [d for d in yaml.safe_load_all(Path(defaults_path).read_text()) if d]
    ids: dict[str, dict[str, str]] = {t: {} for t in TABLES}  # table -> manifest name -> id
    with sqlite3.connect(path) as conn:
        for doc in docs:
            name = doc["metadata"]["name"]
            table, row = _default_row(doc["kind"], name, doc["spec"], ids, manifest_dir)
            ids[table][name] = _insert(conn, table, row)
    conn.close()
    return {table: list(by_name.values()) for table, by_name in ids.items()}


# ----------------------------------------------------------------------------- reading

def _fetch_rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    """SELECT the mapped columns, as the ORM does; a missing table is created empty on Studio start."""
    present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    if not present:
        return []
    for name, _, _ in SCHEMA[table]:
        if name not in present:
            raise StudioReadError(f"{table}: no such column: {table}.{name}")
    names = [name for name, _, _ in SCHEMA[table]]
    cur = conn.execute(f"SELECT {', '.join(names)} FROM {table}")
    return [dict(zip(names, values)) for values in cur]


def _to_message(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """The protobuf view of one row: type-checked, NULL as the field's default."""
    out: dict[str, Any] = {}
    for name, sql, _ in SCHEMA[table]:
        value, where = row[name], f"{table} id={row['id']!r} column {name!r}"
        if sql == _I:
            if value is not None and type(value) is not int:
                raise StudioReadError(f"{where}: Integer column holds {value!r}")
            out[name] = value or 0
        elif sql == _D:
            if value is not None and type(value) not in (int, float):
                raise StudioReadError(f"{where}: Double column holds {value!r}")
            out[name] = float(value or 0.0)
        else:
            out[name] = "" if value is None else value
    return out


def _check_values(table: str, row: dict[str, Any]) -> None:
    where = f"{table} id={row['id']!r} column"
    if table == "datasets" and row["features"]:
        try:
            features = json.loads(row["features"])
        except ValueError:
            features = None
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise StudioReadError(f"{where} 'features': not a JSON list of strings: {row['features']!r}")
    if table == "configs" and row["type"] != "axolotl":
        try:
            json.loads(row["config"])
        except (TypeError, ValueError) as exc:
            raise StudioReadError(f"{where} 'config': {row['type']!r} config is not JSON ({exc})") from None


def _parsed_config(row: dict[str, Any]) -> Any:
    if row["type"] != "axolotl":
        return json.loads(row["config"])
    try:
        return yaml.safe_load(row["config"] or "")
    except yaml.YAMLError:
        return row["config"]


def _check_unique(rows: dict[str, list[dict[str, Any]]]) -> None:
    for table, column, applies in _UNIQUE:
        seen: dict[str, str] = {}
        for row in rows[table]:
            value = row[column]
            if value and applies(row):
                if value in seen:
                    raise StudioReadError(f"{table}: duplicate {column} {value!r} (ids {seen[value]!r}, "
                                          f"{row['id']!r})")
                seen[value] = row["id"]
    kept: list[tuple[str, Any, str]] = []
    for row in rows["configs"]:
        content = _parsed_config(row)
        for type_, other, other_id in kept:
            if type_ == row["type"] and other == content:
                raise StudioReadError(f"configs: duplicate {row['type']!r} config content (ids "
                                      f"{other_id!r}, {row['id']!r})")
        kept.append((row["type"], content, row["id"]))


def studio_read(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    with sqlite3.connect(path) as conn:
        raw = {table: _fetch_rows(conn, table) for table in TABLES}
    conn.close()
    messages = {table: [_to_message(table, row) for row in rows] for table, rows in raw.items()}
    for table, rows in messages.items():
        for row in rows:
            _check_values(table, row)
    _check_unique(messages)
    return messages


def studio_export_json(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    with sqlite3.connect(path) as conn:
        raw = {table: _fetch_rows(conn, table) for table in TABLES}
    conn.close()
    return {table: [{k: v for k, v in row.items() if v is not None} for row in rows]
            for table, rows in raw.items()}
