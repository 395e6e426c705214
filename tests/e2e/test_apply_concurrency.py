"""The apply lock (`ftctl_lock`, a lease) and two applies at once on one store.

Lock tests hold the lock themselves (a row in ftctl_lock), so nothing depends on timing: a live
holder (this test process, on this host) refuses an apply with `--lock-timeout 0` and is named; an
expired lease, or a holder on this host whose pid is dead, is taken over. The race tests start two
real applies together and accept either outcome the README allows (exit 0, or exit 1 naming a
stale plan), but never a row written twice.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    DEMO,
    REPO,
    apply,
    cli_env,
    count,
    dump_all,
    dump_studio,
    duplicates,
    ftctl,
    ftctl_popen,
    insert_lock,
    journal,
    plan,
    query,
    show,
)

STORE = ".app/state.db"
CREATED = {"configs": 3, "datasets": 1, "models": 1, "prompts": 1, "fine_tuning_jobs": 1}  # specs/demo, jobs waiting
DEMO_OBJECTS = 7


def _seed_store(root: Path) -> Path:
    """A store with ftctl's tables and part of the demo (its configs) applied."""
    first = apply(root, f"{DEMO}/configs.yaml")
    assert first.returncode == 0, show(first)
    return root / STORE


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- the lease lock ------------------------------------------------------------------------------

def test_a_live_holder_blocks_apply_and_is_named(demo_root: Path) -> None:
    db = _seed_store(demo_root)
    host = socket.gethostname()
    insert_lock(db, owner="ftctl-testhold", host=host, pid=os.getpid(), expires_at=time.time() + 600)
    before = dump_all(db)

    blocked = apply(demo_root, DEMO, extra=["--lock-timeout", "0"])

    assert blocked.returncode == 1, show(blocked)
    assert f"locked by ftctl-testhold (pid {os.getpid()} on {host}" in blocked.stderr, show(blocked)
    assert "--lock-timeout" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    assert dump_all(db) == before, "a refused apply must leave the store (and the holder's lock) as it was"


def test_a_live_lease_on_another_host_is_not_taken_over(demo_root: Path) -> None:
    """The pid of a holder on another host says nothing here: only the lease's expiry frees it."""
    db = _seed_store(demo_root)
    insert_lock(db, owner="ftctl-elsewhere", host="some-other-host.invalid", pid=_dead_pid(), expires_at=time.time() + 600)
    before = dump_all(db)

    blocked = apply(demo_root, DEMO, extra=["--lock-timeout", "0"])

    assert blocked.returncode == 1, show(blocked)
    assert "locked by ftctl-elsewhere (pid" in blocked.stderr and "on some-other-host.invalid" in blocked.stderr, show(blocked)
    assert dump_all(db) == before


def test_lock_timeout_waits_then_names_the_holder(demo_root: Path) -> None:
    db = _seed_store(demo_root)
    insert_lock(db, owner="ftctl-testhold", host=socket.gethostname(), pid=os.getpid(), expires_at=time.time() + 600)

    started = time.monotonic()
    blocked = apply(demo_root, DEMO, extra=["--lock-timeout", "1"])
    elapsed = time.monotonic() - started

    assert blocked.returncode == 1, show(blocked)
    assert "locked by ftctl-testhold" in blocked.stderr and "waited 1 s" in blocked.stderr, show(blocked)
    assert elapsed >= 1.0


@pytest.mark.parametrize("holder", ["expired-lease-elsewhere", "expired-lease-live-pid", "dead-pid-on-this-host"])
def test_a_stale_lock_is_taken_over(demo_root: Path, holder: str) -> None:
    db = _seed_store(demo_root)
    now, host = time.time(), socket.gethostname()
    if holder == "expired-lease-elsewhere":
        insert_lock(db, owner="ftctl-gone", host="some-other-host.invalid", pid=1, expires_at=now - 5)
    elif holder == "expired-lease-live-pid":
        insert_lock(db, owner="ftctl-gone", host=host, pid=os.getpid(), expires_at=now - 5)
    else:
        insert_lock(db, owner="ftctl-gone", host=host, pid=_dead_pid(), expires_at=now + 600)

    taken = apply(demo_root, DEMO, extra=["--lock-timeout", "0"])

    assert taken.returncode == 0, show(taken)
    assert {t: count(db, t) for t in CREATED} == CREATED
    assert count(db, "ftctl_lock") == 0, "the apply releases the lock it took over"
    assert [r[0] for r in query(db, "SELECT state FROM ftctl_applies ORDER BY started_at")] == ["done", "done"]


def test_a_lock_released_while_waiting_lets_apply_proceed(demo_root: Path) -> None:
    """Whether the apply reaches the lock before or after it is freed, it must end applied."""
    db = _seed_store(demo_root)
    insert_lock(db, owner="ftctl-testhold", host=socket.gethostname(), pid=os.getpid(), expires_at=time.time() + 600)
    waiting = ftctl_popen(demo_root, "apply", DEMO, "--auto-approve", "--create-store", "--offline", "--lock-timeout", "60")
    try:
        time.sleep(1.0)
        assert query(db, "SELECT owner FROM ftctl_lock") == [("ftctl-testhold",)], "the waiting apply took a live lock"
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("DELETE FROM ftctl_lock WHERE owner = 'ftctl-testhold'")
        conn.close()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, f"exit {waiting.returncode}\n{out}\n{err}"
    assert {t: count(db, t) for t in CREATED} == CREATED
    assert count(db, "ftctl_lock") == 0


