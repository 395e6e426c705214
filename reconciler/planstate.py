"""`PlanState`: what one `build_plan` call knows and has decided so far, and the lookups over it.

Pure. The planner (`planner`) and its helpers (`adopting`, `sharing`, `pruning`) read and fill one
`PlanState`: the inputs (manifests, snapshot, facts, policy, seed), the ids and rendered rows of
the objects decided so far, the rows this plan writes (so a job reads its inputs as they will be),
and the blockers found. The lookups here answer from the plan's rows first, then the store's: a
row by id, the live rows of a record, the digest of what a job's result depends on, and a spec
fingerprint. New row ids are UUIDs derived from `seed` (`new_id`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cached_property

from reconciler.desired import RUN_INPUT_COLUMNS, Desired, PlanFacts
from reconciler.graph import Graph
from reconciler.kinds import BINDINGS
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.plan import Blocker, Policy
from reconciler.records import Row, comparable, digest
from reconciler.rowdiff import run_inputs

NAMESPACE = uuid.UUID("6f1c2b1e-4d0a-4a57-9d0e-0f7c7c1a2b3c")

Key = tuple[str, str]  # (kind, name)


def new_id(seed: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "\0".join([seed, *map(str, parts)])))


def owned(record: ManagedRecord) -> tuple[str, ...] | None:
    """The columns ftctl owns of a record's rows: all (None), or only the shared ones of a row the
    Studio ships or another object holds (`Binding.shared_columns`)."""
    return BINDINGS[record.kind].shared_columns if record.origin == "shared" else None


@dataclass
class PlanState:
    manifests: list[Manifest]
    snapshot: Snapshot
    policy: Policy
    facts: PlanFacts
    seed: str
    graph: Graph
    partial: bool = False  # plan only `manifests`; delete nothing, list no orphans
    forced: frozenset[str] = frozenset()  # addresses to replace whether or not they changed
    blockers: list[Blocker] = field(default_factory=list)
    ids: dict[Key, str] = field(default_factory=dict)
    desired: dict[Key, Desired] = field(default_factory=dict)
    content: dict[Key, str] = field(default_factory=dict)  # run-input digest per object
    new_configs: dict[str, str] = field(default_factory=dict)  # config content key -> id created here
    deleted_ids: set[str] = field(default_factory=set)
    changed: set[Key] = field(default_factory=set)  # objects this plan changes
    rows_by_id: dict[tuple[str, str], Row] = field(default_factory=dict)  # (table, id) -> row as this plan writes it
    token_envs: dict[str, str] = field(default_factory=dict)  # model/dataset store id -> its manifest's hf_token_env
    recorded_runs: set[Key] = field(default_factory=set)  # objects whose manifest records their run (history)

    @cached_property
    def managed_ids(self) -> set[str]:
        return {r.store_id for r in self.snapshot.managed.values()}

    def new_id(self, *parts: object) -> str:
        return new_id(self.seed, *parts)

    def row(self, table: str, row_id: object) -> Row | None:
        """A row as this plan leaves it: one it writes, else the store's."""
        if not row_id:
            return None
        return self.rows_by_id.get((table, str(row_id))) or self.snapshot.row(table, str(row_id))

    def live_rows(self, record: ManagedRecord) -> dict[str, Row | None]:
        if not record.store_table:
            return {}
        return {rid: self.snapshot.row(record.store_table, rid) for rid in record.row_ids}

    def live_comparable(self, table: str, row: Row) -> Row:
        return self.snapshot.comparable_row(table, str(row["id"])) or comparable(table, row)

    def inputs_digest(self, key: Key) -> str:
        """Digest of what a job's result depends on in an object (computed when a job asks)."""
        if key not in self.content:
            found = self.desired.get(key)
            self.content[key] = run_inputs(found) if found is not None else self._stored_inputs(key)
        return self.content[key]

    def _stored_inputs(self, key: Key) -> str:
        """The same digest of a managed object outside the manifests (a partial plan), from the rows
        it has in the store: equal to its manifest's while the two are in sync."""
        record = self.snapshot.managed.get(key)
        columns = RUN_INPUT_COLUMNS.get(record.store_table) if record else None
        if record is None or columns is None:
            return ""
        rows = [self.snapshot.comparable_row(record.store_table, rid) for rid in record.row_ids]
        return digest([row.get(c) for row in rows if row is not None for c in columns])

    def spec_fingerprint(self, desired: Desired) -> str:
        """What a job's run depends on, as the manifest resolves it: its rows (references as store
        ids, configs as the bodies copied in, every default filled), its resolved spec, and the run
        inputs of the objects those ids name. Manifests that resolve alike fingerprint alike: a config
        by name or inline, a default written out or left out (`export-manifests` writes the latter)."""
        named = _strings([[r.values for r in desired.rows], desired.spec])
        inputs = sorted({self.inputs_digest(dep) for dep in desired.depends_on if self.ids.get(dep) in named})
        rows = sorted((r.key, r.values) for r in desired.rows)
        return digest({"fingerprint": 2, "rows": rows, "spec": desired.spec, "inputs": inputs})

    def spec_unchanged(self, desired: Desired, recorded: str, spec_fp: str) -> bool:
        """Whether a record's fingerprint says the spec is as it was: this release's, or the one
        releases before it recorded (every dependency's run inputs, by name: a config named, not
        inline), so that a store written by them re-runs nothing after an upgrade."""
        if recorded == spec_fp:
            return True
        inputs = sorted(self.inputs_digest(dep) for dep in desired.depends_on)
        rows = sorted((r.key, r.values) for r in desired.rows)
        return recorded == digest({"rows": rows, "spec": desired.spec, "inputs": inputs})


def _strings(value: object) -> set[str]:
    """Every text value inside rows and specs (the store ids they reference among them)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*map(_strings, value)) if value else set()
    return set()
