"""Writing the store: the lease lock, the apply record and journal, and one transaction per step.

`StoreWriter` is what the executor drives. Every effect on the Studio's tables happens inside
`commit_step`, in one short transaction together with ftctl's records, the history (row before and
after) and the journal row marking the step done: after a crash a step is either wholly in the
store or not at all. No transaction is held open across anything but these statements.

Fencing: each acquisition of the lease takes a new token, kept in the lock row beside the owner:
one more than the token of the lease it takes over, and never less than the clock in milliseconds
(a released lease's row is gone, and with it its token), so tokens do not go back. The check
compares owner and token, so even two tokens alike (two acquisitions in one millisecond, one
after a release) cannot be confused. Every write
transaction of a writer that holds the lease starts with `BEGIN IMMEDIATE` (`store.db`), then
checks that the lock row still holds its owner and token; if another apply took the lease
meanwhile (this one was paused past its expiry), the transaction is rolled back and `FencedError`
raised, so a stale writer writes nothing more. While the lease is held a daemon thread renews it
every third of its time to live, so a slow step keeps it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from reconciler.lineage import LineageRecord, launch_record
from reconciler.live import Snapshot
from reconciler.plan import Action, Change, RowOp
from reconciler.records import storable
from reconciler.secrets import redact
from reconciler.store.db import open_engine
from reconciler.store.location import (
    BUSY_TIMEOUT_MS,
    StoreError,
    exists,
    read_only_error,
    read_only_reason,
    sqlite_path,
    store_url,
    translated,
)
from reconciler.store.read import lineage_record, snapshot_of
from reconciler.store.schema import APPLIES, HISTORY, JOURNAL, LINEAGE, LOCK, META, OBJECTS, STUDIO_TABLES

LOCK_NAME = "apply"
IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-variable limit


@dataclass(frozen=True)
class LockHolder:
    owner: str
    host: str
    pid: int
    expires_at: float

    def describe(self, now: float) -> str:
        return f"{self.owner} (pid {self.pid} on {self.host}, lease expires in {max(0, self.expires_at - now):.0f} s)"


class LockedError(StoreError):
    """Another apply holds the lock."""

    def __init__(self, holder: LockHolder, waited: float, now: float) -> None:
        super().__init__(f"the store is locked by {holder.describe(now)}; waited {waited:.0f} s (--lock-timeout)")
        self.holder = holder


class FencedError(StoreError):
    """This apply's lease expired and another apply took the lock: it must write nothing more."""

    def __init__(self, expired_ago: float, holder: str) -> None:
        super().__init__(
            f"another apply{holder} took the store lock while this one was paused (lease expired {expired_ago:.0f} s ago); "
            "this apply wrote nothing more — re-run `ftctl apply` to converge"
        )


def refuse_unwritable(location: str | None) -> None:
    """Refuse, before anything is written, a store ftctl could not write (a snapshot file, read-only,
    damaged, a newer Studio schema...): what opening a writer checks. A store not there yet is fine."""
    if exists(location):
        StoreWriter(location).close()


