"""The Studio's store: the only package that uses SQLAlchemy.

Import the submodule you need (`store.read`, `store.write`, `store.location`): reading a SQLite
store never loads SQLAlchemy, which only `store.db` (and the writer) import.
"""
