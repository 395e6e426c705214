"""Bad stores through the real CLI: every command gives one clear line naming the store (never an
internal error or a traceback) and leaves the store's bytes as they were.

A corpus of stores ftctl cannot use at all (a folder named like the store, a file of garbage
bytes, a truncated database) runs through every command that opens a store. Stores ftctl can read
but not write (a read-only file; a WAL store in a read-only folder) still plan, while the commands
that write refuse before writing; a store another process holds locked makes apply wait
--lock-timeout, then say so; a Studio table from a newer Studio (a NOT NULL column without a
default) is refused before anything is written. Each CLI run is a subprocess with a memory cap
and a timeout.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, FTCTL, apply, cli_env, make_demo, show

MEMORY_CAP = 2 << 30  # bytes of address space each CLI run may take
TIMEOUT_S = 120
DATASET = "Dataset/demo-tickets"
COMMANDS = {  # command -> its arguments (the store is added after --store)
    "validate": ["validate", DEMO, "--offline"],
    "plan": ["plan", DEMO, "--offline"],
    "status": ["status", DEMO, "--offline"],
    "drift": ["drift", DEMO, "--offline"],
    "apply": ["apply", DEMO, "--offline", "--auto-approve", "--lock-timeout", "1"],
    "protect": ["protect", DATASET],
    "unprotect": ["unprotect", DATASET],
    "import": ["import", "--out", "imported", "--auto-approve", "--lock-timeout", "1"],
    "state pull": ["state", "pull", "-o", "pulled.json"],
}
READS = ("validate", "plan", "status", "drift", "state pull")
WRITES = ("apply", "protect", "import")


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run(root: Path, command: str, store: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FTCTL, *COMMANDS[command], "--store", store], cwd=root, env=cli_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S, preexec_fn=_capped, check=False)


def fingerprint(path: Path) -> str:
    """The store's bytes (a folder: its listing), with its -wal, whose commits are the store's too."""
    if path.is_dir():
        return repr(sorted(os.listdir(path)))
    parts = [p.read_bytes() if p.exists() else b"" for p in (path, Path(f"{path}-wal"))]
    return "".join(hashlib.sha256(part).hexdigest() for part in parts)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], store: str, *, says: str = "") -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 1, show(proc)
    assert len(err.splitlines()) == 1 and err.startswith("ftctl: error: "), show(proc)
    assert store in err and says in err, show(proc)
    assert "internal error" not in err and "Traceback" not in err, show(proc)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the demo's configs applied: applying the whole demo onto it has work to do."""
    root = make_demo(tmp_path_factory.mktemp("base") / "project")
    done = apply(root, f"{DEMO}/configs.yaml", store="base.db")
    assert done.returncode == 0, show(done)
    return root / "base.db"


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _truncated(path: Path, base: Path) -> None:
    path.write_bytes(base.read_bytes()[:9000])


@pytest.mark.parametrize("kind", ["folder", "garbage", "truncated"])
def test_an_unusable_store_is_one_clear_line_for_every_command(tmp_path: Path, base_store: Path, kind: str) -> None:
    root = make_demo(tmp_path / "project")
    store = root / "stores" / "state.db"
    store.parent.mkdir()
    if kind == "folder":
        store.mkdir()
    elif kind == "garbage":
        _garbage(store)
    else:
        _truncated(store, base_store)
    before = fingerprint(store)
    says = {"folder": "is a folder", "garbage": "is not a SQLite database", "truncated": "is damaged"}[kind]

    with ThreadPoolExecutor(4) as pool:
        runs = dict(zip(COMMANDS, pool.map(lambda command: run(root, command, "stores/state.db"), COMMANDS)))

    for proc in runs.values():
        assert_one_clear_line(proc, "stores/state.db", says=says)
    assert fingerprint(store) == before
    assert not (root / "imported").exists() and not (root / "pulled.json").exists()


