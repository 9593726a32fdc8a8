"""Running the core as a service: events in (JSONL, stdin, PutEvents), until idle or stopped.

`run_core` is what `sim core run` calls: it starts a `DeliveryCore` (resuming whatever the
database still holds), optionally serves the PutEvents endpoint, submits the given events,
and returns when every accepted event has ended (`until_idle`) or `stop` is set.
`CsvRecords` is a sink that writes attempt records as CSV while the core runs; it creates
its file with the first rows (or at `close`), so a run that fails to start leaves none.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sim.live.config.loading import CoreConfig
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import Durability, Store
from sim.live.ingest import Envelope, submit_all
from sim.live.put_events import PutEventsServer
from sim.records import Chunk, Sink, to_frame

Events = AsyncIterator[tuple[str, dict[str, Any]]] | list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class RunSummary:
    """What a run left behind: events accepted in this run (any source), delivery states in the db."""

    accepted: int
    counts: dict[str, int]
    orphans: int


class CsvRecords:
    """A sink writing attempt records (readable `to_frame` columns) to a CSV file as they come."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None
        self.rows = 0

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        """Arrivals are not written; every accepted delivery has at least one record row."""

    def attempts(self, chunk: Chunk) -> None:
        header = self._file is None
        file = self._open()
        to_frame(chunk).to_csv(file, header=header, index=False)
        self.rows += len(chunk["event_id"])
        file.flush()

    def close(self) -> None:
        """Finish the file; with no rows it still gets the header, so it is a valid table."""
        if self._file is None:
            to_frame([]).to_csv(self._open(), index=False)
        self.discard()

    def discard(self) -> None:
        """Close without finishing: a run that never started leaves no file."""
        if self._file is not None:
            self._file.close()

    def _open(self) -> TextIO:
        if self._file is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
        return self._file


async def run_core(
    config: CoreConfig,
    db_path: str | Path,
    *,
    events: Events | None = None,
    listen: tuple[str, int] | socket.socket | None = None,
    until_idle: bool = False,
    sink: Sink | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
    durability: Durability = "normal",
) -> RunSummary:
    """Run the core: resume, ingest `events` and/or serve PutEvents on `listen`, then end.

    `listen` is (host, port) or a socket from `sim.live.put_events.listen_socket`. Ends when
    `until_idle` is set and the events are all in and every accepted delivery has ended, or
    when `stop` is set (deliveries not ended stay pending in the database).
    """
    stop = stop or asyncio.Event()
    core = DeliveryCore(config, db_path, sink, durability=durability)
    envelope = Envelope(config.sim.account, config.sim.region)
    server: PutEventsServer | None = None
    await core.start()
    try:
        if isinstance(listen, socket.socket):
            server = PutEventsServer(core, envelope, sock=listen)
        elif listen is not None:
            server = PutEventsServer(core, envelope, *listen)
        if server is not None:
            await server.start()
            if on_listening is not None:
                on_listening(server.url)
        if events is not None:
            await _until_stopped(submit_all(core, events), stop)
        if until_idle:
            await _until_stopped(core.wait_idle(), stop)
        else:
            await stop.wait()
    finally:
        if server is not None:
            await server.stop()
        await core.stop(grace_s=config.sim.timeout)
    counts = await asyncio.to_thread(_counts, Path(db_path))
    return RunSummary(core.accepted, counts, core.orphans)


async def _until_stopped(work: Coroutine[Any, Any, Any], stop: asyncio.Event) -> Any:
    """Run `work` unless `stop` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


def _counts(path: Path) -> dict[str, int]:
    store = Store(path)
    try:
        return store.counts()
    finally:
        store.close()
