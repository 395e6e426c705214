"""`ftctl state pull` and `--store snapshot.json`: a snapshot file is the store as it was, read-only.

Stores are built as the golden plan cases build them (manifests applied by the engine, then edited
with SQL: drift, deleted rows, rows the Studio made itself). What a user relies on: a plan made from
the snapshot is the plan made from the store, byte for byte, and applies to that store while nothing
changed there; apply never writes to a snapshot; the Studio's importer can load the file; missing or
malformed files say so in one line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import engine
from reconciler.cli import main
from reconciler.plan import Policy
from reconciler.store import snapshot_file
from reconciler.store.location import StoreError
from reconciler.store.read import read_snapshot
from tests.unit.test_golden_plan import ENVIRON, SEED, build_start, policy_of, prepare

# Golden cases whose starting store has managed objects, drift, deleted rows or unmanaged rows.
CASES = ("drift", "update", "replace", "orphan-kept", "protection", "dedup", "unmanaged-clash", "waiting")
SNAPSHOT = "snapshot.json"
STORE = "state.db"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("FINE_TUNING_STUDIO_SQLITE_DB", raising=False)
    monkeypatch.setenv("FTCTL_BACKEND", "fake")
    yield tmp_path


def _start(case: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """The case's starting store; a case without one (waiting) gets its manifests applied: jobs launched."""
    work, args = prepare(case, root)
    monkeypatch.chdir(work)
    build_start(work)
    if not Path(STORE).exists():
        first = engine.make_plan(["manifests"], store=STORE, policy=Policy(), offline=True, environ=ENVIRON, use_cache=False)
        assert first.plan is not None
        engine.execute_plan(first.plan, store=STORE, lock_wait_s=0, environ=ENVIRON)
    return policy_of(args)


def _plan_json(store: str, policy: Policy) -> str:
    report = engine.make_plan(["manifests"], store=store, policy=policy, offline=True, environ=ENVIRON, use_cache=False, seed=SEED)
    assert report.plan is not None, report.validation.diagnostics
    return report.plan.to_json()


