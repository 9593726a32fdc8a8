"""Metrics from attempt records (design §6): the only place summaries and time series are computed.

`Accumulator` is a sink for either engine: it folds arrival times and attempt-record chunks
into per-bin counts as they stream by, so a replication with 20 M attempts needs no more
memory than its delays. `finish()` gives one replication's summary and time series;
`sim.results.tables` aggregates replications.

Counting is "as seen at the horizon": an event is delivered, dead-lettered or dropped once
the attempt (or age-out) that ended it completed before the horizon; otherwise it is pending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim import policy
from sim.records import Chunk
from sim.scenario.model import MAX_RETRY_ATTEMPTS, Scenario

COST_PER_INVOCATION_USD = 0.20 / 1e6
DELAY_BINS = np.concatenate(([0.0], np.logspace(-3, 6, 721)))
"""Edges of the delivery-delay histogram (seconds), used for CDF plots."""
SERIES = ("arrivals", "attempts", "successes", "retries", "dlq", "dropped")
LEVELS = ("backlog", "retry_pool", "in_flight")


@dataclass
class ReplicationResult:
    """What one replication produced: its summary metrics, time series and delay histogram."""

    replication: int
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    delay_histogram: np.ndarray
    attempts_per_event: np.ndarray
    records: list[Chunk] = field(default_factory=list)
    destination_series: pd.DataFrame | None = None
    """A bus's time series per destination (column `destination`); None for the single form."""


