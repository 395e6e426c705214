"""No module outside `reconciler/kinds/` names a Studio column (issue 14).

Each kind's binding (`reconciler.kinds.<kind>`) is the one place that knows the Studio's columns;
every other stage reads and writes rows through its accessors and binding data. This test scans
the source of every module under `reconciler/` outside `kinds/` and fails, naming file:line, where
a Studio column's name (taken from the bindings) is used as a row key:

- a subscript with that string (`row["adapter_name"]`),
- a `.get` / `.pop` / `.setdefault` call with it (`row.get("cml_job_id")`),
- a dict display whose constant keys are all columns of one Studio table (a row, or a row op's
  values: `{"cml_job_id": ...}`).

`id` is every table's key (and ftctl's own tables'), not a kind's column, and is not scanned.
A name that equals a column but is no Studio column there (a job-input key, a field of the CML
API's JSON, a manifest document's key) is listed in `NOT_A_COLUMN` with what it is, per module;
an entry no longer needed fails too, so the list cannot rot.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import reconciler
from reconciler.kinds import BINDINGS

PACKAGE = Path(reconciler.__file__).parent
ROOT = PACKAGE.parent
UNIVERSAL = {"id"}
TABLE_COLUMNS = {b.table: {c.name for c in b.columns} - UNIVERSAL for b in BINDINGS.values() if b.table}
COLUMNS = set().union(*TABLE_COLUMNS.values())
ROW_KEY_METHODS = {"get", "pop", "setdefault"}

# (module, name) -> what the name is there. Only names that are not Studio columns in that module.
NOT_A_COLUMN: dict[tuple[str, str], str] = {
    ("reconciler/backends/cml.py", "name"): "a CML job's / model's name in the CML API's JSON",
    ("reconciler/backends/cml.py", "description"): "a CML model's description in the CML API's JSON",
    ("reconciler/backends/cml.py", "gpu_label_id"): "a job input's resources key (the contract's)",
    ("reconciler/backends/cml.py", "num_workers"): "a job input's resources key (the contract's)",
    ("reconciler/backends/cml.py", "generation_config"): "a job input's export key (the contract's)",
    ("reconciler/backends/cml.py", "type"): "a job input's export key (the contract's)",
    ("reconciler/backends/cml_http.py", "name"): "a CML job's / model's name in the CML API's JSON",
    ("reconciler/backends/cml_registry.py", "name"): "a registered model's name in the CML API's JSON",
    ("reconciler/scaleout.py", "num_workers"): "a job input's resources key (the contract's)",
    ("reconciler/scaleout.py", "type"): "a job result's error key (the contract's)",
    ("reconciler/jobinput.py", "evaluation_dir"): "a job input's outputs key (the contract's)",
    ("reconciler/lifecycle.py", "evaluation_dir"): "a job input's outputs key (the contract's)",
    ("reconciler/lifecycle.py", "mlflow_experiment_id"): "a job result's artifacts key (the contract's)",
    ("reconciler/lifecycle.py", "mlflow_run_id"): "a job result's artifacts key (the contract's)",
    ("reconciler/engine.py", "name"): "a manifest document's metadata.name",
    ("reconciler/importer.py", "name"): "a manifest document's metadata.name",
    ("reconciler/plan.py", "name"): "a change's name in the plan file's JSON",
    ("reconciler/sweeps.py", "name"): "a trial's manifest document's metadata.name",
    ("reconciler/sweeps.py", "adapter_name"): "a trial's manifest document's spec.adapter_name",
    ("reconciler/manifests/loader.py", "name"): "a manifest document's metadata.name",
    ("reconciler/manifests/schema_errors.py", "type"): "a pydantic validation error's type",
    ("reconciler/online/hubinfo.py", "features"): "the Hub's dataset info JSON",
    ("reconciler/online/hubinfo.py", "description"): "the Hub's dataset info JSON",
    ("reconciler/online/hubinfo.py", "name"): "the Hub's dataset feature JSON",
    ("reconciler/rules/configs.py", "description"): "a config key's description (the schema's)",
    ("reconciler/rules/configs.py", "type"): "a JSON schema's type",
    ("reconciler/rules/prompts.py", "input_template"): "a Prompt manifest's field",
    ("reconciler/rules/prompts.py", "completion_template"): "a Prompt manifest's field",
    ("reconciler/schemagen.py", "type"): "a JSON schema's keyword / a Config manifest's field",
    ("reconciler/schemagen.py", "config"): "a Config manifest's field in a JSON schema",
    ("reconciler/store/db.py", "name"): "SQLAlchemy's column inspection",
    ("reconciler/store/events.py", "name"): "ftctl's own tables (ftctl_history, ftctl_objects)",
    ("reconciler/store/read.py", "name"): "ftctl's own table (ftctl_objects)",
    ("reconciler/views/inspection.py", "name"): "describe's JSON",
}


def _modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "kinds" not in path.relative_to(PACKAGE).parts:
            yield path


def _row_keys(node: ast.AST) -> list[str]:
    """Studio column names `node` uses as row keys."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in COLUMNS:
        return [node.slice.value]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ROW_KEY_METHODS
            and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in COLUMNS):
        return [node.args[0].value]
    if isinstance(node, ast.Dict):
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        named = [k for k in keys if k not in UNIVERSAL]
        if named and any(set(named) <= columns for columns in TABLE_COLUMNS.values()):
            return named
    return []


def studio_column_uses() -> list[tuple[str, int, str]]:
    """(module, line, column name) of every use, outside kinds/, of a Studio column as a row key."""
    found = []
    for path in _modules():
        module = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            found += [(module, getattr(node, "lineno", 0), name) for name in _row_keys(node)]
    return sorted(set(found))


def test_no_module_outside_kinds_names_a_studio_column() -> None:
    uses = [f"{module}:{line}: {name!r}" for module, line, name in studio_column_uses()
            if (module, name) not in NOT_A_COLUMN]
    assert not uses, ("Studio columns named outside reconciler/kinds/ (read or write them through the kind's "
                      "accessors and binding data; list a name that is no Studio column there in NOT_A_COLUMN):\n"
                      + "\n".join(uses))


def test_every_not_a_column_entry_is_still_needed() -> None:
    used = {(module, name) for module, _, name in studio_column_uses()}
    assert not sorted(set(NOT_A_COLUMN) - used)


def test_the_scan_sees_each_kind_of_use(tmp_path: Path) -> None:
    source = 'row["adapter_name"]\nrow.get("cml_job_id")\nRowOp("adapters", "update", i, {"name": n})\n{"kind": k, "name": n}\n'
    found = [name for node in ast.walk(ast.parse(source)) for name in _row_keys(node)]
    assert sorted(found) == ["adapter_name", "cml_job_id", "name"]
