"""Durable state of the live core in SQLite (WAL): accepted events, pending deliveries, the DLQ.

An accepted event and its deliveries (one per matching rule target) are committed in one
transaction before the event is acknowledged. Each attempt's result moves a delivery on:
a retry stores its new ready time, an end stores `delivered`, `dlq` (with the DLQ record)
or `dropped`. After a crash, `pending()` lists every delivery not yet ended, so a restarted
core resumes them; an attempt in flight at the crash is made again (at-least-once).

`Store` is synchronous and must be used from one thread at a time; `StoreWriter` runs it in
one worker thread for the asyncio core and commits queued operations together (group commit).

It also keeps which connections are DEAUTHORIZED (S11), so that a restart does not
authorize them again; their credentials are stored only as a salted PBKDF2 hash, to notice
when the operator has changed them (which re-authorizes the connection, as updating a
connection does in AWS).

Durability (`DURABILITY`): WAL with `synchronous=NORMAL` (`normal`, the default) or `FULL`
(`full`). Under `normal` a commit has written its WAL frames to the OS when it returns, so a
crash of the process (`kill -9`) loses nothing committed; a power loss or OS crash may roll
back the last commits (the database stays consistent). Under `full` each commit also syncs
the WAL to the disk (fsync) before it returns, so it survives those too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from sim.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    bus TEXT NOT NULL,
    body TEXT NOT NULL,
    accepted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    event INTEGER NOT NULL REFERENCES events(id),
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dlq', 'dropped')),
    ready_at REAL NOT NULL,
    retries_done INTEGER NOT NULL DEFAULT 0,
    previous_backoff_s REAL,
    last_status INTEGER,
    last_message TEXT,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS deauthorized_connections (
    name TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    credentials_hash TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    delivery INTEGER NOT NULL UNIQUE REFERENCES deliveries(id),
    queue_arn TEXT NOT NULL,
    attributes TEXT NOT NULL,
    at REAL NOT NULL
);
"""
SCHEMA_VERSION = "1"
"""Tables added since (deauthorized_connections) are created in older databases as they open."""
Durability = Literal["normal", "full"]
DURABILITY: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}
"""`--durability` -> SQLite `synchronous` mode under WAL (see the module docstring)."""
ENDED_STATES = ("delivered", "dlq", "dropped")
HASH_ITERATIONS = 200_000
"""PBKDF2-SHA256 rounds over a deauthorized connection's credentials (slow to brute-force)."""


