"""All errors at once, with hints (issue 16, item 5).

A document with schema errors is still checked by the rules, on the fields that parsed: one
`ftctl validate` shows the SC-001 of a typo'd key and the rule errors that fixing it would have
revealed, and a field that failed the schema is never also reported missing by a rule. A
reference that does not resolve gets "did you mean" over the names of the kind it wants (in the
manifests and, with a store, the objects ftctl manages there); a name of another kind says which.

The hypothesis tests typo one key of specs/examples (hypothesis picks the file, the document, the
key at any depth and the typo): the run shows exactly what the run without that key shows, plus
the typo's own error; and with a rule error planted elsewhere, fixing the typo reveals nothing the
typo'd run did not show.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.diagnostics import Diagnostic
from reconciler.engine import validate
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests import load_paths
from reconciler.rules import RuleContext, check_all

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.helpers import ftctl, show  # noqa: E402

DEMO = REPO / "specs" / "demo"
EXAMPLES = REPO / "specs" / "examples"


# The FineTuningJob's first lines in specs/demo/pipeline.yaml.
JOB = "  labels: {project: demo}\nspec:\n  base_model: tiny-llama\n  dataset: demo-tickets\n"


def demo_project(root: Path, edits: dict[str, str]) -> Path:
    """A copy of specs/demo with each `old: new` text edit applied to pipeline.yaml once."""
    project = root / "project"
    shutil.copytree(DEMO, project, ignore=lambda folder, _: ["models"])
    (project / "ftctl.toml").touch()
    pipeline = project / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    pipeline.write_text(text, encoding="utf-8")
    return project


def cli_diagnostics(project: Path) -> list[dict[str, Any]]:
    proc = ftctl(project, "validate", "--offline", "--format", "json", ".")
    assert proc.returncode == 1, show(proc)
    return [d for d in json.loads(proc.stdout)["diagnostics"] if d["severity"] == "error"]


def by_code(diags: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in diags:
        out.setdefault(d["code"], []).append(d)
    return out


# --- the cases, through the real CLI ---------------------------------------------------


def test_a_typo_shows_its_schema_error_and_the_rule_errors_in_one_run(tmp_path: Path) -> None:
    project = demo_project(tmp_path, {
        JOB: JOB.replace("base_model", "base_modle").replace("demo-tickets", "demo-ticket"),
        "  adapter_name: demo-ticketing-lora\n": "  adapter_name: demo_ticketing_lora\n",
    })
    codes = by_code(cli_diagnostics(project))
    assert set(codes) == {"SC-001", "FT-013", "FT-014", "FT-002", "RF-002"}, codes
    [typo] = codes["SC-001"]
    assert (typo["field"], typo["hint"]) == ("spec.base_modle", "Did you mean 'base_model'?")
    [required] = codes["FT-013"]
    assert required["summary"] == "base_model is required"
    [dataset] = codes["FT-014"]
    assert dataset["hint"] == "Did you mean 'demo-tickets'?"
    assert dataset["line"] == 9
    assert [d["summary"] for d in codes["FT-002"]] == ["adapter_name 'demo_ticketing_lora' must match ^[a-zA-Z0-9-]+$"]
    # The evaluation and the export name the adapter by its old name, now only the job's: a follow-on
    # the user needs too, with the adapter the job trains as the suggestion.
    assert {(d["summary"], d["hint"]) for d in codes["RF-002"]} == {
        (f"{field}: 'demo-ticketing-lora' is a FineTuningJob, not an Adapter", "Did you mean 'demo_ticketing_lora'?")
        for field in ("combinations.1.adapter", "adapter")
    }


def test_several_schema_and_rule_errors_in_one_document_are_all_reported(tmp_path: Path) -> None:
    project = demo_project(tmp_path, {
        # SC-002, and not also "base_model is required"; SC-001 and FT-014 "dataset is required"
        JOB: JOB.replace("base_model: tiny-llama", "base_model: 12").replace("dataset:", "datset:"),
        "  dataset_fraction: 1.0\n": "  dataset_fraction: 1.5\n  epochs: 3\n",  # FT-010 and SC-001
        "  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}": "  resources: {cpu: two, memory: 0, gpu: 0, num_workers: 1}",
    })
    diags = cli_diagnostics(project)
    got = {(d["code"], d["field"]) for d in diags if d["address"] == "FineTuningJob/demo-ticketing-lora"}
    assert got == {
        ("SC-002", "spec.base_model"),
        ("SC-001", "spec.datset"),
        ("FT-014", "spec.dataset"),
        ("FT-010", "spec.dataset_fraction"),
        ("SC-001", "spec.epochs"),
        ("SC-002", "spec.resources.cpu"),
        ("FT-006", "spec.resources.memory"),
    }, diags


def test_a_reference_to_another_kind_says_which_kind_and_suggests_the_right_one(tmp_path: Path) -> None:
    project = demo_project(tmp_path, {JOB: JOB.replace("demo-tickets", "demo-ticketing")})
    [wrong] = [d for d in cli_diagnostics(project) if d["field"] == "spec.dataset"]
    assert wrong["code"] == "RF-002"
    assert wrong["summary"] == "dataset: 'demo-ticketing' is a ModelExport and a Prompt, not a Dataset"
    assert wrong["hint"] == "Did you mean 'demo-tickets'?"


def test_a_document_whose_envelope_failed_is_not_checked_further(tmp_path: Path) -> None:
    """`spce:` leaves no spec to check: the schema errors alone, no guess at the rest."""
    project = demo_project(tmp_path, {"  labels: {project: demo}\nspec:\n  base_model": "  labels: {project: demo}\nspce:\n  base_model"})
    codes = {(d["code"], d["address"]) for d in cli_diagnostics(project)}
    assert ("SC-003", "FineTuningJob/demo-ticketing-lora") in codes
    assert ("SC-001", "FineTuningJob/demo-ticketing-lora") in codes
    assert not any(address == "FineTuningJob/demo-ticketing-lora" and code.startswith("FT-") for code, address in codes)


# --- did you mean, over the store's managed names -----------------------------------------------


def test_did_you_mean_draws_on_the_names_ftctl_manages_in_the_store(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "apiVersion: ftctl/v1\nkind: Prompt\nmetadata: {name: p}\n"
        "spec: {dataset: support-ticket, prompt_template: '{a}', input_template: '{a}', completion_template: '{b}'}\n",
        encoding="utf-8",
    )
    (tmp_path / "ftctl.toml").touch()
    loaded = load_paths([str(tmp_path)])
    managed = {
        (kind, name): ManagedRecord(kind, name, "", "", (), "", "")
        for kind, name in [("Dataset", "support-tickets"), ("Model", "support-ticket")]
    }
    diags = check_all(RuleContext(loaded.manifests, snapshot=Snapshot(managed=managed)))
    [missing] = [d for d in diags if d.field == "spec.dataset"]
    assert missing.code == "RF-002"  # the Model of that name is the wrong kind, and says so
    assert "is a Model, not a Dataset" in missing.summary
    assert missing.hint == "Did you mean 'support-tickets'?"


# --- the properties, over specs/examples ----------------------------------------------------------

EXAMPLE_FILES = {p.name: list(yaml.safe_load_all(p.read_text(encoding="utf-8"))) for p in sorted(EXAMPLES.glob("*.yaml"))}
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Rule errors to plant, one at a time: (file, document, path, value).
PLANTED = [
    ("finetuning.yaml", 0, ("spec", "dataset"), "sql-create-contxt"),
    ("finetuning.yaml", 1, ("spec", "adapter_name"), "bad_name"),
    ("evaluation.yaml", 0, ("spec", "eval_dataset_fraction"), 2.0),
    ("prompt.yaml", 0, ("spec", "dataset"), "sql-create"),
]


def key_paths(node: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every mapping key in a document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from key_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from key_paths(item, (*prefix, index))


def parent_of(doc: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def typo(key: str, data: st.DataObject) -> str:
    position = data.draw(st.integers(0, len(key) - 1))
    how = data.draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if how == "drop" and len(key) > 1:
        return key[:position] + key[position + 1 :]
    if how == "swap" and position + 1 < len(key) and key[position] != key[position + 1]:
        return key[:position] + key[position + 1] + key[position] + key[position + 2 :]
    if how == "replace":
        letter = data.draw(st.sampled_from("aeiouxz_"))
        if letter != key[position]:
            return key[:position] + letter + key[position + 1 :]
    return key[: position + 1] + key[position] + key[position + 1 :]


Seen = tuple[str, str, str, int, str, str, str]


def seen(folder: Path, files: dict[str, list[Any]]) -> set[Seen]:
    """What `validate` reports over the examples with these documents: (code, severity, file,
    document, address, field, summary) of each diagnostic."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(EXAMPLES, folder, ignore=lambda _, names: [n for n in names if n.endswith(".yaml")])
    for name, docs in files.items():
        (folder / name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    report = validate([str(folder)], offline=True, environ={}, use_cache=False)
    return {_key(d) for d in report.diagnostics}


def _key(d: Diagnostic) -> Seen:
    file, doc = (Path(d.location.file).name, d.location.doc) if d.location is not None else ("", 0)
    return (d.code, d.severity.value, file, doc, d.address or "", d.field, d.summary)


def at_or_under(field: str, path: tuple[str | int, ...]) -> bool:
    dotted = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))
    return field == dotted or field.startswith((dotted + ".", dotted + "["))


