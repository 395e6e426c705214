"""The Studio's store: the only package that uses SQLAlchemy."""

from reconciler.store.read import read_snapshot, store_url

__all__ = ["read_snapshot", "store_url"]
