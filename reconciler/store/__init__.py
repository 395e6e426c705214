"""The Studio's store: the only package that uses SQLAlchemy."""

from reconciler.store.db import StoreError, exists, resolve_location, store_url
from reconciler.store.read import read_snapshot
from reconciler.store.write import LockedError, StoreWriter

__all__ = ["LockedError", "StoreError", "StoreWriter", "exists", "read_snapshot", "resolve_location", "store_url"]
