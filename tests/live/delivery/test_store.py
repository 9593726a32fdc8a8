"""The SQLite store: persistence before acknowledgement, state changes, DLQ, reopening."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path

import pytest

from sim.errors import InputError
from sim.live.delivery.store import Finish, NewEvent, Retry, Store, StoreWriter


def _event(n: int, targets: list[tuple[str, str]] | None = None) -> NewEvent:
    body = json.dumps({"source": "s", "detail": {"n": n}})
    return NewEvent(f"e{n}", "default", body, 1000.0 + n, targets or [("rule", "t1")])


def test_accepted_events_are_committed_and_seen_by_another_connection(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    ids = store.accept(_event(1, [("rule", "t1"), ("rule", "t2")]))
    other = sqlite3.connect(tmp_path / "db")  # what a restarted process would see
    rows = other.execute("SELECT id, state, ready_at FROM deliveries ORDER BY id").fetchall()
    assert rows == [(ids[0], "pending", 1001.0), (ids[1], "pending", 1001.0)]
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # NORMAL (1) under WAL: a commit survives the process being killed, not a power loss.
    assert store.db.execute("PRAGMA synchronous").fetchone() == (1,)
    other.close()
    store.close()


def test_retries_and_ends_move_deliveries_and_pending_lists_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    (a,) = store.accept(_event(1))
    (b,) = store.accept(_event(2))
    (c,) = store.accept(_event(3))
    store.apply(
        [
            Retry(a, 2000.0, 1, 0.5, 503, "HTTP 503"),
            Finish(b, "delivered", 0, 1500.0),
            Finish(c, "dlq", 2, 1600.0, "arn:q", {"ERROR_CODE": "TIMEOUT", "RETRY_ATTEMPTS": 2}),
        ]
    )
    store.close()
    reopened = Store(tmp_path / "db")
    (pending,) = reopened.pending()
    assert (pending.id, pending.ready_at, pending.retries_done) == (a, 2000.0, 1)
    assert (pending.previous_backoff_s, pending.last_status, pending.last_message) == (
        0.5,
        503,
        "HTTP 503",
    )
    assert json.loads(pending.body)["detail"] == {"n": 1}
    assert reopened.counts() == {"events": 3, "pending": 1, "delivered": 1, "dlq": 1, "dropped": 0}
    (record,) = reopened.dead_letters()
    assert record["event"] == {"source": "s", "detail": {"n": 3}}
    assert record["attributes"] == {"ERROR_CODE": "TIMEOUT", "RETRY_ATTEMPTS": 2}
    assert record["dead_letter_queue"] == "arn:q" and record["delivery_id"] == c
    reopened.close()


def test_an_ended_delivery_is_never_reopened(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    (a,) = store.accept(_event(1))
    store.apply([Finish(a, "delivered", 0, 1.0), Retry(a, 5.0, 1, math.nan, 500, "late")])
    assert store.pending() == []
    assert store.counts()["delivered"] == 1
    store.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    broken = NewEvent("x", "default", "{}", 1.0, [("rule", None)])  # type: ignore[list-item]
    with pytest.raises(sqlite3.IntegrityError):
        store.apply([_event(1), broken])
    assert store.counts()["events"] == 0
    store.close()


def test_a_file_that_is_not_a_database_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError) as caught:
        Store(path)
    assert str(path) in str(caught.value)


def test_writer_commits_concurrent_accepts_together_and_drains_updates(tmp_path: Path) -> None:
    async def scenario() -> list[list[int]]:
        writer = StoreWriter(Store(tmp_path / "db"))
        writer.start()
        results = await asyncio.gather(*(writer.accept([_event(n)]) for n in range(50)))
        ids = [r[0][0] for r in results]
        for delivery in ids[:10]:
            writer.record(Finish(delivery, "delivered", 0, 1.0))
        await writer.drain()
        await writer.close()
        return [r[0] for r in results]

    ids = asyncio.run(scenario())
    assert sorted(i for (i,) in ids) == list(range(1, 51))
    store = Store(tmp_path / "db")
    assert store.counts() == {"events": 50, "pending": 40, "delivered": 10, "dlq": 0, "dropped": 0}
    store.close()


def test_writer_reports_a_failed_commit_to_the_waiting_caller(tmp_path: Path) -> None:
    async def scenario() -> None:
        writer = StoreWriter(Store(tmp_path / "db"))
        writer.start()
        broken = NewEvent("x", "default", "{}", 1.0, [("rule", None)])  # type: ignore[list-item]
        with pytest.raises(sqlite3.IntegrityError):
            await writer.accept([broken])
        with pytest.raises(sqlite3.IntegrityError):
            await writer.close()

    asyncio.run(scenario())


def test_writer_assigns_ids_before_the_commit_continuing_the_database(tmp_path: Path) -> None:
    first = Store(tmp_path / "db")
    first.accept(_event(1, [("rule", "t1"), ("rule", "t2")]))  # rows 1, deliveries 1-2
    first.close()

    async def scenario() -> tuple[list[list[int]], bool]:
        writer = StoreWriter(Store(tmp_path / "db"))
        writer.start()
        ids, committed = writer.accept_soon([_event(2), _event(3, [("r", "a"), ("r", "b")])])
        done_at_once = committed.done()
        await committed
        writer.record(Finish(ids[0][0], "delivered", 0, 1.0))  # committed without a drain
        await asyncio.sleep(0.2)
        other = sqlite3.connect(tmp_path / "db")
        query = "SELECT state FROM deliveries WHERE id = ?"
        (state,) = other.execute(query, (ids[0][0],)).fetchone()
        other.close()
        assert state == "delivered"
        await writer.close()
        return ids, done_at_once

    ids, done_at_once = asyncio.run(scenario())
    assert ids == [[3], [4, 5]] and not done_at_once
    store = Store(tmp_path / "db")
    rows = store.db.execute("SELECT id, event, target FROM deliveries ORDER BY id").fetchall()
    assert rows == [(1, 1, "t1"), (2, 1, "t2"), (3, 2, "t1"), (4, 3, "a"), (5, 3, "b")]
    store.close()
