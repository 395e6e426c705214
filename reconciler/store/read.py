"""Reading the store into a `Snapshot`: every row of the Studio's tables and ftctl's records, once.

Read-only: opens, selects, closes. Rows are read through the DB-API, so a SQLite store is read with
the standard library alone (plans stay fast: SQLAlchemy is not even imported); other databases
are opened through SQLAlchemy and read the same way. A store that does not exist yet reads as
empty (apply creates it); a Studio store without ftctl's tables reads with nothing managed.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from reconciler.live import ManagedRecord, Snapshot
from reconciler.records import STUDIO_COLUMNS, Row
from reconciler.store.location import (
    BUSY_TIMEOUT_MS,
    StoreError,
    exists,
    resolve_location,
    sqlite_path,
    store_url,
)

MANAGED_COLUMNS = ("kind", "name", "store_table", "store_id", "row_ids", "spec_fingerprint", "row_fingerprint", "generation",
                   "protected", "origin", "serial", "spec", "backend")
# Columns later ftctl versions added (read as NULL from a store an older ftctl wrote).
LATER_COLUMNS = frozenset({"spec", "backend"})


def read_snapshot(location: str | None, *, missing_ok: bool = False) -> Snapshot:
    if not exists(location):
        if missing_ok:
            return Snapshot(source=store_url(location))
        raise StoreError(f"no store at {resolve_location(location)}")
    path = sqlite_path(location)
    if path is None:
        from reconciler.store.db import open_engine

        engine = open_engine(location, create=False)
        try:
            return snapshot_of(engine.raw_connection(), source=engine.url.render_as_string(hide_password=True))
        finally:
            engine.dispose()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    return snapshot_of(conn, source=store_url(location))


def snapshot_of(conn: Any, *, source: str) -> Snapshot:
    """Read every row through a DB-API connection, then close it."""
    try:
        cursor = conn.cursor()
        present = _tables(cursor)
        rows: dict[str, dict[str, Row]] = {}
        for table in STUDIO_COLUMNS:
            if table in present:
                cursor.execute(f"SELECT * FROM {table}")
                keys = [d[0] for d in cursor.description]
                rows[table] = {str(row["id"]): row for row in (dict(zip(keys, r)) for r in cursor.fetchall())}
        managed = _managed(cursor) if "ftctl_objects" in present else {}
        serial = _serial(cursor) if "ftctl_meta" in present else 0
    except Exception as exc:  # drivers' errors are many; the user needs one message
        raise StoreError(f"cannot read store {source}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
    finally:
        conn.close()
    return Snapshot(rows, managed, serial, source=source)


def _tables(cursor: Any) -> set[str]:
    try:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    except Exception:  # not SQLite: the standard catalogue
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    return {str(r[0]) for r in cursor.fetchall()}


def _managed(cursor: Any) -> dict[tuple[str, str], ManagedRecord]:
    cursor.execute("SELECT * FROM ftctl_objects LIMIT 0")
    present = {d[0] for d in cursor.description}
    columns = ", ".join(c if c in present or c not in LATER_COLUMNS else "NULL" for c in MANAGED_COLUMNS)
    cursor.execute(f"SELECT {columns} FROM ftctl_objects")
    out = {}
    for row in cursor.fetchall():
        record = ManagedRecord(
            row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], int(row[7]), bool(row[8]), row[9], int(row[10]),
            json.loads(row[11]) if row[11] else None, row[12] or "",
        )
        out[(record.kind, record.name)] = record
    return out


def _serial(cursor: Any) -> int:
    cursor.execute("SELECT value FROM ftctl_meta WHERE key = 'serial'")
    found = cursor.fetchone()
    return int(found[0]) if found is not None else 0
