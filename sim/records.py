"""The attempt record of design §6, shared by both engines: compact column chunks, the `Sink`
they go to, and their DataFrame.

Engines emit chunks: dicts of equal-length NumPy arrays with the columns below, outcomes,
finals and reasons as small integer codes (see `sim.policy`), status 0/1 for timeout /
connection failure. `to_frame` turns chunks into the documented, readable table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sim.policy import FINALS, OUTCOMES, REASONS, STATUS_CONNECTION_ERROR

if TYPE_CHECKING:
    import pandas as pd

COLUMNS: dict[str, type] = {
    "replication": np.int32,
    "event_id": np.int64,
    "attempt": np.int16,
    "arrival_at": np.float64,
    "ready_at": np.float64,
    "dispatch_at": np.float64,
    "complete_at": np.float64,
    "status": np.int16,
    "outcome": np.int8,
    "retry_after_s": np.float64,
    "next_ready_at": np.float64,
    "final": np.int8,
    "final_reason": np.int8,
}
"""Column name -> dtype of an attempt chunk. Times are seconds since the run started."""

BUS_COLUMNS: dict[str, type] = {
    "rule": np.int16,
    "account_wait_s": np.float64,
}
"""Columns the model adds for a bus scenario (docs/bus.md): the delivery's rule (index in the
scenario's `rules`; `event_id` is then the bus event, shared by its fan-out) and the seconds
the attempt waited for an account token. A chunk without them — the single-destination form,
or the live core — is one rule's and waited for no account: `rule` 0, `account_wait_s` 0."""
BUS_DEFAULTS = {"rule": 0, "account_wait_s": 0.0}

Chunk = dict[str, np.ndarray]


class Sink(Protocol):
    """Where an engine's output goes: arrival times and attempt-record chunks, as they happen
    (`sim.results.accumulator.Accumulator` is the usual one).

    A sink may also define `deliveries(replication, rule, times)`: on a bus, the model then
    reports the arrival times of the events each rule matched (one delivery each), besides the
    bus's events in `arrivals` (`sim.results.bus.BusAccumulator` needs them)."""

    def arrivals(self, replication: int, times: np.ndarray) -> None: ...

    def attempts(self, chunk: Chunk) -> None: ...


def empty_chunk() -> Chunk:
    """A chunk with no rows."""
    return {name: np.empty(0, dtype=dtype) for name, dtype in COLUMNS.items()}


def column(chunk: Chunk, name: str) -> np.ndarray:
    """A column of a chunk; a bus column it lacks reads as its default (`BUS_DEFAULTS`)."""
    if name in chunk:
        return chunk[name]
    size = chunk["event_id"].size
    return np.full(size, BUS_DEFAULTS[name], dtype=BUS_COLUMNS[name])


def concat(chunks: Iterable[Chunk]) -> Chunk:
    """One chunk holding the rows of many, in order (with the bus columns if any chunk has them)."""
    chunks = list(chunks)
    if not chunks:
        return empty_chunk()
    names = list(COLUMNS) + [n for n in BUS_COLUMNS if any(n in c for c in chunks)]
    return {name: np.concatenate([column(c, name) for c in chunks]) for name in names}


def to_frame(
    chunks: Iterable[Chunk] | Chunk, rule_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """The attempt records as a DataFrame with readable outcome/final/reason and nullable status;
    a bus's records also get `rule` (named from `rule_names`) and `account_wait_s`."""
    import pandas as pd  # here: the engines, which only emit chunks, start without pandas

    chunk = chunks if isinstance(chunks, dict) else concat(chunks)
    frame = pd.DataFrame({name: np.asarray(chunk[name], dtype=COLUMNS[name]) for name in COLUMNS})
    if "rule" in chunk:
        rules = np.asarray(chunk["rule"], dtype=np.int64)
        if rule_names is not None:
            frame.insert(2, "rule", pd.Categorical.from_codes(rules, categories=list(rule_names)))
        else:
            frame.insert(2, "rule", rules)
    if "account_wait_s" in chunk:
        frame.insert(
            frame.columns.get_loc("dispatch_at") + 1, "account_wait_s", chunk["account_wait_s"]
        )
    status = frame["status"].astype("Int16")
    frame["status"] = status.mask(status <= STATUS_CONNECTION_ERROR)
    frame["outcome"] = _names(frame["outcome"], OUTCOMES)
    frame["final"] = _names(frame["final"], FINALS)
    frame["final_reason"] = _names(frame["final_reason"], REASONS)
    return frame


def _names(codes: pd.Series, names: tuple[str | None, ...]) -> pd.Series:
    import pandas as pd

    labels = [n for n in names if n is not None]
    offset = 1 if names[0] is None else 0
    values = pd.Categorical.from_codes(codes.to_numpy().astype(int) - offset, categories=labels)
    return pd.Series(values, index=codes.index)
