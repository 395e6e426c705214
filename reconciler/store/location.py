"""Where the store is: a SQLite path or a SQLAlchemy URL, and the one error the store raises.

Imports nothing heavy, so commands that only read a SQLite store never load SQLAlchemy.
"""

from __future__ import annotations

import os

DEFAULT_DB = ".app/state.db"
BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """The store could not be opened, read or written."""


def resolve_location(location: str | None) -> str:
    """A path or URL; defaults to the Studio's own variable, then its default path."""
    return location or os.environ.get("FINE_TUNING_STUDIO_SQLITE_DB") or DEFAULT_DB


def store_url(location: str | None) -> str:
    """A SQLAlchemy URL for a path or URL."""
    resolved = resolve_location(location)
    return resolved if "://" in resolved else f"sqlite+pysqlite:///{resolved}"


def sqlite_path(location: str | None) -> str | None:
    """The file of a SQLite store, or None for another database."""
    resolved = resolve_location(location)
    if "://" not in resolved:
        return resolved
    scheme, _, rest = resolved.partition("://")
    return rest[1:] if scheme.startswith("sqlite") and rest.startswith("/") else None


def exists(location: str | None) -> bool:
    path = sqlite_path(location)
    return os.path.isfile(path) if path is not None else True
