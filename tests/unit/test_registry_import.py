"""Registering model_registry Models and Adapters the Studio's documented way (seeds/002, Model
Registry): `get_registered_model(id)`, and the row carries cml_registered_model_id with the MLflow
experiment and run of the first version, read from a fake CML API over real HTTP on loopback.
Unlike the Studio's code, no Hugging Face name is demanded. An id the registry does not know stops
the plan (MD-103 / AD-103 at the manifest's line); a registry that keeps failing is a warning
(ON-002) and the store's values stay; offline, the store's values stay too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import engine
from reconciler.backends.cml_http import CMLClient
from reconciler.backends.cml_registry import gather_registry_facts
from reconciler.diagnostics import Severity
from reconciler.plan import Plan, Policy
from tests.fakes.cml_server import FakeCML

MANIFESTS = """\
apiVersion: ftctl/v1
kind: Model
metadata: {{name: base}}
spec:
  type: model_registry
  cml_registered_model_id: {model_id}
---
apiVersion: ftctl/v1
kind: Adapter
metadata: {{name: tuned}}
spec:
  type: model_registry
  model: base
  cml_registered_model_id: {adapter_id}
"""
MODEL_LINE, ADAPTER_LINE = 6, 14  # the cml_registered_model_id lines of MANIFESTS

EXTRA_ADAPTER = """\
---
apiVersion: ftctl/v1
kind: Adapter
metadata: {{name: tuned-again}}
spec:
  type: model_registry
  model: base
  cml_registered_model_id: {adapter_id}
"""


@pytest.fixture
def cml() -> Iterator[FakeCML]:
    with FakeCML(id_seed=3) as fake:
        yield fake


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff sleeps of every CML client made from the environment (recorded, not slept)."""
    waits: list[float] = []
    made = CMLClient.from_environ.__func__  # type: ignore[attr-defined]

    def from_environ(cls: type[CMLClient], environ: Any, **options: Any) -> CMLClient:
        return made(cls, environ, **{"sleep": waits.append, **options})  # type: ignore[no-any-return]

    monkeypatch.setattr(CMLClient, "from_environ", classmethod(from_environ))
    return waits


def registry(cml: FakeCML) -> tuple[str, str]:
    """A base model and an adapter in the registry; each has two versions (the first one counts)."""
    model_id = cml.add_registered_model("llama-base", [
        {"experiment_id": "exp-base-1", "run_id": "run-base-1"},
        {"experiment_id": "exp-base-2", "run_id": "run-base-2"},
    ])
    adapter_id = cml.add_registered_model("llama-lora", [
        {"experiment_id": "exp-lora-1", "run_id": "run-lora-1"},
        {"experiment_id": "exp-lora-2", "run_id": "run-lora-2"},
    ])
    return model_id, adapter_id


def registry_project(cml: FakeCML) -> tuple[str, str]:
    """`registry(cml)`, and m.yaml naming both registered models (their ids returned)."""
    model_id, adapter_id = registry(cml)
    Path("m.yaml").write_text(MANIFESTS.format(model_id=model_id, adapter_id=adapter_id))
    return model_id, adapter_id


def plan(environ: dict[str, str], *, offline: bool = False) -> engine.PlanReport:
    return engine.make_plan(["m.yaml"], store="s.db", policy=Policy(), offline=offline, environ=environ, use_cache=False)


def inserted(plan: Plan, table: str, name: str) -> dict[str, Any]:
    [values] = [op.values for c in plan.changes for op in c.ops if op.table == table and op.op == "insert"
                and op.values.get("name") == name]
    return dict(values)


def stored(table: str, name: str) -> dict[str, Any]:
    with sqlite3.connect("s.db") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(f"SELECT * FROM {table} WHERE name = ?", (name,)).fetchone()
    return dict(row)


def stored_count(table: str) -> int:
    with sqlite3.connect("s.db") as conn:
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def describe(report: engine.PlanReport) -> str:
    return "\n".join(f"{d.code} {d.severity} {d.location} {d.summary}" for d in report.validation.diagnostics)


