"""Reading the store into a `Snapshot`: every row of the Studio's tables and ftctl's records, once.

Read-only: opens, selects, closes. A store that does not exist yet reads as empty (apply creates
it); a Studio store without ftctl's tables reads with nothing managed.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, inspect, text

from reconciler.live import ManagedRecord, Snapshot
from reconciler.records import STUDIO_COLUMNS
from reconciler.store.db import StoreError, exists, open_engine, resolve_location, store_url


def read_snapshot(location: str | None, *, missing_ok: bool = False) -> Snapshot:
    if not exists(location):
        if missing_ok:
            return Snapshot(source=store_url(location))
        raise StoreError(f"no store at {resolve_location(location)}")
    engine = open_engine(location, create=False)
    try:
        return snapshot_from(engine)
    finally:
        engine.dispose()


def snapshot_from(engine: Engine) -> Snapshot:
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            rows = {}
            for table in STUDIO_COLUMNS:
                if table in present:
                    result = conn.execute(text(f"SELECT * FROM {table}"))
                    keys = list(result.keys())
                    rows[table] = {str(row["id"]): row for row in (dict(zip(keys, r)) for r in result)}
            managed = _managed(conn) if "ftctl_objects" in present else {}
            serial = _serial(conn) if "ftctl_meta" in present else 0
    except Exception as exc:  # SQLAlchemy's errors are many; the user needs one message
        raise StoreError(f"cannot read store {url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
    return Snapshot(rows, managed, serial, source=url)


def _managed(conn) -> dict[tuple[str, str], ManagedRecord]:  # type: ignore[no-untyped-def]
    out = {}
    query = ("SELECT kind, name, store_table, store_id, row_ids, spec_fingerprint, row_fingerprint, generation, "
             "protected, origin, serial FROM ftctl_objects")
    for row in conn.execute(text(query)):
        record = ManagedRecord(
            row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], int(row[7]), bool(row[8]), row[9], int(row[10])
        )
        out[(record.kind, record.name)] = record
    return out


def _serial(conn) -> int:  # type: ignore[no-untyped-def]
    value = conn.execute(text("SELECT value FROM ftctl_meta WHERE key = 'serial'")).scalar()
    return int(value) if value is not None else 0
