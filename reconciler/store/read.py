"""Reading the Studio's store into a `Snapshot`: every row of the resource tables, read once.

Accepts a SQLite path or any SQLAlchemy URL. Read-only: opens, selects, closes.
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, inspect, text

from reconciler.live import LiveObject, Snapshot

DEFAULT_DB = ".app/state.db"
TABLES: dict[str, tuple[str, str]] = {
    # table: (kind, SQL selecting id, name, type, model_id, dataset_id, features)
    "datasets": ("Dataset", "id, name, type, '' , '', features"),
    "models": ("Model", "id, name, type, '', '', ''"),
    "prompts": ("Prompt", "id, name, type, '', dataset_id, ''"),
    "adapters": ("Adapter", "id, name, type, model_id, '', ''"),
    "configs": ("Config", "id, description, type, '', '', ''"),
    "fine_tuning_jobs": ("FineTuningJob", "id, adapter_name, framework_type, base_model_id, dataset_id, ''"),
    "evaluation_jobs": ("EvaluationJob", "id, id, type, base_model_id, dataset_id, ''"),
}


class StoreError(Exception):
    """The store could not be opened or read."""


def resolve_location(location: str | None) -> str:
    """A path or URL; defaults to the Studio's own variable, then its default path."""
    return location or os.environ.get("FINE_TUNING_STUDIO_SQLITE_DB") or DEFAULT_DB


def store_url(location: str | None) -> str:
    """A SQLAlchemy URL for a path or URL."""
    resolved = resolve_location(location)
    return resolved if "://" in resolved else f"sqlite+pysqlite:///{resolved}"


def read_snapshot(location: str | None) -> Snapshot:
    resolved = resolve_location(location)
    if "://" not in resolved and not os.path.isfile(resolved):
        raise StoreError(f"no store at {resolved}")
    url = store_url(resolved)
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            objects = [
                LiveObject(kind, *(str(v) if v is not None else "" for v in row))
                for table, (kind, columns) in TABLES.items()
                if table in present
                for row in conn.execute(text(f"SELECT {columns} FROM {table}"))
            ]
        engine.dispose()
    except Exception as exc:  # SQLAlchemy's errors are many; the user needs one message
        raise StoreError(f"cannot read store {url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
    return Snapshot(tuple(objects), source=url)
