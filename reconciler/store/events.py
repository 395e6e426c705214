"""What ftctl did to its objects and when: `ftctl_objects.updated_at`, `ftctl_history` and `ftctl_applies`,
read for `ftctl get` (when each object last changed) and `ftctl describe` (one object's events).

Read-only, like `store.read`: a SQLite store is opened read-only with the standard library, another
database through SQLAlchemy, and a snapshot file (`*.json`) is read as a document (it holds ftctl's
records, history and applies). A store without ftctl's tables (a Studio's own) has no events. A
store that is not there is an error: inspection never creates one. Values only: which columns a
change touched, never the values before or after (they may hold what a Studio row wrote).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.records import Row
from reconciler.store.location import StoreError, exists, resolve_location, sqlite_path, translated


@dataclass(frozen=True)
class Event:
    """One row ftctl wrote for an object, with the apply that wrote it."""

    at: float
    action: str  # create | update | delete | ... as ftctl_history records it
    table: str
    row_id: str
    serial: int
    apply_id: str
    actor: str
    commit_sha: str
    changed: tuple[str, ...]  # the columns whose values differ between the row before and after


@dataclass(frozen=True)
class Activity:
    updated: Mapping[tuple[str, str], float]  # (kind, name) -> when ftctl last changed its record
    events: tuple[Event, ...]  # of the object asked for, oldest first


def read_activity(location: str | None, *, kind: str = "", name: str = "") -> Activity:
    """When each managed object last changed, and the events of `kind`/`name` (none when not given)."""
    from reconciler.store.snapshot_file import is_snapshot_location, pull

    tables: dict[str, list[Row]]
    if is_snapshot_location(location):
        document = pull(location)
        tables = {t: document[t]["data"] for t in ("ftctl_objects", "ftctl_history", "ftctl_applies") if t in document}
        tables["ftctl_history"] = [r for r in tables.get("ftctl_history", ()) if (r.get("kind"), r.get("name")) == (kind, name)]
    elif not exists(location):
        raise StoreError(f"no store at {resolve_location(location)}")
    else:
        path = sqlite_path(location)
        with translated(location):
            tables = _read_sqlite(path, kind, name) if path is not None else _read_other(location, kind, name)
    return activity_of(tables)


def activity_of(tables: Mapping[str, Iterable[Row]]) -> Activity:
    applies = {str(r["apply_id"]): r for r in tables.get("ftctl_applies", ())}
    updated = {(str(r["kind"]), str(r["name"])): float(r["updated_at"] or 0) for r in tables.get("ftctl_objects", ())}
    events = [_event(row, applies.get(str(row["apply_id"]), {})) for row in tables.get("ftctl_history", ())]
    return Activity(updated, tuple(sorted(events, key=lambda e: (e.at, e.serial))))


def _event(row: Row, applied: Row) -> Event:
    before, after = _parsed(row.get("before")), _parsed(row.get("after"))
    changed = tuple(sorted(c for c in {*before, *after} if before.get(c) != after.get(c) and c != "id"))
    return Event(float(row["at"]), str(row["action"]), str(row["store_table"]), str(row["row_id"]), int(row["serial"]),
                 str(row["apply_id"]), str(applied.get("actor") or ""), str(applied.get("commit_sha") or ""), changed)


def _parsed(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _read_sqlite(path: str, kind: str, name: str) -> dict[str, list[Row]]:
    from reconciler.store.read import open_read_only

    conn = open_read_only(path)
    try:
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        queries = {"ftctl_objects": ("SELECT kind, name, updated_at FROM ftctl_objects", ()),
                   "ftctl_history": ("SELECT * FROM ftctl_history WHERE kind = ? AND name = ?", (kind, name)),
                   "ftctl_applies": ("SELECT apply_id, actor, commit_sha FROM ftctl_applies", ())}
        out = {}
        for table, (sql, params) in queries.items():
            if table in present:
                cursor = conn.execute(sql, params)
                keys = [d[0] for d in cursor.description]
                out[table] = [dict(zip(keys, r)) for r in cursor.fetchall()]
        return out
    finally:
        conn.close()


def _read_other(location: str | None, kind: str, name: str) -> dict[str, list[Row]]:
    from sqlalchemy import inspect, select

    from reconciler.store.db import open_engine
    from reconciler.store.schema import APPLIES, HISTORY, OBJECTS

    engine = open_engine(location, create=False)
    try:
        statements = {"ftctl_objects": select(OBJECTS.c.kind, OBJECTS.c.name, OBJECTS.c.updated_at),
                      "ftctl_history": select(HISTORY).where(HISTORY.c.kind == kind, HISTORY.c.name == name),
                      "ftctl_applies": select(APPLIES.c.apply_id, APPLIES.c.actor, APPLIES.c.commit_sha)}
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {t: [dict(r._mapping) for r in conn.execute(s)] for t, s in statements.items() if t in present}
    finally:
        engine.dispose()