class Accumulator:
    """Sink that folds one replication's arrivals and attempt records into counts per time bin."""

    def __init__(
        self,
        scenario: Scenario,
        replication: int,
        keep_records: bool = False,
        burst: float | None = None,
    ) -> None:
        """`burst`: the backlog above which the line is congested (`time_to_drain_s`); default
        the destination's burst capacity (single form; a bus passes each part's)."""
        self.scenario = scenario
        self.burst = scenario.destination.burst if burst is None else burst
        self.replication = replication
        self.horizon = scenario.horizon
        self.sample_s = scenario.sample_every
        finest = max(self.horizon / 2e6, min(1.0, self.sample_s))
        self.fine_s = self.sample_s / math.ceil(self.sample_s / finest - 1e-9)  # divides it
        n_fine = math.ceil(self.horizon / self.fine_s)
        self.fine = {name: np.zeros(n_fine, dtype=np.int64) for name in _FINE_COUNTERS}
        self.n_arrived = 0
        self.delays: list[np.ndarray] = []
        self.counts: dict[str, int] = {}
        self.dlq_by_reason = np.zeros(len(policy.REASONS), dtype=np.int64)
        self.attempts_per_event = np.zeros(MAX_RETRY_ATTEMPTS + 3, dtype=np.int64)
        self.throttled = 0
        self.keep_records = keep_records
        self.records: list[Chunk] = []

    def _bins(self, times: np.ndarray) -> np.ndarray:
        """Each time's fine bin; a time at or past the horizon (or NaN) gets the bin just past
        the last, which `_add` never counts."""
        past = self.fine["arrivals"].size
        return np.where(times < self.horizon, times / self.fine_s, past).astype(np.int64)

    def _add(self, name: str, bins: np.ndarray) -> None:
        """Count bins (from `_bins`) into a fine counter, over the bins they span."""
        if bins.size:
            first = int(bins.min())
            counts = np.bincount(bins - first)
            target = self.fine[name][first:]
            target[: counts.size] += counts[: target.size]  # past the last bin: dropped

    def _count(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(n)

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.n_arrived += times.size
        self._add("arrivals", self._bins(times))

    def attempts(self, chunk: Chunk) -> None:
        if self.keep_records:
            self.records.append(chunk)
        outcome, final = chunk["outcome"], chunk["final"]
        complete = chunk["complete_at"]
        sent = ~np.isin(outcome, policy.UNSENT_OUTCOMES)
        # each time column is binned once; the counters take the rows they count
        dispatched, completed = self._bins(chunk["dispatch_at"]), self._bins(complete)
        self._add("attempts", dispatched[sent])
        self._add("retries", dispatched[sent & (chunk["attempt"] > 1)])
        self._add("left_backlog", np.where(sent, dispatched, completed))
        self._add("completed", completed[sent])
        waiting = final == policy.NO_FINAL
        self._add("to_retry_pool", completed[waiting])
        self._add("ready_again", self._bins(chunk["next_ready_at"][waiting]))
        ended = (final != policy.NO_FINAL) & (complete < self.horizon)
        self._add("ended_by_arrival", self._bins(chunk["arrival_at"][ended]))
        delivered = ended & (final == policy.FINAL_DELIVERED)
        self._add("successes", completed[sent & (outcome == policy.DELIVERED)])
        self._add("dlq", completed[ended & (final == policy.FINAL_DLQ)])
        self._add("dropped", completed[ended & (final == policy.FINAL_DROPPED)])
        self._count("InvocationAttempts", sent.sum())
        self._count(  # as seen at the horizon, like the `successes` series
            "SuccessfulInvocationAttempts",
            ((outcome == policy.DELIVERED) & (complete < self.horizon)).sum(),
        )
        self._count("RetryInvocationAttempts", (sent & (chunk["attempt"] > 1)).sum())
        self._count("events_delivered", delivered.sum())
        self._count("events_dlq", (ended & (final == policy.FINAL_DLQ)).sum())
        self._count("events_dropped", (ended & (final == policy.FINAL_DROPPED)).sum())
        self.throttled += int((chunk["dispatch_at"][sent] > chunk["ready_at"][sent] + 1e-9).sum())
        failed = ended & (final != policy.FINAL_DELIVERED)
        self.dlq_by_reason += np.bincount(
            chunk["final_reason"][failed & (final == policy.FINAL_DLQ)],
            minlength=len(policy.REASONS),
        )
        made = chunk["attempt"][ended].astype(np.int64) - (~sent[ended]).astype(np.int64)
        self.attempts_per_event += np.bincount(
            np.minimum(made, self.attempts_per_event.size - 1),
            minlength=self.attempts_per_event.size,
        )
        self.delays.append(
            (complete[delivered] - chunk["arrival_at"][delivered]).astype(np.float32)
        )

    def finish(self) -> ReplicationResult:
        """This replication's summary metrics and time series."""
        levels = self._levels()
        delays = np.concatenate(self.delays) if self.delays else np.empty(0, np.float32)
        self.delays = [delays]  # one float32 copy; quantiles are taken in place, no float64 copy
        summary = self._summary(levels, delays)
        return ReplicationResult(
            replication=self.replication,
            summary=summary,
            timeseries=self._timeseries(levels),
            delay_histogram=np.histogram(delays, bins=DELAY_BINS)[0],
            attempts_per_event=self.attempts_per_event,
            records=self.records,
        )

    def _levels(self) -> dict[str, np.ndarray]:
        """Backlog, retry pool and in-flight at the end of each fine bin."""
        f = self.fine
        enter = np.cumsum(f["arrivals"] + f["ready_again"])
        return {
            "backlog": enter - np.cumsum(f["left_backlog"]),
            "retry_pool": np.cumsum(f["to_retry_pool"] - f["ready_again"]),
            "in_flight": np.cumsum(f["attempts"] - f["completed"]),
        }

    def _timeseries(self, levels: dict[str, np.ndarray]) -> pd.DataFrame:
        per_sample = max(1, round(self.sample_s / self.fine_s))
        n_fine = self.fine["arrivals"].size
        ends = np.arange(per_sample - 1, n_fine, per_sample)
        if ends.size == 0 or ends[-1] != n_fine - 1:
            ends = np.append(ends, n_fine - 1)
        starts = np.concatenate(([0], ends[:-1] + 1))
        frame = {
            "replication": self.replication,
            "time_s": np.minimum((np.arange(ends.size) + 1) * self.sample_s, self.horizon),
        }
        frame.update({name: levels[name][ends] for name in LEVELS})
        for name in SERIES:
            frame[name] = np.add.reduceat(self.fine[name], starts)
        return pd.DataFrame(frame)

    def _summary(self, levels: dict[str, np.ndarray], delays: np.ndarray) -> dict[str, Any]:
        c = self.counts
        attempts = c.get("InvocationAttempts", 0)
        ended = c.get("events_delivered", 0) + c.get("events_dlq", 0) + c.get("events_dropped", 0)
        backlog = levels["backlog"]
        quantiles = _delay_quantiles(delays)
        summary: dict[str, Any] = {
            "replication": self.replication,
            "events_arrived": self.n_arrived,
            "events_delivered": c.get("events_delivered", 0),
            "InvocationAttempts": attempts,
            "SuccessfulInvocationAttempts": c.get("SuccessfulInvocationAttempts", 0),
            "RetryInvocationAttempts": c.get("RetryInvocationAttempts", 0),
            "FailedInvocations": c.get("events_dlq", 0) + c.get("events_dropped", 0),
            "InvocationsSentToDlq": c.get("events_dlq", 0),
        }
        for code, reason in enumerate(policy.REASONS):
            if reason is not None:
                summary[f"InvocationsSentToDlq.{reason}"] = int(self.dlq_by_reason[code])
        summary.update(
            {
                "events_dropped": c.get("events_dropped", 0),
                "events_pending": self.n_arrived - ended,
                "backlog_peak": int(backlog.max(initial=0)),
                "backlog_peak_at_s": float((int(np.argmax(backlog)) + 1) * self.fine_s)
                if backlog.size
                else 0.0,
                "backlog_at_end": int(backlog[-1]) if backlog.size else 0,
                "in_flight_at_end": int(levels["in_flight"][-1]) if backlog.size else 0,
                "retry_pool_peak": int(levels["retry_pool"].max(initial=0)),
                "time_to_drain_s": self._time_to_drain(backlog),
                **quantiles,
                "delivery_delay_s.p99_with_pending": self._p99_with_pending(
                    delays, ended, quantiles["delivery_delay_s.p99"]
                ),
                "delivery_delay_s.max": float(delays.max()) if delays.size else math.nan,
                "delivery_delay_s.mean": float(delays.mean(dtype=np.float64))
                if delays.size
                else math.nan,
                "endpoint_peak_rps": self._peak_rps(),
                "throttled_fraction": self.throttled / attempts if attempts else 0.0,
                "dropped_fraction": c.get("events_dropped", 0) / max(self.n_arrived, 1),
                "dlq_fraction": c.get("events_dlq", 0) / max(self.n_arrived, 1),
                "estimated_cost_usd": attempts * COST_PER_INVOCATION_USD,
            }
        )
        return summary

    def _p99_with_pending(self, delays: np.ndarray, ended: int, p99: float) -> float:
        """p99 delivery delay counting each event still pending at the horizon at its age so
        far (to the time bin): what the SLO is checked on, so a backlog that has not drained
        by the horizon cannot hide its delays."""
        if self.n_arrived - ended <= 0:
            return p99
        f = self.fine
        ages = pending_ages(f["arrivals"], f["ended_by_arrival"], self.fine_s, self.horizon)
        return quantile_of_union(delays, ages, 0.99)

    def _peak_rps(self) -> float:
        """Most attempts sent in any 1 s window (sliding over the time bins), per second."""
        attempts = self.fine["attempts"]
        window = min(max(1, round(1.0 / self.fine_s)), attempts.size)
        if window > 1:
            total = np.concatenate(([0], np.cumsum(attempts)))
            attempts = total[window:] - total[:-window]
        return float(attempts.max(initial=0) / (window * self.fine_s))

    def _time_to_drain(self, backlog: np.ndarray) -> float:
        """Length of the congestion episode holding the backlog peak: from when the backlog first
        rose above one burst (the bucket's capacity) to when it fell back; NaN if it never did."""
        threshold = self.burst
        if not backlog.size or backlog.max() <= threshold:
            return 0.0
        peak = int(np.argmax(backlog))
        below = backlog <= threshold
        before = np.flatnonzero(below[:peak])
        after = np.flatnonzero(below[peak:])
        if not after.size:
            return math.nan
        start = before[-1] + 1 if before.size else 0
        return float((peak + after[0] - start) * self.fine_s)


_FINE_COUNTERS = (
    "arrivals",
    "attempts",
    "retries",
    "successes",
    "dlq",
    "dropped",
    "left_backlog",
    "completed",
    "to_retry_pool",
    "ready_again",
    "ended_by_arrival",
)


def pending_ages(
    arrivals_per_bin: np.ndarray, ended_per_bin: np.ndarray, bin_s: float, horizon: float
) -> np.ndarray:
    """Ages at the horizon of the events still pending, ascending (float32, seconds): per
    arrival time bin, arrivals minus ended events, each aged from the end of its bin (a lower
    bound, exact to the bin)."""
    pending = np.maximum(arrivals_per_bin - ended_per_bin, 0)[::-1]
    ends = np.arange(pending.size, 0, -1) * bin_s
    return np.repeat(np.maximum(horizon - ends, 0.0).astype(np.float32), pending)


def quantile_of_union(values: np.ndarray, sorted_extra: np.ndarray, q: float) -> float:
    """np.quantile(concatenate((values, sorted_extra)), q) (linear method) without copying
    `values`: the two order statistics it needs lie among the largest N - floor(q (N-1)) of
    each part. Partitions `values` in place; `sorted_extra` must be ascending."""
    n, total = values.size, values.size + sorted_extra.size
    if total == 0:
        return math.nan
    position = q * (total - 1)
    below = math.floor(position)
    tail = total - below  # order statistics below .. total-1
    if n:
        values.partition(n - min(tail, n))
    candidates = np.sort(np.concatenate((values[n - min(tail, n) :], sorted_extra[-tail:])))
    low = float(candidates[candidates.size - tail])
    high = float(candidates[candidates.size - tail + 1]) if tail > 1 else low
    return low + (position - below) * (high - low)


def _delay_quantiles(delays: np.ndarray) -> dict[str, float]:
    """p50/p90/p99 of the delivery delays (float32, seconds), by one in-place partial sort."""
    names = ("delivery_delay_s.p50", "delivery_delay_s.p90", "delivery_delay_s.p99")
    if not delays.size:
        return dict.fromkeys(names, math.nan)
    values = np.quantile(delays, [0.5, 0.9, 0.99], overwrite_input=True, method="linear")
    return {name: float(v) for name, v in zip(names, values, strict=True)}
