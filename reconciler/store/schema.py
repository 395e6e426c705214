"""The store's tables: the Studio's seven, exactly as its ORM declares them, and ftctl's own.

The Studio's tables (`ft/db/model.py`) are never altered: no column is dropped, renamed or added.
ftctl keeps its bookkeeping in tables prefixed `ftctl_`, which the Studio ignores. Used by the
reader and the writer in this package; nothing outside `store/` sees SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Double, Float, Integer, MetaData, String, Table, Text

from reconciler.records import STUDIO_COLUMNS

ALEMBIC_HEAD = "52d1db1b40a8"

studio = MetaData()
_TYPES = {"str": String, "text": Text, "int": Integer, "float": Double}


def _studio_table(name: str) -> Table:
    columns: list[Column[Any]] = [Column(col, _TYPES[kind]) for col, kind in STUDIO_COLUMNS[name] if col != "id"]
    return Table(name, studio, Column("id", String, primary_key=True, nullable=False), *columns)


STUDIO_TABLES: dict[str, Table] = {name: _studio_table(name) for name in STUDIO_COLUMNS}
ALEMBIC_VERSION = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True, nullable=False))

ftctl = MetaData()


def _log_table(name: str, *columns: Column[Any]) -> Table:
    """One of ftctl's append-only logs: `seq` numbers its rows in the order they were written."""
    return Table(name, ftctl, Column("seq", Integer, primary_key=True, autoincrement=True), *columns)


OBJECTS = Table(
    "ftctl_objects",
    ftctl,
    Column("kind", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("store_table", String, nullable=False),
    Column("store_id", String, nullable=False),
    Column("row_ids", Text, nullable=False),  # JSON list: every Studio row this object owns
    Column("spec_fingerprint", String, nullable=False),
    Column("row_fingerprint", String, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("protected", Integer, nullable=False, default=0),
    Column("origin", String, nullable=False),  # created | shared | imported
    Column("serial", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("spec", Text),  # JSON: the resolved spec of a kind without Studio rows (ModelExport), for diffs
    Column("backend", String),  # where the current generation's jobs run: local | cml (NULL: local)
)
META = Table(
    "ftctl_meta",
    ftctl,
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)
LOCK = Table(
    "ftctl_lock",
    ftctl,
    Column("name", String, primary_key=True),
    Column("owner", String, nullable=False),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("token", Integer),  # the holder's fencing token (store.write); NULL in stores of older versions
)
APPLIES = Table(
    "ftctl_applies",
    ftctl,
    Column("apply_id", String, primary_key=True),
    Column("serial", Integer, nullable=False),
    Column("plan_digest", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("commit_sha", String, nullable=False, default=""),
    Column("state", String, nullable=False),  # running | done | failed
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
)
JOURNAL = _log_table(
    "ftctl_journal",
    Column("apply_id", String, nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("intent", Text, nullable=False),  # JSON: the addresses and row ids the step will write
    Column("state", String, nullable=False),  # intent | done | abandoned
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
)
HISTORY = _log_table(
    "ftctl_history",
    Column("apply_id", String, nullable=False, index=True),
    Column("serial", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String, nullable=False),
    Column("name", String, nullable=False),
    Column("action", String, nullable=False),
    Column("store_table", String, nullable=False),
    Column("row_id", String, nullable=False),
    Column("before", Text),  # JSON row, NULL when created
    Column("after", Text),  # JSON row, NULL when deleted
)
LINEAGE = _log_table(
    "ftctl_lineage",
    Column("kind", String, nullable=False, index=True),
    Column("name", String, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("job_name", String, nullable=False, index=True),  # the job that ran (a reuse: the earlier job it took)
    Column("job_kind", String, nullable=False),  # train | evaluate | export
    Column("row", String, nullable=False),  # `table/id` of the Studio row that records the job
    Column("input_digest", String, nullable=False),
    Column("reuse_key", String, nullable=False),
    Column("commit_sha", String, nullable=False),
    Column("dataset_digest", String, nullable=False),
    Column("base_revision", String, nullable=False),
    Column("config_digests", Text, nullable=False),  # JSON object: config key -> sha256
    Column("ftctl_version", String, nullable=False),
    Column("estimate", Text),  # JSON: what the plan estimated at launch (GPU-hours, cost), NULL when it did not
    Column("at", Float, nullable=False),
    Column("reused_from", String, nullable=False, default=""),  # '' ran its own job; else the job it reused
)