def test_model_and_adapter_rows_carry_the_first_versions_mlflow_ids(project: Path, cml: FakeCML) -> None:
    model_id, adapter_id = registry(cml)
    Path("m.yaml").write_text(MANIFESTS.format(model_id=model_id, adapter_id=adapter_id)
                              + EXTRA_ADAPTER.format(adapter_id=adapter_id))
    report = plan(cml.env())
    assert report.plan is not None, describe(report)
    assert report.validation.diagnostics == []
    assert cml.calls["get_registered_model"] == 2  # once per distinct id, though two adapters share one

    model = inserted(report.plan, "models", "base")
    assert model["type"] == "model_registry"
    assert model["cml_registered_model_id"] == model_id
    assert (model["mlflow_experiment_id"], model["mlflow_run_id"]) == ("exp-base-1", "run-base-1")
    assert not model["huggingface_model_name"]  # no Hugging Face name is asked for (the Studio's bug)
    adapter = inserted(report.plan, "adapters", "tuned")
    assert adapter["type"] == "model_registry"
    assert adapter["cml_registered_model_id"] == adapter_id
    assert (adapter["mlflow_experiment_id"], adapter["mlflow_run_id"]) == ("exp-lora-1", "run-lora-1")
    assert adapter["model_id"] == next(op.row_id for c in report.plan.changes for op in c.ops if op.table == "models")

    engine.execute_plan(report.plan, store="s.db", lock_wait_s=1)
    row = stored("models", "base")
    assert (row["type"], row["cml_registered_model_id"]) == ("model_registry", model_id)
    assert (row["mlflow_experiment_id"], row["mlflow_run_id"]) == ("exp-base-1", "run-base-1")
    row = stored("adapters", "tuned-again")
    assert (row["mlflow_experiment_id"], row["mlflow_run_id"]) == ("exp-lora-1", "run-lora-1")
    again = plan(cml.env())
    assert again.plan is not None
    assert not again.plan.has_changes(), [c.fields for c in again.plan.actionable()]


def test_an_unknown_id_is_an_error_at_its_line_and_there_is_no_plan(project: Path, cml: FakeCML) -> None:
    Path("m.yaml").write_text(MANIFESTS.format(model_id="aaaa-bbbb-cccc-dddd", adapter_id="eeee-ffff-gggg-hhhh"))
    report = plan(cml.env())
    assert report.plan is None
    errors = [(d.code, d.location.file, d.location.line, d.address) for d in report.validation.diagnostics
              if d.severity is Severity.ERROR and d.location is not None]
    assert errors == [
        ("MD-103", "m.yaml", MODEL_LINE, "Model/base"),
        ("AD-103", "m.yaml", ADAPTER_LINE, "Adapter/tuned"),
    ], describe(report)
    assert "aaaa-bbbb-cccc-dddd" in report.validation.diagnostics[0].summary
    assert not Path("s.db").exists() or not stored_count("models")


def test_a_registered_model_without_a_version_is_an_error(project: Path, cml: FakeCML) -> None:
    empty = cml.add_registered_model("nothing-yet", [])
    _, adapter_id = registry(cml)
    Path("m.yaml").write_text(MANIFESTS.format(model_id=empty, adapter_id=adapter_id))
    report = plan(cml.env())
    assert report.plan is None
    assert [(d.code, d.location.line if d.location else None) for d in report.validation.diagnostics] == [
        ("MD-103", MODEL_LINE)
    ], describe(report)
    assert "no version" in report.validation.diagnostics[0].summary