def draw_typo(data: st.DataObject, files: dict[str, list[Any]]) -> tuple[str, int, tuple[str | int, ...], str]:
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    index = data.draw(st.integers(0, len(files[name]) - 1), label="document")
    path = data.draw(st.sampled_from(list(key_paths(files[name][index]))), label="key")
    siblings = parent_of(files[name][index], path)
    new = typo(str(path[-1]), data)
    if new in siblings:
        new = str(path[-1]) + "x"
    return name, index, path, data.draw(st.just(new), label="typo")


def renamed(files: dict[str, list[Any]], name: str, index: int, path: tuple[str | int, ...], new: str | None) -> dict[str, list[Any]]:
    """A deep copy of `files` with the key at `path` renamed to `new` (removed when None), in place
    in its mapping's order."""
    out = json.loads(json.dumps(files))
    parent = parent_of(out[name][index], path)
    items = [(new if k == path[-1] else k, v) for k, v in parent.items() if not (k == path[-1] and new is None)]
    parent.clear()
    parent.update(items)
    return out


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@PROPERTY
@given(data=st.data())
def test_a_typod_key_shows_what_its_absence_shows_plus_its_own_error(data: st.DataObject, scratch: Path) -> None:
    name, index, path, new = draw_typo(data, EXAMPLE_FILES)
    typod = seen(scratch / "typo", renamed(EXAMPLE_FILES, name, index, path, new))
    absent = seen(scratch / "absent", renamed(EXAMPLE_FILES, name, index, path, None))
    typo_path = (*path[:-1], new)
    assert {d for d in typod if not (d[2:4] == (name, index) and at_or_under(d[5], typo_path))} == absent


@PROPERTY
@given(data=st.data(), planted=st.sampled_from(PLANTED))
def test_fixing_a_typo_reveals_no_error_the_typod_run_did_not_show(
    data: st.DataObject, planted: tuple[str, int, tuple[str, ...], Any], scratch: Path
) -> None:
    file, doc, field_path, value = planted
    fixed = json.loads(json.dumps(EXAMPLE_FILES))
    parent_of(fixed[file][doc], field_path)[field_path[-1]] = value
    name, index, path, new = draw_typo(data, fixed)
    if (name, index) == (file, doc) and (len(path) == 1 or field_path[: len(path)] == path):
        return  # the typo is of the planted field or the envelope around it: nothing left to check
    errors = {d for d in seen(scratch / "fixed", fixed) if d[1] == "error"}
    assert errors, "the planted value is an error"
    typod = seen(scratch / "typo", renamed(fixed, name, index, path, new))
    # The same error of the same field in the same document (its address changes with a typo'd name).
    assert {(d[0], *d[2:4], d[5]) for d in errors} <= {(d[0], *d[2:4], d[5]) for d in typod}
