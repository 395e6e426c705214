"""Where the store is: a SQLite path or `sqlite:///` URL, and the one error the store raises.

ftctl stores are SQLite files: `require_sqlite` refuses any other URL (postgresql://, mysql://...)
in one line before anything is read or written.

`translated` is the store layer's boundary for the drivers' errors: every sqlite3 and SQLAlchemy
error raised while ftctl opens, reads or writes a store leaves as one `StoreError` line that names
the store and says what to do (a folder, not a database, damaged, read-only, locked by another
program, a missing folder). Imports nothing heavy, so commands that only read a SQLite store never
load SQLAlchemy.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_DB = ".app/state.db"
BUSY_TIMEOUT_MS = 30_000


class StoreError(Exception):
    """The store could not be opened, read or written."""


def resolve_location(location: str | None) -> str:
    """A path or URL; defaults to the Studio's own variable, then its default path (the engine
    passes the store it resolved from the project root, so the store layer's default is for
    callers without a project)."""
    return location or os.environ.get("FINE_TUNING_STUDIO_SQLITE_DB") or DEFAULT_DB


def require_sqlite(location: str) -> None:
    """Refuse a store URL that is not SQLite, naming what is supported."""
    scheme, sep, _ = location.partition("://")
    if sep and not scheme.lower().startswith("sqlite"):
        raise StoreError(f"ftctl stores are SQLite files (sqlite:///… or a path); {shown(location)} is not supported")


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
    """Whether the store is there (another database: assumed); a folder in its place is an error."""
    path = sqlite_path(location)
    if path is not None and os.path.isdir(path):
        raise StoreError(f"store {path} is a folder, not a SQLite file: give the database file's path (e.g. {os.path.join(path, 'state.db')})")
    return os.path.isfile(path) if path is not None else True


def shown(location: str | None) -> str:
    """The store as messages name it: a SQLite store's path, or the URL with its password hidden."""
    return sqlite_path(location) or re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", resolve_location(location))


def read_only_reason(path: str) -> str | None:
    """Why a SQLite store cannot be written, or None: the file or its folder is read-only."""
    if os.path.isfile(path) and not _writable(path):
        return f"the file's mode is {stat.filemode(os.stat(path).st_mode)}"
    if folder_read_only(path):
        return f"its folder {os.path.dirname(os.path.abspath(path))} is read-only (SQLite writes its -wal, -shm and journal files there)"
    return None


def folder_read_only(path: str) -> bool:
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.isdir(folder) and not _writable(folder)


def _writable(path: str) -> bool:
    """By access(2) and by the permission bits, so a store marked read-only stays so for root."""
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)


def read_only_error(location: str | None, reason: str) -> StoreError:
    return StoreError(f"store {shown(location)} is read-only ({reason}): apply, import and protect need write access; "
                      "plan, status, drift and validate --store still read it")


@contextmanager
def translated(location: str | None, *, busy_s: float = BUSY_TIMEOUT_MS / 1000) -> Iterator[None]:
    """Turn a driver's error (sqlite3, SQLAlchemy) raised inside into one `StoreError` naming the store."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if not (isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("sqlalchemy")):
            raise
        raise StoreError(describe(exc, location, busy_s=busy_s)) from exc


def describe(exc: BaseException, location: str | None, *, busy_s: float) -> str:
    """One line for a driver's error: what is wrong with the store and what to do."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    message = (str(cause).splitlines() or [type(cause).__name__])[0]
    where, path = shown(location), sqlite_path(location)
    lowered = message.lower()
    if "locked" in lowered:
        return (f"store {where} is locked by another process (not an ftctl apply: ftctl holds the file for milliseconds, "
                f"and its apply lock would be named); it stayed locked for {busy_s:.0f} s. Find the program holding it "
                f"(e.g. `fuser {where}`: a sqlite3 shell, a migration), let it finish, and retry (--lock-timeout waits longer)")
    if "readonly" in lowered or "read-only" in lowered:
        return str(read_only_error(location, (read_only_reason(path) if path else None) or message))
    if "not a database" in lowered:
        return f"store {where} is not a SQLite database ({message}): point --store at the Studio's state.db"
    if "malformed" in lowered or "corrupt" in lowered:
        return (f"store {where} is damaged ({message}): restore it from a backup or a snapshot (`ftctl state pull`); "
                f"`sqlite3 {where} 'PRAGMA integrity_check'` shows what is wrong")
    if path is not None and os.path.isdir(path):
        return f"store {where} is a folder, not a SQLite file: give the database file's path (e.g. {os.path.join(where, 'state.db')})"
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return f"store {where}: its folder {os.path.dirname(os.path.abspath(path))} does not exist"
    return f"store {where}: {type(cause).__name__}: {message}"
