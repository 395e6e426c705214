"""Opening the store: a SQLite path or any SQLAlchemy URL, with the settings a shared file needs.

SQLite runs in WAL mode with a busy timeout, so the Studio's own server keeps reading and writing
the same file while ftctl works; every transaction is `BEGIN IMMEDIATE` (the fenced writes of
`store.write` check the lease and write under one lock). A new store gets the Studio's seven tables and its alembic head
stamped; an existing one is used as it is (missing ftctl_* tables are added, Studio tables are
never altered).
"""

from __future__ import annotations

import os
import sqlite3
import time

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.schema import CreateIndex, CreateTable

from reconciler.store.location import BUSY_TIMEOUT_MS, StoreError, exists, resolve_location, shown, store_url
from reconciler.store.schema import ALEMBIC_HEAD, ALEMBIC_VERSION, STUDIO_TABLES, ftctl


def open_engine(location: str | None, *, create: bool, busy_s: float = BUSY_TIMEOUT_MS / 1000) -> Engine:
    """An engine on the store; with `create`, the file's folder is made and the schema ensured
    (refused first when a Studio table has a column ftctl's inserts could not fill). SQLite waits
    up to busy_s for another process's transaction."""
    resolved = resolve_location(location)
    if "://" not in resolved:
        if not exists(resolved) and not create:
            raise StoreError(f"no store at {resolved}")
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(resolved)), exist_ok=True)
    url = store_url(resolved)
    engine = create_engine(url, connect_args={"timeout": busy_s} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):
        event.listen(engine, "connect", lambda dbapi_connection, _record: _sqlite_pragmas(dbapi_connection, busy_s))
        event.listen(engine, "begin", _begin_immediate)
    if create:
        check_studio_columns(engine, location)
        ensure_schema(engine)
    return engine


def check_studio_columns(engine: Engine, location: str | None) -> None:
    """Refuse a store whose Studio tables come from a newer Studio: a column ftctl does not know,
    NOT NULL and without a default, would make every insert into that table fail (after earlier
    steps committed). Read before anything is written."""
    with engine.connect() as conn:
        found = inspect(conn)
        present = set(found.get_table_names())
        for name, table in STUDIO_TABLES.items():
            if name not in present:
                continue
            for column in found.get_columns(name):
                if column["name"] not in table.c and not column["nullable"] and column.get("default") is None:
                    raise StoreError(
                        f"store {shown(location)} has a newer Studio schema: {name}.{column['name']} is NOT NULL without a "
                        "default, and this ftctl does not know it (its inserts would fail); upgrade ftctl before applying")


def _sqlite_pragmas(dbapi_connection, busy_s: float) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.isolation_level = None  # transactions begin where SQLAlchemy begins them (_begin_immediate)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    for attempt in range(50):  # switching to WAL needs a moment alone with the file; WAL then persists
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.05)
    cursor.close()


def _begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
    """Every transaction takes SQLite's write lock at its start: pysqlite's default (deferred, begun
    at the first write) would let a transaction read, then find the file changed under it in WAL
    mode, and a fenced write's check and its writes must see one state no other writer can change."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def ensure_schema(engine: Engine) -> None:
    """Create what is missing: all Studio tables (+ alembic stamp) for a new store; ftctl's tables.

    Every statement is `IF NOT EXISTS` / `ON CONFLICT DO NOTHING`, so two applies that meet a new
    store at once both succeed, and an existing store's tables are never touched.
    """
    with engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        new_store = not present.intersection(STUDIO_TABLES)
        for table in STUDIO_TABLES.values():
            conn.execute(CreateTable(table, if_not_exists=True))
        if new_store:
            conn.execute(CreateTable(ALEMBIC_VERSION, if_not_exists=True))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v) ON CONFLICT DO NOTHING"), {"v": ALEMBIC_HEAD})
        for table in ftctl.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
            _add_missing_columns(conn, table)


def _add_missing_columns(conn, table) -> None:  # type: ignore[no-untyped-def]
    """ftctl's own tables grow columns over versions (nullable ones only); Studio tables never change."""
    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present and column.nullable:
            try:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(conn.dialect)}"))
            except Exception as exc:  # another apply added it a moment ago
                if "duplicate column" not in str(exc).lower() and "already exists" not in str(exc).lower():
                    raise
