"""Facts about local files that rules need: does a path exist, what columns does a dataset have.

Pure values. `reconciler.localfiles` gathers them (the I/O); rules only read them, so every rule
stays a function of values and is tested without touching the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PathFact:
    exists: bool
    is_dir: bool = False
    is_file: bool = False
    has_adapter_config: bool = False  # a PEFT adapter directory holds adapter_config.json


@dataclass(frozen=True)
class TableFact:
    """Columns and row count of a local dataset file, or why they could not be read."""

    columns: tuple[str, ...] = ()
    rows: int | None = None  # None: not counted (file too large)
    error: str | None = None


@dataclass(frozen=True)
class LocalFacts:
    paths: dict[str, PathFact] = field(default_factory=dict)
    tables: dict[str, TableFact] = field(default_factory=dict)

    def path(self, path: str) -> PathFact:
        return self.paths.get(path, PathFact(exists=False))