@pytest.mark.parametrize("case", CASES)
def test_a_plan_from_the_snapshot_is_the_plan_from_the_store(case: str, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _start(case, in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    live, pulled = read_snapshot(STORE), read_snapshot(SNAPSHOT)
    assert (pulled.rows, pulled.managed, pulled.serial, pulled.source) == (live.rows, live.managed, live.serial, live.source)
    assert pulled.fingerprints == live.fingerprints
    assert _plan_json(SNAPSHOT, policy) == _plan_json(STORE, policy)


def test_a_snapshot_plan_applies_to_the_store_it_came_from(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _start("drift", in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    plan = engine.make_plan(["manifests"], store=SNAPSHOT, policy=policy, offline=True, environ=ENVIRON, use_cache=False).plan
    assert plan is not None and plan.store == "sqlite+pysqlite:///state.db" and plan.has_changes()
    with pytest.raises(engine.EngineError, match=r"^a snapshot is read-only: apply against the store it came from \(sqlite\+pysqlite:///state.db\)$"):
        engine.execute_plan(plan, store=SNAPSHOT, lock_wait_s=0, environ=ENVIRON)
    engine.execute_plan(plan, store=STORE, lock_wait_s=0, environ=ENVIRON)
    after = engine.make_plan(["manifests"], store=STORE, policy=policy, offline=True, environ=ENVIRON, use_cache=False).plan
    assert after is not None and not after.has_changes()


def test_a_snapshot_plan_is_stale_once_the_store_moved(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _start("drift", in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    plan = engine.make_plan(["manifests"], store=SNAPSHOT, policy=policy, offline=True, environ=ENVIRON, use_cache=False).plan
    assert plan is not None
    with sqlite3.connect(STORE) as conn:
        conn.execute("UPDATE datasets SET description = 'edited after the pull' WHERE name = 'tickets'")
    conn.close()
    with pytest.raises(engine.EngineError, match=r"the plan is stale(.|\n)*Dataset 'tickets' \(datasets/"):
        engine.execute_plan(plan, store=STORE, lock_wait_s=0, environ=ENVIRON)


def test_two_pulls_of_an_unchanged_store_are_byte_identical(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _start("drift", in_tmp, monkeypatch)
    first = engine.pull_state(STORE, "one.json")
    engine.pull_state(STORE, "two.json")
    assert Path("one.json").read_bytes() == Path("two.json").read_bytes()
    assert (first.serial, first.store) == (1, "sqlite+pysqlite:///state.db")
    assert not [p for p in os.listdir(".") if p.endswith(".tmp")]  # the temporary file was renamed, not left


def test_the_file_holds_every_table_with_values_as_stored(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _start("drift", in_tmp, monkeypatch)
    with sqlite3.connect(STORE) as conn:  # a row the Studio made, with a float and a NULL
        conn.execute("INSERT INTO fine_tuning_jobs (id, adapter_name, learning_rate, num_epochs, train_test_split, out_dir) "
                     "VALUES ('0-studio-job', 'by-hand', 0.0002, 3, 0.9, NULL)")
    conn.close()
    engine.pull_state(STORE, SNAPSHOT)
    document = json.loads(Path(SNAPSHOT).read_text(encoding="utf-8"))
    with sqlite3.connect(STORE) as conn:
        conn.row_factory = sqlite3.Row
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        stored = {t: sorted((dict(r) for r in conn.execute(f"SELECT * FROM {t}")), key=lambda r: json.dumps(r, sort_keys=True))
                  for t in tables}
    conn.close()
    assert {"ftctl_objects", "ftctl_meta", "ftctl_applies", "ftctl_history", "datasets", "alembic_version"} <= set(document)
    assert set(document) == (set(tables) - {"ftctl_lock", "ftctl_journal"}) | {"ftctl_snapshot", "ftctl_snapshot_jobs"}
    assert list(document) == sorted(document)
    for table, entry in document.items():
        assert set(entry) == {"schema", "data"}, table
        assert entry["schema"].startswith(f"CREATE TABLE IF NOT EXISTS {table} ("), table
        if table not in ("ftctl_snapshot", "ftctl_snapshot_jobs"):  # values and their types (str, int, float, None) exactly as stored
            got = sorted(entry["data"], key=lambda r: json.dumps(r, sort_keys=True))
            assert got == stored[table] and [list(map(type, r.values())) for r in got] == [list(map(type, r.values())) for r in stored[table]]
    keys = [(r["kind"], r["name"]) for r in document["ftctl_objects"]["data"]]  # rows in primary-key order
    seqs = [r["seq"] for r in document["ftctl_history"]["data"]]
    assert keys == sorted(keys) and len(keys) > 1 and seqs == sorted(seqs) and len(seqs) > 1
    [job] = document["fine_tuning_jobs"]["data"]
    assert (job["learning_rate"], job["num_epochs"], job["out_dir"]) == (0.0002, 3, None)
    meta = {r["key"]: r["value"] for r in document["ftctl_snapshot"]["data"]}
    assert meta == {"format_version": "1", "serial": "1", "store": "sqlite+pysqlite:///state.db"}


def _studio_import(document: dict[str, Any], path: Path) -> None:
    """What the Studio's `DatabaseJsonConverter.import_from_json` does with an export file."""
    conn = sqlite3.connect(path)
    for table, info in document.items():
        if not isinstance(info, dict) or "schema" not in info or "data" not in info:
            raise ValueError(f"Missing schema or data for table {table}")
        conn.execute(info["schema"])
        if info["data"]:
            columns = list(info["data"][0].keys())
            sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({','.join('?' for _ in columns)})"
            for row in info["data"]:
                conn.execute(sql, [row[c] for c in columns])
    conn.commit()
    conn.close()


def test_the_studio_can_import_the_file_and_it_reads_back_the_same(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _start("dedup", in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    _studio_import(json.loads(Path(SNAPSHOT).read_text(encoding="utf-8")), in_tmp / "restored.db")
    restored, live = read_snapshot(str(in_tmp / "restored.db")), read_snapshot(STORE)
    assert (restored.rows, restored.managed, restored.serial) == (live.rows, live.managed, live.serial)
    # Pulled again, the restored store gives the same tables; its provenance entry is the new pull's.
    engine.pull_state(str(in_tmp / "restored.db"), "again.json")
    again, first = (json.loads(Path(p).read_text(encoding="utf-8")) for p in ("again.json", SNAPSHOT))
    assert {t: e["data"] for t, e in again.items() if t != "ftctl_snapshot"} == {t: e["data"] for t, e in first.items() if t != "ftctl_snapshot"}


def test_a_studio_export_without_provenance_plans_but_applies_nowhere(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _start("drift", in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    document = json.loads(Path(SNAPSHOT).read_text(encoding="utf-8"))
    del document["ftctl_snapshot"]
    Path("export.json").write_text(json.dumps(document), encoding="utf-8")
    plan = engine.make_plan(["manifests"], store="export.json", policy=policy, offline=True, environ=ENVIRON, use_cache=False).plan
    assert plan is not None and plan.store == "export.json" and plan.has_changes()
    with pytest.raises(engine.EngineError, match=r"the plan was made for export\.json, not sqlite"):
        engine.execute_plan(plan, store=STORE, lock_wait_s=0, environ=ENVIRON)


def test_a_store_read_through_sqlalchemy_pulls_the_same_rows(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for databases other than SQLite (DB-API rows, DDL from ftctl's declarations)."""
    _start("waiting", in_tmp, monkeypatch)
    plain = snapshot_file.pull(STORE)
    monkeypatch.setattr(snapshot_file, "sqlite_path", lambda _location: None)
    other = snapshot_file.pull(f"sqlite:///{in_tmp / 'waiting' / STORE}")
    assert {t: e["data"] for t, e in other.items() if t != "ftctl_snapshot"} == {t: e["data"] for t, e in plain.items() if t != "ftctl_snapshot"}
    assert all(e["schema"].startswith(f"CREATE TABLE IF NOT EXISTS {t} (") for t, e in other.items())


# -- what a user sees --------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_cli_pull_then_plan_against_the_snapshot(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _start("drift", in_tmp, monkeypatch)
    code, out, _ = _cli(capsys, "state", "pull", "--store", STORE, "-o", SNAPSHOT)
    assert code == 0 and out.startswith(f"Wrote {SNAPSHOT}: ") and "of state.db (serial 1)" in out
    monkeypatch.setenv("FTCTL_PLAN_SEED", SEED)
    code, from_snapshot, _ = _cli(capsys, "plan", "manifests", "--store", SNAPSHOT, "--offline", "--detailed-exitcode")
    code_live, from_store, _ = _cli(capsys, "plan", "manifests", "--store", STORE, "--offline", "--detailed-exitcode")
    assert (code, from_snapshot) == (code_live, from_store) and code == 2
    code, _, _ = _cli(capsys, "validate", "manifests", "--store", SNAPSHOT, "--offline")
    assert code == 0
    code, out, _ = _cli(capsys, "status", "manifests", "--store", SNAPSHOT, "--offline")
    assert code == 2 and "drifted" in out


def test_cli_apply_to_a_snapshot_is_refused(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _start("drift", in_tmp, monkeypatch)
    engine.pull_state(STORE, SNAPSHOT)
    before = Path(SNAPSHOT).read_bytes()
    code, _, err = _cli(capsys, "apply", "manifests", "--store", SNAPSHOT, "--offline", "--auto-approve")
    assert code == 1
    assert err == "ftctl: error: a snapshot is read-only: apply against the store it came from (sqlite+pysqlite:///state.db)\n"
    assert Path(SNAPSHOT).read_bytes() == before


def test_missing_and_malformed_files_say_so(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(in_tmp)
    with pytest.raises(engine.EngineError, match=r"^no store at missing.db$"):
        engine.read_store("missing.db")
    with pytest.raises(engine.EngineError, match=r"^no store at missing.db$"):
        engine.pull_state("missing.db", SNAPSHOT)
    with pytest.raises(engine.EngineError, match=r"^no snapshot file at missing.json \(write one with `ftctl state pull -o missing.json`\)$"):
        engine.make_plan(["."], store="missing.json", policy=Policy(), offline=True, use_cache=False)
    with pytest.raises(engine.EngineError, match=r"^no snapshot file at missing.json"):
        engine.read_store("missing.json")
    Path("bad.json").write_text('{"models": {"rows": []}}', encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad.json: not a snapshot file \(table 'models' needs a \"schema\" text and a \"data\" list\)"):
        read_snapshot("bad.json")
    Path("bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad.json: not a snapshot file \(invalid JSON"):
        read_snapshot("bad.json")
    with pytest.raises(engine.EngineError, match=r"out.txt: a snapshot file's name ends in .json"):
        engine.pull_state("missing.db", "out.txt")
    assert not Path(SNAPSHOT).exists() and not Path("out.txt").exists()


def test_a_snapshot_plan_shows_jobs_as_pulled_where_they_cannot_be_seen(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull-request check plans on a runner that sees none of the jobs: from the snapshot it shows
    each job as it was at the pull, and launches nothing again (the live store, planned from a
    machine without the job folders, would plan the running training as a new launch)."""
    policy = _start("noop", in_tmp, monkeypatch)  # a FineTuningJob launched and running (fake backend)
    engine.pull_state(STORE, SNAPSHOT)
    elsewhere = {**ENVIRON, "FTCTL_JOBS_DIR": str(in_tmp / "no-jobs-here")}
    from_snapshot = engine.make_plan(["manifests"], store=SNAPSHOT, policy=policy, offline=True, environ=elsewhere, use_cache=False)
    from_store = engine.make_plan(["manifests"], store=STORE, policy=policy, offline=True, environ=elsewhere, use_cache=False)
    assert from_snapshot.plan is not None and from_store.plan is not None
    [job] = [c for c in from_snapshot.plan.changes if c.kind == "FineTuningJob"]
    assert job.job_summary == "running" and not job.launches and job.action.value == "noop"
    assert [c.launches for c in from_store.plan.changes if c.kind == "FineTuningJob"] != [()]  # what the snapshot avoids