class StoreWriter:
    """Opens the store (making it, or checking and completing its schema); every error of the
    driver leaves its methods as one `StoreError` line (`location.translated`). SQLite waits up to
    busy_s for another process's transaction."""

    def __init__(self, location: str | None, *, clock: Callable[[], float] = time.time,
                 busy_s: float = BUSY_TIMEOUT_MS / 1000) -> None:
        from reconciler.store.snapshot_file import is_snapshot_location

        if is_snapshot_location(location):
            raise StoreError(f"{location} is a snapshot, read-only: write to the store it came from (`ftctl state pull` made it)")
        path = sqlite_path(location)
        reason = read_only_reason(path) if path is not None and exists(location) else None
        if reason:
            raise read_only_error(location, reason)
        self.location, self.busy_s = location, busy_s
        self.url = store_url(location)
        with translated(location, busy_s=busy_s):
            self.engine: Engine = open_engine(location, create=True, busy_s=busy_s)
        self.clock = clock
        self.owner = f"ftctl-{uuid.uuid4().hex[:8]}"
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token: int | None = None  # the fencing token of the lease this writer holds
        self.lease_until = 0.0
        self._renewing: threading.Event | None = None

    def close(self) -> None:
        self._stop_renewing()
        self.engine.dispose()

    def snapshot(self) -> Snapshot:
        with translated(self.location, busy_s=self.busy_s):
            conn = self.engine.raw_connection()
        return snapshot_of(conn, source=self.url)

    @contextmanager
    def _transaction(self, *, fenced: bool = True) -> Iterator[Connection]:
        """A transaction (`BEGIN IMMEDIATE`: SQLite's write lock from its start); `fenced` and while this
        writer holds the lease, it first checks the lease is still its own, so no other writer can
        slip in between the check and the writes."""
        with translated(self.location, busy_s=self.busy_s), self.engine.begin() as conn:
            if fenced and self.token is not None:
                self._check_lease(conn)
            yield conn

    def _check_lease(self, conn: Connection) -> None:
        row = conn.execute(select(LOCK.c.owner, LOCK.c.host, LOCK.c.pid, LOCK.c.token).where(LOCK.c.name == LOCK_NAME)).first()
        if row is None or row.owner != self.owner or row.token != self.token:
            holder = f" ({row.owner}, pid {row.pid} on {row.host})" if row is not None else ""
            raise FencedError(max(0.0, self.clock() - self.lease_until), holder)

    # -- lease lock ------------------------------------------------------------------------------

    def acquire_lock(self, *, ttl_s: float, wait_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Take the lease (waiting up to wait_s for a live holder), then keep it renewed until released."""
        started = self.clock()
        while True:
            holder = self._try_lock(ttl_s)
            if holder is None:
                self._start_renewing(ttl_s)
                return
            now = self.clock()
            if now - started >= wait_s:
                raise LockedError(holder, now - started, now)
            sleep(min(0.2, max(0.01, wait_s - (now - started))))

    def _try_lock(self, ttl_s: float) -> LockHolder | None:
        """Take the lease if it is free, expired, or held by a dead process on this host; else its holder."""
        now = self.clock()
        with self._transaction() as conn:
            row = conn.execute(select(LOCK).where(LOCK.c.name == LOCK_NAME)).first()
            token = int(now * 1000)
            if row is not None:
                holder = LockHolder(row.owner, row.host, int(row.pid), float(row.expires_at))
                if not (holder.expires_at < now or (holder.host == self.host and not _alive(holder.pid))):
                    return holder
                conn.execute(delete(LOCK).where(LOCK.c.name == LOCK_NAME))
                token = max(token, int(row.token or 0) + 1)
            conn.execute(insert(LOCK), {"name": LOCK_NAME, "owner": self.owner, "host": self.host, "pid": self.pid,
                                        "acquired_at": now, "expires_at": now + ttl_s, "token": token})
        self.token, self.lease_until = token, now + ttl_s
        return None

    def renew_lock(self, ttl_s: float) -> None:
        """Extend the lease; `FencedError` when another apply took it. A lease extended a moment ago
        (less than a tenth of its life) is only checked, not written again (200 launches in a step
        wrote it 200 times, 0.16 s of a 1 s apply); the check still sees a takeover made on another
        clock."""
        if self.lease_until - self.clock() > 0.9 * ttl_s:
            with translated(self.location, busy_s=self.busy_s), self.engine.connect() as conn:
                self._check_lease(conn)
            return
        with self._transaction() as conn:
            self._extend(conn, ttl_s)

    def _extend(self, conn: Connection, ttl_s: float) -> bool:
        until = self.clock() + ttl_s
        renewed = conn.execute(
            update(LOCK).where(LOCK.c.name == LOCK_NAME, LOCK.c.owner == self.owner, LOCK.c.token == self.token).values(expires_at=until)
        ).rowcount
        if renewed == 1:
            self.lease_until = until
        return renewed == 1

    def _start_renewing(self, ttl_s: float) -> None:
        self._renewing = stop = threading.Event()
        threading.Thread(target=self._keep_renewing, args=(stop, ttl_s), name="ftctl-lease", daemon=True).start()

    def _keep_renewing(self, stop: threading.Event, ttl_s: float) -> None:
        """The renewal thread: every ttl/3 while the lease is ours; it stops when the lease is lost
        (the next write of the apply is then refused) and retries after a store error."""
        while not stop.wait(ttl_s / 3):
            try:
                with self._transaction(fenced=False) as conn:
                    if not self._extend(conn, ttl_s):
                        return
            except StoreError:
                continue

    def _stop_renewing(self) -> None:
        if self._renewing is not None:
            self._renewing.set()
            self._renewing = None

    def release_lock(self) -> None:
        self._stop_renewing()
        with self._transaction(fenced=False) as conn:
            conn.execute(delete(LOCK).where(LOCK.c.name == LOCK_NAME, LOCK.c.owner == self.owner))
        self.token = None

    # -- apply record and journal -----------------------------------------------------------------

    def begin_apply(self, *, plan_digest: str, actor: str, commit_sha: str = "", store_id: str = "") -> tuple[str, int, int]:
        """Bump the serial, mark interrupted applies and their open intents, and give a store without
        an identity the plan's (`store_id`, else a new one); (apply id, serial, abandoned)."""
        apply_id = uuid.uuid4().hex
        now = self.clock()
        with self._transaction() as conn:
            self._identify(conn, store_id)
            current = conn.execute(select(META.c.value).where(META.c.key == "serial")).scalar()
            serial = int(current or 0) + 1
            if current is None:
                conn.execute(insert(META), {"key": "serial", "value": str(serial)})
            else:
                conn.execute(update(META).where(META.c.key == "serial").values(value=str(serial)))
            abandoned = conn.execute(
                update(JOURNAL).where(JOURNAL.c.state == "intent").values(state="abandoned", finished_at=now)
            ).rowcount
            conn.execute(update(APPLIES).where(APPLIES.c.state == "running").values(state="interrupted", finished_at=now))
            conn.execute(insert(APPLIES), {
                "apply_id": apply_id, "serial": serial, "plan_digest": plan_digest, "actor": actor,
                "commit_sha": commit_sha, "state": "running", "started_at": now,
            })
        return apply_id, serial, int(abandoned)

    def record_override(self, apply_id: str, override: dict[str, Any]) -> None:
        """A policy override (`apply --override-policy`: the keys, the reason, who, the blockers it
        waived) as the apply's journal entry of step 0, done when written."""
        now = self.clock()
        with self._transaction() as conn:
            conn.execute(insert(JOURNAL), {"apply_id": apply_id, "step": 0, "intent": json.dumps(override, sort_keys=True),
                                           "state": "done", "created_at": now, "finished_at": now})

    def write_intent(self, apply_id: str, step: int, changes: Sequence[Change]) -> int:
        intent = {"changes": [f"{c.action.value} {c.address}" for c in changes],
                  "rows": [f"{op.op} {op.table}/{op.row_id}" for c in changes for op in c.ops],
                  "launches": [f"{launch.job_name} (attempt {launch.attempt})" for c in changes for launch in c.launches]}
        with self._transaction() as conn:
            result = conn.execute(insert(JOURNAL), {
                "apply_id": apply_id, "step": step, "intent": json.dumps(intent), "state": "intent", "created_at": self.clock(),
            })
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def commit_step(self, *, apply_id: str, serial: int, journal_seq: int, changes: Sequence[Change],
                    estimates: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Carry out the changes' row operations and records, with history, in one transaction;
        `estimates` (by address: `lineage.launch_estimates`) go into the lineage of the jobs it launches.

        Statements are batched per table (one SELECT of the rows before, one executemany per kind
        of write), so a step of hundreds of changes costs a handful of round trips.
        """
        now = self.clock()
        ops = [(op, change) for change in changes for op in change.ops]
        with self._transaction() as conn:
            before = self._rows_before(conn, [op for op, _ in ops])
            history = [self._history(op, change, before.get((op.table, op.row_id)), apply_id, serial, now) for op, change in ops]
            self._write_rows(conn, [op for op, _ in ops], before)
            self._write_records(conn, changes, serial, now)
            self._write_lineage(conn, changes, now, estimates or {})
            if history:
                conn.execute(insert(HISTORY), history)
            conn.execute(update(JOURNAL).where(JOURNAL.c.seq == journal_seq).values(state="done", finished_at=now))

    @staticmethod
    def _rows_before(conn, ops: list[RowOp]) -> dict[tuple[str, str], dict[str, Any]]:  # type: ignore[no-untyped-def]
        wanted: dict[str, list[str]] = {}
        for op in ops:
            wanted.setdefault(op.table, []).append(op.row_id)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for table_name, ids in wanted.items():
            table = STUDIO_TABLES[table_name]
            for start in range(0, len(ids), IN_CHUNK):
                for row in conn.execute(select(table).where(table.c.id.in_(ids[start:start + IN_CHUNK]))).mappings():
                    found[(table_name, str(row["id"]))] = dict(row)
        return found

    @staticmethod
    def _write_rows(conn, ops: list[RowOp], before: dict[tuple[str, str], dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
        inserts: dict[str, list[dict[str, Any]]] = {}
        deletes: dict[str, list[str]] = {}
        for op in ops:
            old = before.get((op.table, op.row_id))
            if op.op == "insert":
                if old is not None:
                    raise StoreError(f"{op.table} row {op.row_id} already exists; re-plan")
                inserts.setdefault(op.table, []).append(storable(op.table, op.values))
            elif op.op == "update":
                if old is None:
                    raise StoreError(f"{op.table} row {op.row_id} is gone; re-plan")
                table = STUDIO_TABLES[op.table]
                values = {k: v for k, v in storable(op.table, {**old, **op.values}).items() if k in op.values}
                conn.execute(update(table).where(table.c.id == op.row_id).values(**values))
            else:
                deletes.setdefault(op.table, []).append(op.row_id)
        for table_name, ids in deletes.items():
            table = STUDIO_TABLES[table_name]
            for start in range(0, len(ids), IN_CHUNK):
                conn.execute(delete(table).where(table.c.id.in_(ids[start:start + IN_CHUNK])))
        for table_name, rows in inserts.items():
            conn.execute(insert(STUDIO_TABLES[table_name]), rows)

    @staticmethod
    def _history(op: RowOp, change: Change, before: dict[str, Any] | None, apply_id: str, serial: int, now: float) -> dict[str, Any]:
        before = redact(before)  # a Studio-written secret is never copied into history (reconciler.secrets)
        after: dict[str, Any] | None
        if op.op == "insert":
            after = storable(op.table, op.values)
        elif op.op == "update":
            after = {**(before or {}), **storable(op.table, {**(before or {}), **op.values})}
        else:
            after = None
        return {
            "apply_id": apply_id, "serial": serial, "at": now, "kind": change.kind, "name": change.name,
            "action": change.action.value, "store_table": op.table, "row_id": op.row_id,
            "before": json.dumps(before) if before is not None else None,
            "after": json.dumps(after) if after is not None else None,
        }

    @staticmethod
    def _write_records(conn, changes: Sequence[Change], serial: int, now: float) -> None:  # type: ignore[no-untyped-def]
        # A change without a record leaves ftctl's bookkeeping as it is, unless it deletes the object.
        touched = [{"k": c.kind, "n": c.name} for c in changes if c.record is not None or c.action is Action.DELETE]
        if touched:
            conn.execute(delete(OBJECTS).where(OBJECTS.c.kind == bindparam("k"), OBJECTS.c.name == bindparam("n")), touched)
        records = [
            {
                "kind": c.kind, "name": c.name, "store_table": rec.store_table, "store_id": rec.store_id,
                "row_ids": json.dumps(list(rec.row_ids)), "spec_fingerprint": rec.spec_fingerprint,
                "row_fingerprint": rec.row_fingerprint, "generation": rec.generation, "protected": int(rec.protected),
                "origin": rec.origin, "serial": serial, "updated_at": now,
                "spec": json.dumps(rec.spec, sort_keys=True) if rec.spec is not None else None,
                "backend": rec.backend or None,
            }
            for c in changes
            if (rec := c.record) is not None
        ]
        if records:
            conn.execute(insert(OBJECTS), records)

    @staticmethod
    def _write_lineage(conn, changes: Sequence[Change], now: float,  # type: ignore[no-untyped-def]
                       estimates: Mapping[str, Mapping[str, Any]]) -> None:
        """`ftctl_lineage`: each job a step will launch, with its input's lineage and what the plan
        estimated it to take (written with the step's rows, before the launch; a relaunch of the
        same job adds nothing), and each reuse, with the digests of the job it takes (`reused_from`;
        no estimate: it costs nothing)."""
        rows: list[LineageRecord] = []
        for change in changes:
            generation = change.record.generation if change.record else conn.execute(
                select(OBJECTS.c.generation).where(OBJECTS.c.kind == change.kind, OBJECTS.c.name == change.name)).scalar() or 0
            for launch in change.launches:
                rows.append(launch_record(change.kind, change.name, generation, job_name=launch.job_name, job_kind=launch.kind,
                                          row=launch.row, document=launch.input, at=now,
                                          estimate={**estimates[change.address], "jobs": len(change.launches)}
                                          if change.address in estimates else None))
            for reuse in change.reuses:
                found = conn.execute(select(LINEAGE).where(LINEAGE.c.job_name == reuse.job_name, LINEAGE.c.reused_from == "")
                                     .order_by(LINEAGE.c.seq)).mappings().first()
                earlier = lineage_record(found) if found else LineageRecord(change.kind, change.name, reuse.generation, reuse.job_name)
                rows.append(replace(earlier, generation=generation, at=now, reused_from=reuse.job_name, estimate={}))
        known = {tuple(found) for found in conn.execute(
            select(LINEAGE.c.kind, LINEAGE.c.name, LINEAGE.c.generation, LINEAGE.c.job_name)
            .where(LINEAGE.c.job_name.in_([r.job_name for r in rows])))} if rows else set()
        fresh = [r for r in rows if (r.kind, r.name, r.generation, r.job_name) not in known]
        if fresh:
            conn.execute(insert(LINEAGE), [_lineage_values(r) for r in fresh])

    def record_launches(self, *, apply_id: str, serial: int, launched: Sequence[tuple[Change, str, Mapping[str, Any]]]) -> None:
        """Note each launched job in the Studio row that records it, with history, in one transaction:
        (change, `table/id`, the columns its launch sets: `lifecycle.launch_note`) for every job a step launched."""
        ops = [(change, RowOp(row.partition("/")[0], "update", row.partition("/")[2], dict(note)))
               for change, row, note in launched]
        if not ops:
            return
        now = self.clock()
        with self._transaction() as conn:
            before = self._rows_before(conn, [op for _, op in ops])
            present = [(change, op) for change, op in ops if (op.table, op.row_id) in before]  # a row replaced since: skip
            self._write_rows(conn, [op for _, op in present], before)
            history = [self._history(op, replace(change, action=Action.UPDATE), before[(op.table, op.row_id)], apply_id, serial, now)
                       for change, op in present]
            if history:
                conn.execute(insert(HISTORY), history)

    def finish_apply(self, apply_id: str, state: str) -> None:
        with self._transaction() as conn:
            conn.execute(update(APPLIES).where(APPLIES.c.apply_id == apply_id).values(state=state, finished_at=self.clock()))

    # -- ftctl_meta: small key/value state (the serial is begin_apply's; the agent keeps its own) ---

    @staticmethod
    def _identify(conn: Connection, store_id: str) -> None:
        """The store's identity (`store_id`): written once, by the first apply; never changed."""
        current = conn.execute(select(META.c.value).where(META.c.key == "store_id")).scalar()
        if current is None:
            conn.execute(insert(META), {"key": "store_id", "value": store_id or str(uuid.uuid4())})
        elif store_id and current != store_id:
            raise StoreError(f"the plan was made for the store whose identity is {store_id}, and this store's is {current}")

    def read_meta(self, prefix: str) -> dict[str, str]:
        """The ftctl_meta keys that start with prefix (e.g. `agent.`), and their values."""
        with self._transaction(fenced=False) as conn:
            rows = conn.execute(select(META.c.key, META.c.value).where(META.c.key.startswith(prefix, autoescape=True))).all()
        return {str(key): str(value) for key, value in rows}

    def write_meta(self, values: Mapping[str, str]) -> None:
        """Set ftctl_meta keys in one transaction; `serial` is not among them (only applies bump it)."""
        if {"serial", "store_id"} & set(values):
            raise ValueError("ftctl_meta 'serial' and 'store_id' are written by begin_apply only")
        with self._transaction() as conn:
            for key, value in values.items():
                if conn.execute(update(META).where(META.c.key == key).values(value=value)).rowcount == 0:
                    conn.execute(insert(META), {"key": key, "value": value})

    def set_protected(self, kind: str, name: str, protected: bool) -> bool:
        with self._transaction() as conn:
            return bool(conn.execute(
                update(OBJECTS).where(OBJECTS.c.kind == kind, OBJECTS.c.name == name).values(protected=int(protected))
            ).rowcount)


def _lineage_values(record: LineageRecord) -> dict[str, Any]:
    """One `ftctl_lineage` row's values, in the table's column order after its `seq`."""
    values = (record.kind, record.name, record.generation, record.job_name, record.job_kind, record.row, record.input_digest,
              record.reuse_key, record.commit, record.dataset_digest, record.base_revision,
              json.dumps(dict(record.config_digests), sort_keys=True), record.ftctl_version,
              json.dumps(dict(record.estimate), sort_keys=True) if record.estimate else None, record.at, record.reused_from)
    return {column.name: value for column, value in zip(list(LINEAGE.columns)[1:], values, strict=True)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
