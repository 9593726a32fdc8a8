"""Attempt records of the live core (design §6) buffered into chunks for a sink.

Rows are appended one attempt at a time and handed to the sink as a chunk (a dict of NumPy
arrays in the shared `sim.records` schema) every `FLUSH_ROWS` rows or when flushed.
"""

from __future__ import annotations

import math

import numpy as np

from sim.records import COLUMNS, Chunk, Sink

FLUSH_ROWS = 512


class Recorder:
    """Buffers attempt rows and arrival times for one sink (or none)."""

    def __init__(self, sink: Sink | None, replication: int = 0) -> None:
        self.sink = sink
        self.replication = replication
        self._rows: dict[str, list[float]] = {name: [] for name in COLUMNS}
        self.n_rows = 0

    def arrivals(self, times: list[float]) -> None:
        """Report arrival times (seconds since the core started)."""
        if self.sink is not None and times:
            self.sink.arrivals(self.replication, np.asarray(times, dtype=float))

    def row(
        self,
        *,
        event_id: int,
        attempt: int,
        arrival_at: float,
        ready_at: float,
        dispatch_at: float,
        complete_at: float,
        status: int,
        outcome: int,
        retry_after_s: float | None,
        next_ready_at: float,
        final: int,
        final_reason: int,
    ) -> None:
        """Add one attempt row; codes as in `sim.policy`, NaN for absent times."""
        self.n_rows += 1
        if self.sink is None:
            return
        values = {
            "replication": self.replication,
            "event_id": event_id,
            "attempt": attempt,
            "arrival_at": arrival_at,
            "ready_at": ready_at,
            "dispatch_at": dispatch_at,
            "complete_at": complete_at,
            "status": status,
            "outcome": outcome,
            "retry_after_s": math.nan if retry_after_s is None else retry_after_s,
            "next_ready_at": next_ready_at,
            "final": final,
            "final_reason": final_reason,
        }
        for name, value in values.items():
            self._rows[name].append(value)
        if len(self._rows["event_id"]) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand buffered rows to the sink as one chunk."""
        if self.sink is None or not self._rows["event_id"]:
            return
        chunk: Chunk = {
            name: np.asarray(values, dtype=COLUMNS[name]) for name, values in self._rows.items()
        }
        self._rows = {name: [] for name in COLUMNS}
        self.sink.attempts(chunk)
