"""Adoption, export, status and protection, through the engine on real SQLite files.

A store built the way the Studio builds its shipped defaults is imported and round-trips; an
exported store re-applies to an equal store; status and protection say what a user expects.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.health import Health, Sync
from reconciler.plan import Action, Policy
from tests.fakes.studio_store import create_studio_store, populate_shipped_defaults, studio_read


@pytest.fixture
def studio_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Studio project folder: its data files, and a store holding the shipped defaults."""
    (tmp_path / "data/datasets").mkdir(parents=True)
    (tmp_path / "data/datasets/clean_ticketing.csv").write_text("instruction,intent\nhello,pay\n")
    for adapter in ("llama-2-sql", "mistral-7b-ticketing"):
        (tmp_path / "data/adapters" / adapter).mkdir(parents=True)
        (tmp_path / "data/adapters" / adapter / "adapter_config.json").write_text("{}")
    (tmp_path / ".app").mkdir()
    (tmp_path / "ftctl.toml").touch()  # the project root: data/ beside the imported manifests is inside it
    create_studio_store(str(tmp_path / ".app/state.db"))
    populate_shipped_defaults(str(tmp_path / ".app/state.db"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINE_TUNING_STUDIO_SQLITE_DB", raising=False)
    return tmp_path


def _plan(paths: list[str], **policy: object) -> engine.PlanReport:
    return engine.make_plan(paths, store=None, policy=Policy(**policy), offline=True, use_cache=False)  # type: ignore[arg-type]


def test_shipped_defaults_import_and_round_trip(studio_project: Path) -> None:
    before = studio_read(".app/state.db")
    report = engine.import_rows(None, "imported", lock_wait_s=1)
    assert report.objects == 13 and report.applied is not None
    again = _plan(["imported"])
    assert again.plan is not None and not again.plan.has_changes(), again.plan
    assert studio_read(".app/state.db") == before  # adoption writes no Studio row
    second = engine.import_rows(None, "more", lock_wait_s=1)
    assert second.objects == 0  # everything is managed now


def test_adopted_row_changed_in_manifest_is_updated_in_place(studio_project: Path) -> None:
    engine.import_rows(None, "imported", lock_wait_s=1)
    text = Path("imported/prompts.yaml").read_text()
    Path("imported/prompts.yaml").write_text(text.replace("completion_template: '{answer}'", "completion_template: '{answer};'"))
    report = _plan(["imported"])
    assert report.plan is not None
    [change] = report.plan.actionable()
    assert (change.action, change.address) == (Action.UPDATE, "Prompt/SQL Creation")
    assert [f.path for f in change.fields] == ["prompts.completion_template"]


def test_export_manifests_reapply_to_an_equal_store(studio_project: Path) -> None:
    engine.import_rows(None, "imported", lock_wait_s=1)
    engine.export_manifests(None, "exported")
    fresh = str(studio_project / "fresh.db")
    report = engine.make_plan(["exported"], store=fresh, policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None
    engine.execute_plan(report.plan, store=fresh, lock_wait_s=1)
    old, new = studio_read(".app/state.db"), studio_read(fresh)
    for table in ("datasets", "models", "configs", "prompts", "adapters"):  # every column, ids and is_default included
        rows = lambda found: sorted(json.dumps(r, sort_keys=True) for r in found)  # noqa: E731
        assert rows(old[table]) == rows(new[table]), table


def test_export_refuses_to_overwrite(studio_project: Path) -> None:
    engine.export_manifests(None, "exported")
    with pytest.raises(engine.EngineError, match="already exist"):
        engine.export_manifests(None, "exported")


def test_status_reports_sync_drift_and_missing(studio_project: Path) -> None:
    engine.import_rows(None, "imported", lock_wait_s=1)
    with sqlite3.connect(".app/state.db") as conn:
        conn.execute("UPDATE prompts SET description = 'edited in the UI' WHERE name = 'SQL Creation'")
        conn.execute("DELETE FROM models WHERE name = 'bigscience/bloom-1b1'")
    _, rows, _ = engine.status(["imported"], store=None, offline=True)
    by_name = {r.name: r for r in rows}
    assert by_name["SQL Creation"].sync is Sync.DRIFTED
    assert by_name["bigscience/bloom-1b1"].sync is Sync.MISSING
    assert by_name["bigscience/bloom-1b1"].health is Health.MISSING
    assert by_name["Ticketing Actions"].sync is Sync.SYNCED and by_name["Ticketing Actions"].health is Health.HEALTHY


def test_protection_outlives_the_manifest(studio_project: Path) -> None:
    engine.import_rows(None, "imported", lock_wait_s=1)
    engine.set_protection(None, "Model/bigscience/bloom-1b1", True)
    models = Path("imported/models.yaml")
    docs = models.read_text().split("---\n")
    models.write_text("---\n".join(d for d in docs if "bigscience/bloom-1b1" not in d))
    report = _plan(["imported"], prune=True)
    assert report.plan is not None and report.plan.is_blocked()
    assert [b.code for b in report.plan.blockers] == ["PL-002"]
    engine.set_protection(None, "Model/bigscience/bloom-1b1", False)
    report = _plan(["imported"], prune=True)
    assert report.plan is not None and not report.plan.is_blocked()
    [change] = report.plan.actionable()
    assert (change.action, change.address) == (Action.DELETE, "Model/bigscience/bloom-1b1")


def test_prune_refuses_to_orphan_prompts(studio_project: Path) -> None:
    engine.import_rows(None, "imported", lock_wait_s=1)
    with sqlite3.connect(".app/state.db") as conn:
        [(dataset_id,)] = conn.execute("SELECT id FROM datasets WHERE name = 'Ticketing Actions'").fetchall()
    datasets = Path("imported/datasets.yaml")
    docs = datasets.read_text().split("---\n")
    datasets.write_text("---\n".join(d for d in docs if "Ticketing Actions" not in d))
    prompts = Path("imported/prompts.yaml")
    prompts.write_text(prompts.read_text().replace("dataset: Ticketing Actions", f"dataset: {{id: {dataset_id}}}"))
    report = _plan(["imported"], prune=True)
    assert report.plan is not None
    assert [c.address for c in report.plan.actionable()] == ["Dataset/Ticketing Actions"]
    [blocker] = report.plan.blockers
    assert blocker.code == "PL-003" and "Prompt Ticketing Prompt with Actions" in blocker.message


def test_protecting_an_unmanaged_object_is_an_error(studio_project: Path) -> None:
    with pytest.raises(engine.EngineError, match="not managed"):
        engine.set_protection(None, "Model/nope", True)


@pytest.mark.parametrize("text", ["Model", "Model/", "/bloom"])
def test_an_address_without_kind_and_name_is_refused_as_such(studio_project: Path, text: str) -> None:
    with pytest.raises(engine.EngineError, match="want Kind/name"):
        engine.set_protection(None, text, True)
    with pytest.raises(engine.EngineError, match="want Kind/name"):
        engine.find_job(None, text)