def test_offline_the_store_keeps_its_mlflow_ids(project: Path, cml: FakeCML) -> None:
    registry_project(cml)
    # Offline first: the rows are written without what only the registry knows.
    first = plan(cml.env(), offline=True)
    assert first.plan is not None, describe(first)
    assert "mlflow_run_id" not in inserted(first.plan, "models", "base")
    assert cml.calls["get_registered_model"] == 0
    engine.execute_plan(first.plan, store="s.db", lock_wait_s=1)
    # Online: the registry fills them in, in place.
    online = plan(cml.env())
    assert online.plan is not None, describe(online)
    updated = {(f.path, f.after) for c in online.plan.actionable() for f in c.fields}
    assert ("models.mlflow_run_id", "run-base-1") in updated and ("adapters.mlflow_run_id", "run-lora-1") in updated
    engine.execute_plan(online.plan, store="s.db", lock_wait_s=1)
    # Offline again, and online without the CML API settings: nothing to change, nothing asked.
    cml.reset_counters()
    for environ, offline in ((cml.env(), True), ({}, False)):
        again = plan(environ, offline=offline)
        assert again.plan is not None
        assert not again.plan.has_changes(), [c.fields for c in again.plan.actionable()]
        assert again.validation.diagnostics == [], describe(again)
    assert cml.calls["get_registered_model"] == 0
    assert stored("models", "base")["mlflow_experiment_id"] == "exp-base-1"


def test_a_registry_503_storm_is_a_warning_and_the_store_keeps_its_values(
    project: Path, cml: FakeCML, slept: list[float]
) -> None:
    registry_project(cml)
    applied = plan(cml.env())
    assert applied.plan is not None, describe(applied)
    engine.execute_plan(applied.plan, store="s.db", lock_wait_s=1)

    cml.reset_counters()
    cml.fail_next(100, 503, operation="get_registered_model")
    report = plan(cml.env())
    assert report.plan is not None, describe(report)
    warnings = [(d.code, d.severity, d.location.line if d.location else None, d.address) for d in report.validation.diagnostics]
    assert warnings == [
        ("ON-002", Severity.WARNING, MODEL_LINE, "Model/base"),
        ("ON-002", Severity.WARNING, ADAPTER_LINE, "Adapter/tuned"),
    ], describe(report)
    assert "503" in (report.validation.diagnostics[0].detail or "")
    assert cml.calls["get_registered_model"] == 2 * 6 and len(slept) == 2 * 5  # retried with backoff, then given up
    assert not report.plan.has_changes(), [c.fields for c in report.plan.actionable()]
    assert stored("adapters", "tuned")["mlflow_run_id"] == "run-lora-1"


def test_a_first_plan_during_a_storm_writes_the_rows_without_mlflow_ids(
    project: Path, cml: FakeCML, slept: list[float]
) -> None:
    model_id, _ = registry_project(cml)
    cml.fail_next(100, 503, operation="get_registered_model")
    report = plan(cml.env())
    assert report.plan is not None, describe(report)
    assert {d.code for d in report.validation.diagnostics} == {"ON-002"}
    model = inserted(report.plan, "models", "base")
    assert model["cml_registered_model_id"] == model_id and "mlflow_experiment_id" not in model


def test_gather_asks_nothing_offline_or_unconfigured(project: Path, cml: FakeCML) -> None:
    model_id, adapter_id = registry_project(cml)
    report = engine.validate(["m.yaml"], offline=True, environ={}, use_cache=False)
    assert not report.has_errors(), report.diagnostics  # no Hugging Face name is demanded
    partial = {k: v for k, v in cml.env().items() if k != "CDSW_APIV2_KEY"}
    for environ, offline in ((cml.env(), True), (partial, False), ({}, False)):
        facts, diags = gather_registry_facts(report.manifests, environ=environ, offline=offline)
        assert (facts.models, facts.missing, diags) == ({}, {}, [])
    assert cml.calls["get_registered_model"] == 0
    facts, diags = gather_registry_facts(report.manifests, environ=cml.env(), offline=False)
    assert diags == [] and set(facts.models) == {model_id, adapter_id}
    assert facts.models[model_id].name == "llama-base" and facts.models[model_id].versions == 2