# -- two applies at once -------------------------------------------------------------------------

def _race(root: Path) -> list[tuple[int, str, str]]:
    procs = [ftctl_popen(root, "apply", DEMO, "--auto-approve", "--create-store", "--offline", "--lock-timeout", "60") for _ in range(2)]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        results.append((proc.returncode, out, err))
    return results


def _check_race(root: Path, results: list[tuple[int, str, str]]) -> None:
    db = root / STORE
    shown = "\n".join(f"--- apply {i}: exit {rc}\n{out[-1500:]}\n{err[-1500:]}" for i, (rc, out, err) in enumerate(results))
    for rc, _, err in results:
        assert rc == 0 or (rc == 1 and "stale" in err), f"each apply exits 0, or 1 on a stale plan\n{shown}"
        assert "Traceback" not in err and "internal error" not in err, shown
    assert any(rc == 0 for rc, _, _ in results), shown

    assert {t: count(db, t) for t in CREATED} == CREATED, f"{dump_studio(db)}\n{shown}"
    assert not duplicates(db), duplicates(db)
    assert count(db, "ftctl_objects") == DEMO_OBJECTS
    created = Counter(query(db, "SELECT kind, name FROM ftctl_history WHERE action = 'create'"))
    assert len(created) == DEMO_OBJECTS and set(created.values()) == {1}, f"each object is created once: {created}"
    history_rows = {f"{t}/{i}" for t, i in query(db, "SELECT store_table, row_id FROM ftctl_history")}
    studio_rows = {f"{t}/{r[0]}" for t in CREATED for r in query(db, f"SELECT id FROM {t}")}
    assert history_rows == studio_rows, "history names exactly the rows in the store"
    assert {e[3] for e in journal(db)} == {"done"}
    assert {r[0] for r in query(db, "SELECT state FROM ftctl_applies")} <= {"done"}
    assert count(db, "ftctl_lock") == 0
    again = plan(root, DEMO)
    assert again.returncode == 0 and "No changes" in again.stdout, show(again)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_two_applies_at_once_on_an_existing_store(demo_root: Path, round_: int) -> None:
    _seed_store(demo_root)
    _check_race(demo_root, _race(demo_root))


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_two_applies_at_once_on_a_new_store(demo_root: Path, round_: int) -> None:
    """Both applies find no store and create it. Each round is one draw of the interleaving; the
    schema-creation race it can hit is made certain by test_schema_creation_tolerates_a_concurrent_creator."""
    _check_race(demo_root, _race(demo_root))


def test_a_plan_made_before_another_apply_is_refused_as_stale(demo_root: Path) -> None:
    """The race's other order, made certain with saved plans: both plans read the same (empty) store."""
    db = demo_root / STORE
    for name in ("first.json", "second.json"):
        made = ftctl(demo_root, "plan", DEMO, "--offline", "-o", name)
        assert made.returncode == 0, show(made)
    first = ftctl(demo_root, "apply", "first.json", "--lock-timeout", "0")
    assert first.returncode == 0, show(first)
    after_first = dump_all(db, skip_tables=("ftctl_lock",))

    second = ftctl(demo_root, "apply", "second.json", "--lock-timeout", "0")

    assert second.returncode == 1 and "stale" in second.stderr, show(second)
    assert "Prompt 'demo-ticketing'" in second.stderr, "the refusal names what changed"
    assert dump_all(db, skip_tables=("ftctl_lock",)) == after_first, "a stale plan writes nothing"
    assert count(db, "ftctl_lock") == 0, "the refused apply released the lock"
    assert not duplicates(db)


def test_schema_creation_tolerates_a_concurrent_creator(demo_root: Path) -> None:
    """The interleaving of the new-store race, made certain: while this apply looks at which
    tables exist, another ftctl process starts creating the store (a shim starts one running the
    real `open_engine` at that instant, as the other apply would; schema transactions are
    `BEGIN IMMEDIATE`, so it waits for this one). Both must succeed."""
    shim = (
        "import subprocess, sys\n"
        "import reconciler.store.db as db\n"
        "real, fired = db.inspect, []\n"
        "def inspect(conn):\n"
        "    found = real(conn)\n"
        "    names = found.get_table_names\n"
        "    def late():\n"
        "        result = names()\n"
        "        if not fired:\n"
        "            other = 'import reconciler.store.db as db; db.open_engine(None, create=True).dispose()'\n"
        "            fired.append(subprocess.Popen([sys.executable, '-c', other]))  # the other apply\n"
        "        return result\n"
        "    found.get_table_names = late\n"
        "    return found\n"
        "db.inspect = inspect\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main([*sys.argv[1:]])\n"
        "finally:\n"
        "    assert fired and fired[0].wait(60) == 0, 'the other creator failed'\n"
    )
    proc = subprocess.run([sys.executable, "-c", shim, "apply", DEMO, "--auto-approve", "--create-store", "--offline"], cwd=demo_root,
                          env=cli_env({"PYTHONPATH": str(REPO)}), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, show(proc)
    db = demo_root / STORE
    assert {t: count(db, t) for t in CREATED} == CREATED
    assert query(db, "SELECT version_num FROM alembic_version") == [("52d1db1b40a8",)]