@dataclass(frozen=True)
class NewEvent:
    """An event to accept, with the (rule name, target id) pairs it matched. Times: epoch s.

    `rows` optionally fixes the row ids: (event row, one delivery id per target), as
    `StoreWriter` assigns them ahead of the commit; without it SQLite picks them.
    """

    event_id: str
    bus: str
    body: str
    accepted_at: float
    targets: list[tuple[str, str]]
    rows: tuple[int, tuple[int, ...]] | None = None


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery not yet ended, as stored. `ready_at`/`accepted_at` are epoch seconds."""

    id: int
    event_id: str
    bus: str
    body: str
    accepted_at: float
    rule: str
    target: str
    ready_at: float
    retries_done: int
    previous_backoff_s: float | None
    last_status: int | None
    last_message: str | None


@dataclass(frozen=True)
class Retry:
    """A delivery waits for another attempt from `ready_at` (epoch s), after `last_status`."""

    delivery: int
    ready_at: float
    retries_done: int
    previous_backoff_s: float | None
    last_status: int
    last_message: str


@dataclass(frozen=True)
class Finish:
    """A delivery ended: `delivered`, `dlq` (with its DLQ attributes) or `dropped`."""

    delivery: int
    state: str
    retries_done: int
    at: float
    queue_arn: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deauthorized:
    """A connection became DEAUTHORIZED at `at` (epoch s). `credentials` are its settings with
    their secrets; only a salted hash of them is stored."""

    name: str
    reason: str
    at: float
    credentials: bytes = field(repr=False, default=b"")


Operation = NewEvent | Retry | Finish | Deauthorized | None  # None: a barrier (waits for a commit)


class Store:
    """The SQLite database of one core (WAL; `durability` as in `DURABILITY`)."""

    def __init__(self, path: str | Path, durability: Durability = "normal") -> None:
        self.path = Path(path)
        self.durability = durability
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
            found = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as err:
            raise InputError(str(path), None, f"not a usable core database ({err})") from None
        if found is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif found[0] != SCHEMA_VERSION:
            raise InputError(str(path), None, f"database schema {found[0]} is not {SCHEMA_VERSION}")
        (events,) = self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        (deliveries,) = self.db.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()
        self.last_rows = (int(events), int(deliveries))
        """The highest event row and delivery id when the database was opened."""

    def close(self) -> None:
        self.db.close()

    def apply(self, operations: list[Operation]) -> list[Any]:
        """Apply operations in one transaction; a NewEvent's result is its delivery ids."""
        results: list[Any] = []
        with self._transaction():
            for op in operations:
                results.append(self._apply(op))
        return results

    def accept(self, event: NewEvent) -> list[int]:
        """Accept one event (committed on return); returns its delivery ids."""
        result: list[int] = self.apply([event])[0]
        return result

    def _apply(self, op: Operation) -> Any:
        if isinstance(op, NewEvent):
            event_row, delivery_ids = op.rows if op.rows is not None else (None, ())
            cursor = self.db.execute(
                "INSERT INTO events (id, event_id, bus, body, accepted_at) VALUES (?, ?, ?, ?, ?)",
                (event_row, op.event_id, op.bus, op.body, op.accepted_at),
            )
            ids = []
            for i, (rule, target) in enumerate(op.targets):
                row = self.db.execute(
                    "INSERT INTO deliveries (id, event, rule, target, state, ready_at)"
                    " VALUES (?, ?, ?, ?, 'pending', ?)",
                    (delivery_ids[i] if delivery_ids else None, cursor.lastrowid, rule, target,
                     op.accepted_at),
                )  # fmt: skip
                ids.append(int(row.lastrowid or 0))
            return ids
        if isinstance(op, Retry):
            self.db.execute(
                "UPDATE deliveries SET ready_at=?, retries_done=?, previous_backoff_s=?,"
                " last_status=?, last_message=? WHERE id=? AND state='pending'",
                (
                    op.ready_at,
                    op.retries_done,
                    op.previous_backoff_s,
                    op.last_status,
                    op.last_message,
                    op.delivery,
                ),
            )
        elif isinstance(op, Deauthorized):
            self.db.execute(
                "INSERT OR REPLACE INTO deauthorized_connections VALUES (?, ?, ?, ?)",
                (op.name, op.reason, _hash(op.credentials, os.urandom(16)), op.at),
            )
        elif isinstance(op, Finish):
            self.db.execute(
                "UPDATE deliveries SET state=?, retries_done=?, ended_at=?"
                " WHERE id=? AND state='pending'",
                (op.state, op.retries_done, op.at, op.delivery),
            )
            if op.state == "dlq":
                self.db.execute(
                    "INSERT OR REPLACE INTO dead_letters (delivery, queue_arn, attributes, at)"
                    " VALUES (?, ?, ?, ?)",
                    (op.delivery, op.queue_arn or "", json.dumps(op.attributes), op.at),
                )
        return None

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def deauthorized(
        self, credentials: dict[str, bytes]
    ) -> tuple[dict[str, tuple[str, float]], list[str]]:
        """Connections still DEAUTHORIZED, as name -> (reason, since epoch s), and those
        re-authorized now because their `credentials` (name -> settings) changed since."""
        still: dict[str, tuple[str, float]] = {}
        renewed: list[str] = []
        rows = self.db.execute(
            "SELECT name, reason, credentials_hash, at FROM deauthorized_connections"
        )
        for name, reason, stored, at in rows.fetchall():
            if name not in credentials:
                continue
            salt = bytes.fromhex(stored.split("$")[0])
            if hmac.compare_digest(_hash(credentials[name], salt), stored):
                still[name] = (reason, at)
            else:
                renewed.append(name)
        with self._transaction():
            for name in renewed:
                self.db.execute("DELETE FROM deauthorized_connections WHERE name=?", (name,))
        return still, renewed

    def pending(self) -> list[PendingDelivery]:
        """Every delivery not yet ended, oldest ready first."""
        rows = self.db.execute(
            "SELECT d.id, e.event_id, e.bus, e.body, e.accepted_at, d.rule, d.target,"
            " d.ready_at, d.retries_done, d.previous_backoff_s, d.last_status, d.last_message"
            " FROM deliveries d JOIN events e ON e.id = d.event"
            " WHERE d.state = 'pending' ORDER BY d.ready_at, d.id"
        ).fetchall()
        return [PendingDelivery(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of accepted events and of deliveries in each state."""
        result = {"events": self.db.execute("SELECT count(*) FROM events").fetchone()[0]}
        for state in ("pending", *ENDED_STATES):
            result[state] = 0
        for state, n in self.db.execute("SELECT state, count(*) FROM deliveries GROUP BY state"):
            result[state] = n
        return result

    def dead_letters(self) -> Iterator[dict[str, Any]]:
        """DLQ records in order: original event, attributes, queue, delivery id, time (UTC)."""
        rows = self.db.execute(
            "SELECT q.delivery, q.queue_arn, q.attributes, q.at, e.body"
            " FROM dead_letters q JOIN deliveries d ON d.id = q.delivery"
            " JOIN events e ON e.id = d.event ORDER BY q.id"
        )
        for delivery, queue_arn, attributes, at, body in rows:
            yield {
                "event": json.loads(body),
                "attributes": json.loads(attributes),
                "dead_letter_queue": queue_arn,
                "delivery_id": delivery,
                "dead_lettered_at": datetime.fromtimestamp(at, UTC).isoformat(),
            }

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery with its state (for inspection and tests)."""
        cursor = self.db.execute(
            "SELECT d.id, e.event_id, e.body, d.rule, d.target, d.state, d.retries_done"
            " FROM deliveries d JOIN events e ON e.id = d.event ORDER BY d.id"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]


def _hash(credentials: bytes, salt: bytes) -> str:
    """`salt$hash` of a connection's credentials (PBKDF2-SHA256, `HASH_ITERATIONS` rounds)."""
    digest = hashlib.pbkdf2_hmac("sha256", credentials, salt, HASH_ITERATIONS)
    return f"{salt.hex()}${digest.hex()}"


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


T = TypeVar("T")


RECORD_DELAY_S = 0.01
"""How long queued retries and ends may wait for company before they are committed alone."""


class StoreWriter:
    """Runs a Store in one worker thread; queued operations are committed together.

    `accept` waits for its commit (persist before acknowledging); `record` queues a retry or
    an end and returns at once; `drain` waits until everything queued is committed. A commit
    starts as soon as someone waits for one; retries and ends alone wait up to
    `RECORD_DELAY_S`, so that at 1,000 attempts/s they share commits instead of taking a
    thread hop (and the GIL) each.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-store")
        self._queue: list[tuple[Operation, asyncio.Future[Any] | None]] = []
        self._wakeup = asyncio.Event()
        self._waited_for = asyncio.Event()  # an accept or a drain is queued
        self._last_event, self._last_delivery = store.last_rows
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    async def call(self, function: Callable[[], T]) -> T:
        """Run a function (e.g. a read) in the store's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def accept(self, events: list[NewEvent]) -> list[list[int]]:
        """Persist events with their deliveries; returns their delivery ids once committed."""
        ids, committed = self.accept_soon(events)
        await committed
        return ids

    def accept_soon(self, events: list[NewEvent]) -> tuple[list[list[int]], asyncio.Future[Any]]:
        """Queue events for the next commit: their delivery ids now, and the commit to await.

        The ids are final (this writer is the database's only one while it runs), so the
        deliveries can be dispatched while the commit is still under way.
        """
        ids: list[list[int]] = []
        committed: asyncio.Future[Any] | None = None
        for i, event in enumerate(events):
            event_row = self._last_event = self._last_event + 1
            first = self._last_delivery + 1
            self._last_delivery += len(event.targets)
            rows = tuple(range(first, self._last_delivery + 1))
            ids.append(list(rows))
            wait = i == len(events) - 1  # the batch shares one transaction: one future for it
            committed = self._enqueue(replace(event, rows=(event_row, rows)), wait=wait)
        if committed is None:
            committed = self._enqueue(None, wait=True)
        assert committed is not None
        return ids, committed

    def record(self, operation: Retry | Finish | Deauthorized) -> None:
        """Queue a delivery's retry or end (or a connection's state) for the next commit."""
        self._enqueue(operation, wait=False)

    async def drain(self) -> None:
        """Wait until every queued operation is committed; raise if a commit failed."""
        barrier = self._enqueue(None, wait=True)
        assert barrier is not None
        await barrier
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Drain, stop the worker and close the database."""
        try:
            if self._task is not None:
                await self.drain()
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
                self._task = None
            await asyncio.get_running_loop().run_in_executor(self._executor, self.store.close)
            self._executor.shutdown(wait=True)

    def _enqueue(self, op: Operation, wait: bool) -> asyncio.Future[Any] | None:
        future = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append((op, future))
        self._wakeup.set()
        if wait:
            self._waited_for.set()
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if not self._waited_for.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._waited_for.wait(), RECORD_DELAY_S)
            self._wakeup.clear()
            self._waited_for.clear()
            batch, self._queue = self._queue, []  # what comes meanwhile sets the events again
            operations: list[Operation] = [op for op, _ in batch if op is not None]
            try:
                apply = self.store.apply
                results = await loop.run_in_executor(self._executor, apply, operations)
            except Exception as err:  # disk full, I/O error: fail the waiters, keep going
                self.error = err
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(err)
                continue
            answers = iter(results)
            for op, future in batch:
                answer = next(answers) if op is not None else None
                if future is not None and not future.done():
                    future.set_result(answer)
