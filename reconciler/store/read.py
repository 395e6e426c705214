"""Reading the store into a `Snapshot`: every row of the Studio's tables and ftctl's records, once.

Read-only: opens, selects, closes. Rows are read through the DB-API, so a SQLite store is read with
the standard library alone (plans stay fast: SQLAlchemy is not even imported); other databases
are opened through SQLAlchemy and read the same way. A store that does not exist yet reads as
empty (apply creates it); a Studio store without ftctl's tables reads with nothing managed.
A location ending in `.json` is a snapshot file (`store.snapshot_file`), read to the same `Snapshot`
as the store it was pulled from: both go through `build_snapshot`, which orders rows by id and
records by `Kind/name`, so a snapshot does not depend on the order a database returns rows in.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.lineage import LineageRecord
from reconciler.live import ManagedRecord, Snapshot
from reconciler.records import STUDIO_COLUMNS, Row
from reconciler.store.location import (
    BUSY_TIMEOUT_MS,
    StoreError,
    describe,
    exists,
    folder_read_only,
    resolve_location,
    sqlite_path,
    store_url,
    translated,
)


def read_snapshot(location: str | None, *, missing_ok: bool = False) -> Snapshot:
    from reconciler.store.snapshot_file import is_snapshot_location, read_snapshot_file

    if is_snapshot_location(location):  # read-only, and never missing_ok: a snapshot that is not there is an error
        return read_snapshot_file(resolve_location(location))
    if not exists(location):
        if missing_ok:
            return Snapshot(source=store_url(location))
        raise StoreError(f"no store at {resolve_location(location)}")
    path = sqlite_path(location)
    if path is None:
        from reconciler.store.db import open_engine

        with translated(location):
            engine = open_engine(location, create=False)
            try:
                return snapshot_of(engine.raw_connection(), source=engine.url.render_as_string(hide_password=True))
            finally:
                engine.dispose()
    return snapshot_of(open_read_only(path), source=store_url(location))


def open_read_only(path: str) -> sqlite3.Connection:
    """A SQLite store opened read-only with the standard library (no SQLAlchemy on the read path).

    `mode=ro`; but in a read-only folder without the store's -shm file (which a WAL reader needs
    and cannot create there) as `immutable=1`: no process can write a store whose folder is
    read-only (a writer must create its -wal or journal there), so nothing changes under the read.
    A non-empty -wal there holds commits not yet in the file, which an immutable read would miss:
    that store is refused."""
    mode = "mode=ro"
    if folder_read_only(path) and not os.path.exists(f"{path}-shm"):
        if os.path.exists(f"{path}-wal") and os.path.getsize(f"{path}-wal"):
            raise StoreError(f"store {path} has commits in {path}-wal that are not in the file yet, and its folder is "
                             "read-only, so SQLite cannot read them: make the folder writable, or read a copy of both files")
        mode = "immutable=1"
    with translated(path):
        return sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)


def snapshot_of(conn: Any, *, source: str) -> Snapshot:
    """Read every row through a DB-API connection, then close it."""
    try:
        cursor = conn.cursor()
        present = _tables(cursor)
        tables = {table: _rows(cursor, f"SELECT * FROM {table}") for table in (*STUDIO_COLUMNS, "ftctl_objects") if table in present}
        if "ftctl_lineage" in present:
            tables["ftctl_lineage"] = _rows(cursor, "SELECT * FROM ftctl_lineage ORDER BY seq")
        if "ftctl_meta" in present:
            tables["ftctl_meta"] = _rows(cursor, "SELECT key, value FROM ftctl_meta WHERE key IN ('serial', 'store_id')")
        snapshot = build_snapshot(tables, source=source)
    except Exception as exc:  # drivers' errors are many, and a damaged row is one too: one message
        raise StoreError(describe(exc, source, busy_s=BUSY_TIMEOUT_MS / 1000)) from exc
    finally:
        conn.close()
    return snapshot


def build_snapshot(tables: Mapping[str, Iterable[Row]], *, source: str) -> Snapshot:
    """A `Snapshot` from each table's rows as stored, however they were read (a database, a snapshot
    file): the Studio's rows by id, ftctl's records (`ftctl_objects`) by `Kind/name`, the serial
    and the store's identity (`ftctl_meta`); both in sorted order. Other tables are ignored."""
    rows = {table: {str(row["id"]): row for row in sorted(tables[table], key=lambda r: str(r["id"]))}
            for table in STUDIO_COLUMNS if table in tables}
    records = sorted((managed_record(row) for row in tables.get("ftctl_objects", ())), key=lambda r: (r.kind, r.name))
    meta = {str(row.get("key")): row.get("value") for row in tables.get("ftctl_meta", ())}
    return Snapshot(rows, {(r.kind, r.name): r for r in records}, int(meta.get("serial") or 0), source=source,
                    store_id=str(meta.get("store_id") or ""),
                    lineage=tuple(lineage_record(row) for row in tables.get("ftctl_lineage", ())))


def lineage_record(row: Mapping[str, Any]) -> LineageRecord:
    """One `ftctl_lineage` row."""
    estimate = row.get("estimate")
    return LineageRecord(
        str(row["kind"]), str(row["name"]), int(row["generation"]), str(row["job_name"]), str(row["job_kind"] or ""),
        str(row["row"] or ""), str(row["input_digest"] or ""), str(row["reuse_key"] or ""), str(row["commit_sha"] or ""),
        str(row["dataset_digest"] or ""), str(row["base_revision"] or ""), json.loads(row["config_digests"] or "{}"),
        str(row["ftctl_version"] or ""), json.loads(estimate) if estimate else {}, float(row["at"] or 0.0),
        str(row.get("reused_from") or ""))


def managed_record(row: Mapping[str, Any]) -> ManagedRecord:
    """One `ftctl_objects` row; columns later ftctl versions added may be absent (NULL)."""
    spec = row.get("spec")
    return ManagedRecord(
        row["kind"], row["name"], row["store_table"], row["store_id"], tuple(json.loads(row["row_ids"])), row["spec_fingerprint"],
        row["row_fingerprint"], int(row["generation"]), bool(row["protected"]), row["origin"], int(row["serial"]),
        json.loads(spec) if spec else None, row.get("backend") or "",
    )


def _rows(cursor: Any, sql: str) -> list[Row]:
    cursor.execute(sql)
    keys = [d[0] for d in cursor.description]
    return [dict(zip(keys, r)) for r in cursor.fetchall()]


def _tables(cursor: Any) -> set[str]:
    try:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    except Exception:  # not SQLite: the standard catalogue
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    return {str(r[0]) for r in cursor.fetchall()}
