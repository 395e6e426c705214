"""The store writer's fencing, on a real SQLite file: two writers with clocks of their own (the
second one's later than the first's lease), so a takeover needs no waiting.

A writer whose lease another took writes nothing more (each write transaction is refused and
rolled back); tokens grow across takeovers and releases; a store made by an ftctl without the
token column gets it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reconciler.store.write import FencedError, StoreWriter

TTL_S = 60.0


def writer_at(store: Path, now: float) -> StoreWriter:
    return StoreWriter(str(store), clock=lambda: now)


def rows(store: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(store)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_writer_whose_lease_was_taken_writes_nothing_more(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    first, second = writer_at(store, 1000.0), writer_at(store, 1000.0 + TTL_S + 5)
    try:
        first.acquire_lock(ttl_s=TTL_S, wait_s=0)
        apply_id, _, _ = first.begin_apply(plan_digest="d", actor="first")
        second.acquire_lock(ttl_s=TTL_S, wait_s=0)  # the first's lease has expired on the second's clock
        journal_before = rows(store, "SELECT * FROM ftctl_journal")

        with pytest.raises(FencedError, match=r"another apply \(ftctl-\w+, pid \d+ on .*\) took the store lock"):
            first.write_intent(apply_id, 1, [])
        with pytest.raises(FencedError):
            first.renew_lock(TTL_S)
        with pytest.raises(FencedError):
            first.finish_apply(apply_id, "done")

        assert rows(store, "SELECT * FROM ftctl_journal") == journal_before
        assert rows(store, "SELECT state FROM ftctl_applies") == [("running",)]
        assert rows(store, "SELECT owner FROM ftctl_lock") == [(second.owner,)]
        second.begin_apply(plan_digest="d", actor="second")  # the holder writes as usual
        first.release_lock()
        assert rows(store, "SELECT owner FROM ftctl_lock") == [(second.owner,)], "releasing a lost lease frees nothing"
    finally:
        first.close()
        second.close()


def test_tokens_grow_across_takeovers_and_releases(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    tokens = []
    for now in (1000.0, 1000.0 + TTL_S + 1, 1000.0 + TTL_S + 2):  # taken over, then released and taken again
        writer = writer_at(store, now)
        writer.acquire_lock(ttl_s=TTL_S, wait_s=0)
        tokens.append(writer.token or 0)
        if len(tokens) > 1:
            writer.release_lock()
        writer.close()
    assert tokens[0] < tokens[1] < tokens[2], tokens


def test_a_store_of_an_older_ftctl_gets_the_token_column(tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    conn = sqlite3.connect(store)
    conn.execute("CREATE TABLE ftctl_lock (name VARCHAR NOT NULL PRIMARY KEY, owner VARCHAR NOT NULL, host VARCHAR NOT NULL, "
                 "pid INTEGER NOT NULL, acquired_at FLOAT NOT NULL, expires_at FLOAT NOT NULL)")
    conn.execute("INSERT INTO ftctl_lock VALUES ('apply', 'ftctl-old', 'elsewhere.invalid', 1, 0, 1)")  # an expired lease
    conn.commit()
    conn.close()

    writer = writer_at(store, 1000.0)
    try:
        writer.acquire_lock(ttl_s=TTL_S, wait_s=0)
        writer.renew_lock(TTL_S)
        assert rows(store, "SELECT owner, token FROM ftctl_lock") == [(writer.owner, writer.token)]
    finally:
        writer.release_lock()
        writer.close()
