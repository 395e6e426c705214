"""The project root and a store that is not there, through the real CLI.

ftctl finds its project root by searching upward from the manifests (else the current folder) for
ftctl.toml; the default store (`<root>/.app/state.db`), the jobs folder and the settings hang off
it, wherever the command runs. A store that does not exist is named in every plan format, and
apply refuses to create it without --create-store (a mistyped --store is named before anything is
written); a store URL that is not SQLite is one clear line for every command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, apply, ftctl, make_demo, show

NEW_STORE = "A new store will be created at"
POSTGRES = "postgresql://ftctl:hunter2@db.example.com/studio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A demo project at tmp_path/proj (its root marked by ftctl.toml), and an unrelated tmp_path/sub."""
    (tmp_path / "sub").mkdir()
    return make_demo(tmp_path / "proj")


def store_of(project: Path) -> Path:
    return project / ".app" / "state.db"


def test_plan_from_a_subfolder_or_beside_the_project_uses_the_roots_store(project: Path) -> None:
    assert apply(project, DEMO).returncode == 0
    for cwd, target in ((project / DEMO, "."), (project.parent / "sub", f"../proj/{DEMO}")):
        planned = ftctl(cwd, "plan", target, "--offline")
        assert planned.returncode == 0, show(planned)
        assert f"Plan for {store_of(project).resolve()} (serial 1)" in planned.stdout, show(planned)
        assert NEW_STORE not in planned.stdout
        assert not (cwd / ".app").exists()


def test_a_missing_store_is_named_in_every_plan_format_and_nothing_is_written(project: Path) -> None:
    where = str(store_of(project).resolve())
    text = ftctl(project / "specs", "plan", "demo", "--offline")
    markdown = ftctl(project / "specs", "plan", "demo", "--offline", "--format", "markdown")
    plan_json = ftctl(project / "specs", "plan", "demo", "--offline", "--format", "json")
    assert f"{NEW_STORE} {where}" in text.stdout, show(text)
    assert f"{NEW_STORE} {where}" in markdown.stdout, show(markdown)
    assert json.loads(plan_json.stdout)["store_exists"] is False, show(plan_json)
    assert not store_of(project).exists()


def test_apply_refuses_a_missing_store_without_create_store_and_creates_it_with(project: Path) -> None:
    refused = ftctl(project / "specs", "apply", "demo", "--offline", "--auto-approve")
    assert refused.returncode == 1, show(refused)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("ftctl:")]
    assert errors == [f"ftctl: error: store {store_of(project).resolve()} does not exist: pass --create-store to create "
                      "it (or check --store and FINE_TUNING_STUDIO_SQLITE_DB for a typo)"], show(refused)
    assert not (project / ".app" / "jobs").exists() and not store_of(project).exists()
    created = ftctl(project / "specs", "apply", "demo", "--offline", "--auto-approve", "--create-store")
    assert created.returncode == 0, show(created)
    assert store_of(project).is_file() and (project / ".app" / "jobs").is_dir()
    assert not (project / "specs" / ".app").exists()


def test_a_mistyped_store_is_refused_before_anything_is_written(project: Path) -> None:
    assert apply(project, DEMO).returncode == 0
    jobs = sorted(p.name for p in (project / ".app" / "jobs").rglob("*"))
    typo = ftctl(project, "apply", DEMO, "--offline", "--auto-approve", "--store", "state.bd")
    assert typo.returncode == 1, show(typo)
    assert "store state.bd does not exist: pass --create-store" in typo.stderr, show(typo)
    assert f"{NEW_STORE} state.bd" in typo.stdout
    assert not (project / "state.bd").exists()
    assert sorted(p.name for p in (project / ".app" / "jobs").rglob("*")) == jobs


def test_import_refuses_a_missing_store(project: Path) -> None:
    refused = ftctl(project, "import", "--auto-approve", "--store", "nothere.db", "--out", "imported")
    assert refused.returncode == 1, show(refused)
    assert "store nothere.db does not exist: nothing to import" in refused.stderr, show(refused)
    assert not (project / "nothere.db").exists() and not (project / "imported").exists()


@pytest.mark.parametrize("command", [
    ["plan", DEMO, "--offline"],
    ["apply", DEMO, "--offline", "--auto-approve", "--create-store"],
    ["status", DEMO, "--offline"],
    ["drift", DEMO, "--offline"],
    ["validate", DEMO, "--offline"],
    ["protect", "Dataset/demo-tickets"],
    ["state", "pull", "-o", "snapshot.json"],
    ["import", "--auto-approve"],
])
def test_a_store_that_is_not_sqlite_is_one_clear_line(project: Path, command: list[str]) -> None:
    before = sorted(p.name for p in project.iterdir())
    done = ftctl(project, *command, "--store", POSTGRES)
    assert done.returncode == 1, show(done)
    assert done.stderr.strip().splitlines()[-1] == (
        "ftctl: error: ftctl stores are SQLite files (sqlite:///… or a path); "
        "postgresql://ftctl:***@db.example.com/studio is not supported"), show(done)
    assert "hunter2" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in project.iterdir()) == before


def test_settings_come_from_the_roots_ftctl_toml_and_its_paths_hang_off_the_root(project: Path) -> None:
    (project / "ftctl.toml").write_text('jobs_dir = "build/jobs"\n', encoding="utf-8")
    applied = ftctl(project / DEMO, "apply", ".", "--offline", "--auto-approve", "--create-store")
    assert applied.returncode == 0, show(applied)
    assert [p.name for p in (project / "build" / "jobs").iterdir()], "the jobs folder of ftctl.toml, under the root"
    assert not (project / DEMO / "build").exists() and not (project / ".app" / "jobs").exists()
    (project / "ftctl.toml").write_text('jobs_folder = "build/jobs"\n', encoding="utf-8")
    wrong = ftctl(project / DEMO, "plan", ".", "--offline")
    assert wrong.returncode == 1, show(wrong)
    assert f"{(project / 'ftctl.toml').resolve()}: unknown setting jobs_folder" in wrong.stderr, show(wrong)


def test_the_studio_variable_is_relative_to_the_current_folder(project: Path) -> None:
    planned = ftctl(project / "specs", "plan", "demo", "--offline", env={"FINE_TUNING_STUDIO_SQLITE_DB": "here.db"})
    assert planned.returncode == 0, show(planned)
    assert f"{NEW_STORE} here.db" in planned.stdout, show(planned)


def test_a_relative_read_root_in_ftctl_toml_is_the_roots(project: Path) -> None:
    shared = project.parent / "shared"
    shared.mkdir()
    (project / DEMO / "data" / "tickets.csv").rename(shared / "tickets.csv")
    resources = project / DEMO / "resources.yaml"
    resources.write_text(resources.read_text(encoding="utf-8").replace("location: data/tickets.csv", "location: ../../../shared/tickets.csv"),
                         encoding="utf-8")
    outside = ftctl(project / DEMO, "validate", ".", "--offline")
    assert outside.returncode == 1 and "LD-014" in outside.stdout, show(outside)
    (project / "ftctl.toml").write_text('read_roots = ["../shared"]\n', encoding="utf-8")
    allowed = ftctl(project / DEMO, "validate", ".", "--offline")
    assert allowed.returncode == 0, show(allowed)
