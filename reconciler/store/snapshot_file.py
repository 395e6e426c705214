"""Snapshot files: the store written to, and read back from, the Studio's own database-export JSON.

`ftctl state pull` writes one: `{table: {"schema": "CREATE TABLE IF NOT EXISTS ...", "data": [row, ...]}}`
for every table of the store but SQLite's own (`sqlite_*`), ftctl's lease lock and apply journal
(which only an apply in progress needs): the Studio's tables, alembic's, and ftctl's records, meta,
applies and history. Values are exactly as stored (str, int, float, None). Tables come in name order,
rows in primary-key order, each row's keys in the table's column order (as the Studio's exporter
writes them): two pulls of an unchanged store are byte-identical. The file is written to a temporary
file beside the target and renamed over it, so a reader never sees half a snapshot.

The Studio's Database Import page (`DatabaseJsonConverter.import_from_json`) loads the file as it
is: it needs "schema" and "data" in every top-level entry and stops at any other shape. So where
the snapshot came from is kept in an entry of that same shape, `ftctl_snapshot` (rows `key`/`value`:
`format_version`, `serial`, and `store`, the URL of the store it was pulled from, password hidden).
The Studio's importer creates it like any `ftctl_*` table, which the Studio ignores, and a later
pull leaves such a table out and writes its own. There is no pull time in the file: it would make two
pulls of an unchanged store differ.

A secret in a row's text (a Studio-written config's token, a URL's password) is masked in the file
(`reconciler.secrets.redact_text`). So that a plan made from the file still applies while such a
row is unchanged in the store, `ftctl_snapshot_redacted` (rows `row`/`fingerprint`, only when some
row was masked) keeps the fingerprint each masked Studio row has in the store: a digest, never the
value, as the plan file's own record of the rows it read.

A `--store` that ends in `.json` (not a URL) is a snapshot file, read here, never written:
`read_snapshot_file` builds the same `Snapshot` (rows, managed records, serial, fingerprints, and
`source` = the live store's URL) as reading the live store at the moment of the pull, so a plan made
from the file applies to that store while nothing changed there. A Studio export without the
`ftctl_snapshot` entry reads too; its `source` is the file's own path, so no store accepts its plans.

Called by `store.read.read_snapshot` (every command that reads a store) and `engine.pull_state`.
SQLite stores are read with the standard library (`sqlite3`, one read transaction); other databases
through SQLAlchemy's DB-API connection, as `store.read` reads them, with the DDL of the tables ftctl
knows rendered for SQLite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.live import Snapshot
from reconciler.records import STUDIO_COLUMNS, comparable, digest
from reconciler.runtime import JobObservation
from reconciler.secrets import redact_text
from reconciler.store.location import (
    BUSY_TIMEOUT_MS,
    StoreError,
    describe,
    exists,
    resolve_location,
    sqlite_path,
    store_url,
)

FORMAT_VERSION = 1
META_TABLE = "ftctl_snapshot"
META_SCHEMA = "CREATE TABLE IF NOT EXISTS ftctl_snapshot (key VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (key))"
# What the backends said of the managed jobs at the pull: a plan against the snapshot shows them
# as they were then, instead of observing (or, where it cannot see them, relaunching) anything.
JOBS_TABLE = "ftctl_snapshot_jobs"
JOBS_SCHEMA = "CREATE TABLE IF NOT EXISTS ftctl_snapshot_jobs (job_name VARCHAR NOT NULL, observation TEXT NOT NULL, PRIMARY KEY (job_name))"
REDACTED_TABLE = "ftctl_snapshot_redacted"
REDACTED_SCHEMA = "CREATE TABLE IF NOT EXISTS ftctl_snapshot_redacted (row VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, PRIMARY KEY (row))"
LEFT_OUT = frozenset({"ftctl_lock", "ftctl_journal", META_TABLE, JOBS_TABLE, REDACTED_TABLE})
SUFFIX = ".json"
_CREATE = re.compile(r"\bCREATE\s+TABLE\b(?!\s+IF\s+NOT\s+EXISTS\b)\s*", re.IGNORECASE)  # as the Studio's exporter


@dataclass(frozen=True)
class Pulled:
    """What `pull_to_file` wrote."""

    path: str
    store: str
    serial: int
    tables: int
    rows: int


def is_snapshot_location(location: str | None) -> bool:
    """A `--store` naming a snapshot file: a path (not a URL) ending in `.json`."""
    resolved = resolve_location(location)
    return "://" not in resolved and resolved.lower().endswith(SUFFIX)


# -- pull ------------------------------------------------------------------------------------------


def pull(location: str | None) -> dict[str, dict[str, Any]]:
    """The store as a snapshot document (a plain dict, ready for `dumps`)."""
    if is_snapshot_location(location):  # a snapshot of a snapshot: the same document, checked
        return _load(resolve_location(location))
    if not exists(location):
        raise StoreError(f"no store at {resolve_location(location)}")
    path = sqlite_path(location)
    if path is not None:
        tables, url = _pull_sqlite(path), store_url(location)
    else:
        tables, url = _pull_other(location)
    tables = _masked(tables)
    serial = next((int(r["value"]) for r in tables.get("ftctl_meta", {}).get("data", ()) if r.get("key") == "serial"), 0)
    meta = {"format_version": str(FORMAT_VERSION), "serial": str(serial), "store": url}
    tables[META_TABLE] = {"schema": META_SCHEMA, "data": [{"key": k, "value": v} for k, v in sorted(meta.items())]}
    return {name: tables[name] for name in sorted(tables)}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def pull_to_file(location: str | None, path: str,
                 observe: Callable[[Snapshot], Mapping[str, JobObservation]] | None = None) -> Pulled:
    """Pull the store, add what `observe` says of its jobs (unless the source is a snapshot that
    already holds them), and write the snapshot to `path` atomically. The store is read once."""
    if not path.lower().endswith(SUFFIX):
        raise StoreError(f"{path}: a snapshot file's name ends in {SUFFIX} (that is how --store tells it from a database)")
    document = pull(location)
    if observe is not None and JOBS_TABLE not in document:
        jobs = observe(document_snapshot(document, path))
        rows = [{"job_name": name, "observation": json.dumps(obs.to_dict(), sort_keys=True)} for name, obs in sorted(jobs.items())]
        document[JOBS_TABLE] = {"schema": JOBS_SCHEMA, "data": rows}
        document = {name: document[name] for name in sorted(document)}
    write_atomically(path, dumps(document))
    meta = _meta(document)
    tables = [name for name in document if name not in (META_TABLE, JOBS_TABLE, REDACTED_TABLE)]
    return Pulled(path, meta.get("store", path), int(meta.get("serial") or 0), len(tables),
                  sum(len(document[name]["data"]) for name in tables))


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _pull_sqlite(path: str) -> dict[str, dict[str, Any]]:
    from reconciler.store.read import open_read_only

    conn = open_read_only(path)
    try:
        conn.execute("BEGIN")  # one read transaction: every table as of the same moment
        names = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()
        out = {}
        for name, sql in names:
            if name in LEFT_OUT:
                continue
            info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()  # (cid, name, type, notnull, default, pk)
            keys = [c[1] for c in sorted((c for c in info if c[5]), key=lambda c: c[5])]
            out[name] = {"schema": _CREATE.sub("CREATE TABLE IF NOT EXISTS ", sql),
                         "data": _table_rows(conn.cursor(), name, keys)}
        return out
    except sqlite3.Error as exc:
        raise StoreError(describe(exc, path, busy_s=BUSY_TIMEOUT_MS / 1000)) from exc
    finally:
        conn.close()


def _pull_other(location: str | None) -> tuple[dict[str, dict[str, Any]], str]:
    from reconciler.store.db import open_engine
    from reconciler.store.read import _tables

    engine = open_engine(location, create=False)
    url = engine.url.render_as_string(hide_password=True)
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        return {name: {"schema": _known_schema(name, cursor), "data": _table_rows(cursor, name, _known_keys(name))}
                for name in sorted(_tables(cursor)) if name not in LEFT_OUT}, url
    except StoreError:
        raise
    except Exception as exc:  # drivers' errors are many; the user needs one message
        raise StoreError(describe(exc, location, busy_s=BUSY_TIMEOUT_MS / 1000)) from exc
    finally:
        conn.close()
        engine.dispose()


def _declared(name: str) -> Any:
    """ftctl's SQLAlchemy declaration of a table (the Studio's, alembic's, ftctl's), or None."""
    from reconciler.store.schema import ALEMBIC_VERSION, STUDIO_TABLES, ftctl

    for found in (STUDIO_TABLES.get(name), ftctl.tables.get(name), ALEMBIC_VERSION if name == ALEMBIC_VERSION.name else None):
        if found is not None:
            return found
    return None


def _known_keys(name: str) -> Sequence[str]:
    table = _declared(name)
    return [c.name for c in table.primary_key.columns] if table is not None else []


def _known_schema(name: str, cursor: Any) -> str:
    """SQLite DDL for a table of another database: from ftctl's declarations, else untyped columns."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    table = _declared(name)
    if table is not None:
        ddl = str(CreateTable(table, if_not_exists=True).compile(dialect=sqlite_dialect.dialect()))
        return " ".join(ddl.split())
    cursor.execute(f"SELECT * FROM {name} WHERE 1 = 0")
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(d[0] for d in cursor.description)})"