@pytest.fixture(params=["read-only-file", "read-only-folder-wal"])
def read_only_store(request: pytest.FixtureRequest, tmp_path: Path, base_store: Path) -> Iterator[tuple[Path, str]]:
    """(project root, store path): the base store, chmod 444, or in WAL mode in a folder chmod 555."""
    root = make_demo(tmp_path / "project")
    folder = root / "stores"
    folder.mkdir()
    store = folder / "state.db"
    shutil.copyfile(base_store, store)
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    locked = store if request.param == "read-only-file" else folder
    locked.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if locked.is_dir() else 0))
    yield root, "stores/state.db"
    locked.chmod(0o755 if locked.is_dir() else 0o644)


def test_a_read_only_store_is_read_and_never_written(read_only_store: tuple[Path, str]) -> None:
    root, store = read_only_store
    before = fingerprint(root / store)

    with ThreadPoolExecutor(4) as pool:
        runs = dict(zip(READS + WRITES, pool.map(lambda command: run(root, command, store), READS + WRITES)))

    for command in READS:
        assert runs[command].returncode in (0, 2), f"{command}: {show(runs[command])}"
        assert "error" not in runs[command].stderr, f"{command}: {show(runs[command])}"
    assert "to create" in runs["plan"].stdout, show(runs["plan"])
    for command in WRITES:
        assert_one_clear_line(runs[command], store, says="is read-only")
    assert fingerprint(root / store) == before
    assert not (root / "imported").exists(), "import refuses before writing any manifest"


def test_a_store_locked_by_another_process_is_named_after_lock_timeout(tmp_path: Path, base_store: Path) -> None:
    root = make_demo(tmp_path / "project")
    store = root / "state.db"
    shutil.copyfile(base_store, store)
    before = fingerprint(store)
    hold = ("import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN EXCLUSIVE')\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = run(root, "apply", "state.db")
        planned = run(root, "plan", "state.db")
    finally:
        holder.communicate(timeout=TIMEOUT_S)

    assert_one_clear_line(refused, "state.db", says="is locked by another process")
    assert "not an ftctl apply" in refused.stderr and "--lock-timeout" in refused.stderr
    assert planned.returncode == 0 and "to create" in planned.stdout, "a WAL store stays readable while locked"
    assert fingerprint(store) == before


def test_a_newer_studio_schema_is_refused_before_anything_is_written(tmp_path: Path, base_store: Path) -> None:
    root = make_demo(tmp_path / "project")
    store = root / "state.db"
    shutil.copyfile(base_store, store)
    conn = sqlite3.connect(store)
    create = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'datasets'").fetchone()[0]
    cols = ", ".join(r[1] for r in conn.execute("PRAGMA table_info(datasets)"))
    with conn:  # what a newer Studio's migration would leave: a required column ftctl does not know
        conn.executescript(f"ALTER TABLE datasets RENAME TO datasets_old; "
                           f"{create.replace('(', '(owner_team VARCHAR NOT NULL, ', 1)}; "
                           f"INSERT INTO datasets ({cols}, owner_team) SELECT {cols}, 'x' FROM datasets_old; DROP TABLE datasets_old;")
    conn.close()
    before = fingerprint(store)

    for command in ("apply", "import"):
        assert_one_clear_line(run(root, command, "state.db"), "state.db", says="datasets.owner_team is NOT NULL")
    assert fingerprint(store) == before
    assert not (root / "imported").exists()


def test_a_store_whose_folder_does_not_exist(tmp_path: Path) -> None:
    """Reading it reads an empty store (apply makes the folder and the store, as for .app/); the
    commands that need one say there is none, and protect creates nothing."""
    root = make_demo(tmp_path / "project")
    store = "missing/state.db"
    runs = {command: run(root, command, store) for command in ("validate", "protect", "unprotect", "state pull", "plan")}

    for command in ("validate", "protect", "unprotect", "state pull"):
        assert_one_clear_line(runs[command], store, says="no store at")
    assert runs["plan"].returncode == 0 and "to create" in runs["plan"].stdout, show(runs["plan"])
    assert not (root / "missing").exists()
