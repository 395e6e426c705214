"""What the store holds, as plain values: Studio rows, ftctl's managed records, in a frozen `Snapshot`.

The store module reads a snapshot once per command; rules, the planner and status take it as a
value. `LiveObject` is the small per-row view rules use to resolve references.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.kinds import BY_TABLE
from reconciler.lineage import LineageRecord
from reconciler.records import Row, comparable, digest
from reconciler.runtime import JobObservation


@dataclass(frozen=True)
class LiveObject:
    kind: str
    id: str
    name: str
    type: str = ""
    model_id: str = ""  # adapters: the base model; jobs: base_model_id
    dataset_id: str = ""  # prompts and jobs
    features: str = ""  # datasets: JSON list of column names

    def feature_list(self) -> list[str] | None:
        try:
            value = json.loads(self.features) if self.features else None
        except ValueError:
            return None
        return [str(v) for v in value] if isinstance(value, list) else None


def live_object(table: str, row: Row) -> LiveObject:
    binding = BY_TABLE[table]
    text = lambda c: "" if row.get(c) is None else str(row[c])  # noqa: E731
    fields = {name: text(column) for name, column in binding.live_fields.items()}
    return LiveObject(binding.kind, text("id"), binding.name_of(row), **fields)


@dataclass(frozen=True)
class ManagedRecord:
    """ftctl's bookkeeping for one object it manages (a row of `ftctl_objects`)."""

    kind: str
    name: str
    store_table: str  # '' for kinds without a Studio row (ModelExport)
    store_id: str
    row_ids: tuple[str, ...]
    spec_fingerprint: str
    row_fingerprint: str
    generation: int = 1
    protected: bool = False
    origin: str = "created"  # created | shared (a deduplicated config) | imported
    serial: int = 0
    spec: dict[str, Any] | None = None  # the resolved spec, kept for kinds without Studio rows
    backend: str = ""  # where the current generation's jobs run ('' = local)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Snapshot:
    rows: Mapping[str, Mapping[str, Row]] = field(default_factory=dict)  # table -> id -> row
    managed: Mapping[tuple[str, str], ManagedRecord] = field(default_factory=dict)
    serial: int = 0
    source: str = ""
    # The store's identity (ftctl_meta `store_id`, a UUID written by ftctl's first apply); '' for a
    # store that has none yet. Job names and the local jobs folder carry it.
    store_id: str = ""
    # What the backends said of the managed jobs when a snapshot file was pulled; None for a live
    # store (its jobs are observed where they run).
    jobs: Mapping[str, JobObservation] | None = None
    # `table/id` -> the fingerprint of the row as the store holds it, for each row a snapshot file
    # holds with a secret masked (a Studio-written token): a plan made from the file still applies
    # to the store while those rows are unchanged there. Empty for a live store.
    unredacted: Mapping[str, str] = field(default_factory=dict)
    # Every job ftctl launched in this store and every reuse it applied (`ftctl_lineage`), oldest first.
    lineage: tuple[LineageRecord, ...] = ()

    @cached_property
    def objects(self) -> tuple[LiveObject, ...]:
        return tuple(live_object(t, row) for t, table_rows in self.rows.items() for row in table_rows.values())

    @cached_property
    def _by_id(self) -> dict[str, LiveObject]:
        return {obj.id: obj for obj in self.objects}

    @cached_property
    def _by_name(self) -> dict[tuple[str, str], list[LiveObject]]:
        out: dict[tuple[str, str], list[LiveObject]] = {}
        for obj in self.objects:
            out.setdefault((obj.kind, obj.name), []).append(obj)
        return out

    def by_id(self, object_id: str) -> LiveObject | None:
        return self._by_id.get(object_id)

    def by_name(self, kind: str, name: str) -> list[LiveObject]:
        return self._by_name.get((kind, name), [])

    def row(self, table: str, row_id: str) -> Row | None:
        return self.rows.get(table, {}).get(row_id)

    def all_rows(self) -> Iterator[tuple[str, Row]]:
        for table, table_rows in self.rows.items():
            for row in table_rows.values():
                yield table, row

    @cached_property
    def _comparable(self) -> dict[tuple[str, str], Row]:
        return {}

    def comparable_row(self, table: str, row_id: str) -> Row | None:
        """The row as the Studio sees it (`records.comparable`), computed once per snapshot."""
        key = (table, row_id)
        found = self._comparable.get(key)
        if found is None:
            row = self.row(table, row_id)
            if row is None:
                return None
            found = self._comparable[key] = comparable(table, row)
        return found

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """`table/id` -> fingerprint of every Studio row read, and `@Kind/name` -> managed record digest."""
        out = {f"{t}/{row['id']}": self._fingerprint(t, str(row["id"])) for t, row in self.all_rows()}
        for record in self.managed.values():
            out[f"@{record.address}"] = managed_digest(record)
        return out

    def _fingerprint(self, table: str, row_id: str) -> str:
        return self.unredacted.get(f"{table}/{row_id}") or digest(self.comparable_row(table, row_id))


def managed_digest(record: ManagedRecord) -> str:
    return digest([record.store_id, list(record.row_ids), record.spec_fingerprint, record.generation, record.protected])