def _table_rows(cursor: Any, name: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    cursor.execute(f'SELECT * FROM "{name}"')
    columns = [d[0] for d in cursor.description]
    rows = [{c: _value(name, c, v) for c, v in zip(columns, r)} for r in cursor.fetchall()]
    order = list(keys) or columns
    return sorted(rows, key=lambda row: [_sort_key(row.get(c)) for c in order])


def _value(table: str, column: str, value: Any) -> Any:
    if value is None or isinstance(value, str | float) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return int(value)
    raise StoreError(f"{table}.{column} holds a {type(value).__name__} value, which a snapshot (JSON) cannot hold")


def _masked(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The tables with every secret in their text masked (a secret a Studio row holds never reaches a
    snapshot), plus REDACTED_TABLE: the store's fingerprint of each Studio row that was masked."""
    out, fingerprints = {}, {}
    for name, entry in tables.items():
        rows = [{c: redact_text(v) if isinstance(v, str) else v for c, v in row.items()} for row in entry["data"]]
        if name in STUDIO_COLUMNS:
            fingerprints.update({f"{name}/{raw['id']}": digest(comparable(name, raw))
                                 for raw, row in zip(entry["data"], rows) if row != raw})
        out[name] = {**entry, "data": rows}
    if fingerprints:
        out[REDACTED_TABLE] = {"schema": REDACTED_SCHEMA,
                               "data": [{"row": k, "fingerprint": v} for k, v in sorted(fingerprints.items())]}
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    """Orders values of mixed types (SQLite allows them in one column): NULL, numbers, text."""
    if value is None:
        return (0, 0)
    return (1, value) if isinstance(value, int | float) else (2, str(value))


# -- read ------------------------------------------------------------------------------------------


def read_snapshot_file(path: str) -> Snapshot:
    """The `Snapshot` of the store the file was pulled from, as it was then."""
    return document_snapshot(_load(path), path)


def document_snapshot(document: dict[str, Any], path: str) -> Snapshot:
    """The `Snapshot` a snapshot document describes (its jobs too, when it holds them)."""
    from reconciler.store.read import build_snapshot

    meta = _meta(document)
    tables = {name: entry["data"] for name, entry in document.items() if name not in (META_TABLE, JOBS_TABLE, REDACTED_TABLE)}
    try:
        snapshot = build_snapshot(tables, source=meta.get("store") or path)
        if REDACTED_TABLE in document:
            rows = document[REDACTED_TABLE]["data"]
            snapshot = dataclasses.replace(snapshot, unredacted={str(r["row"]): str(r["fingerprint"]) for r in rows})
        if JOBS_TABLE in document:
            jobs = (JobObservation.from_dict(json.loads(r["observation"])) for r in document[JOBS_TABLE]["data"])
            snapshot = dataclasses.replace(snapshot, jobs={obs.job_name: obs for obs in jobs})
        return snapshot
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: a row of the snapshot is malformed: {type(exc).__name__}: {exc}") from exc


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise StoreError(f"no snapshot file at {path} (write one with `ftctl state pull -o {path}`)") from None
    except OSError as exc:
        raise StoreError(f"cannot read snapshot file {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: not a snapshot file (invalid JSON: {str(exc)[:200]})") from exc
    problem = _shape_problem(document)
    if problem:
        raise StoreError(f"{path}: not a snapshot file ({problem})")
    version = _meta(document).get("format_version", str(FORMAT_VERSION))
    if version != str(FORMAT_VERSION):
        raise StoreError(f"{path}: snapshot format_version {version} (this ftctl reads {FORMAT_VERSION})")
    return document


def _shape_problem(document: Any) -> str:
    """What keeps a document from being the Studio's export shape ('' when nothing)."""
    if not isinstance(document, dict):
        return "the top level is not an object of tables"
    for name, entry in document.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("schema"), str) or not isinstance(entry.get("data"), list):
            return f"table {name!r} needs a \"schema\" text and a \"data\" list"
        if not all(isinstance(row, dict) for row in entry["data"]):
            return f"table {name!r}: every row of \"data\" must be an object"
    return ""


def _meta(document: dict[str, Any]) -> dict[str, str]:
    rows = document.get(META_TABLE, {}).get("data", [])
    return {str(r.get("key")): str(r.get("value")) for r in rows}
