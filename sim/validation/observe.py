"""What validation compares: one observation per run, the same for a model replication and the
live run, computed by the shared results code (`sim.results.accumulator.Accumulator`) from attempt records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import policy
from sim.des import simulate_replication
from sim.records import Chunk, concat
from sim.results.accumulator import Accumulator
from sim.runner.executor import Executor, Progress
from sim.scenario.model import Scenario

OUTCOME_METRICS = {
    f"attempts.{policy.OUTCOMES[code]}": code
    for code in (
        policy.DELIVERED,
        policy.RETRY,
        policy.FAILED,
        policy.TIMEOUT,
        policy.CONNECTION_ERROR,
    )
}
"""Invocation attempts by outcome (`attempts.retry` = a retryable HTTP status)."""

SUMMARY_METRICS = (
    "events_arrived",
    "RetryInvocationAttempts",
    "events_delivered",
    *(f"InvocationsSentToDlq.{reason}" for reason in policy.REASONS if reason is not None),
    "events_dropped",
    "events_pending",
    "delivery_delay_s.p50",
    "delivery_delay_s.p90",
    "delivery_delay_s.p99",
    "backlog_peak",
    "retry_pool_peak",
)
"""Summary metrics compared, by their `sim.results.accumulator` names."""

SCALARS = (*SUMMARY_METRICS[:1], *OUTCOME_METRICS, *SUMMARY_METRICS[1:])

SERIES = {
    "backlog": "events waiting for a token (end of bin)",
    "retry_pool": "events waiting out a retry delay (end of bin)",
    "requests": "requests reaching the endpoint per bin",
}
"""Time series compared, per `sample_every` bin."""


class Collector:
    """A sink (for either engine) keeping arrival times and attempt-record chunks as they come."""

    def __init__(self) -> None:
        self.arrival_times: list[np.ndarray] = []
        self.chunks: list[Chunk] = []

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.arrival_times.append(np.asarray(times, dtype=float))

    def attempts(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)


@dataclass
class Observation:
    """One run's compared quantities: scalar metrics, per-bin series and its delay histogram."""

    scalars: dict[str, float]
    series: dict[str, np.ndarray]
    delay_histogram: np.ndarray  # counts on `sim.results.accumulator.DELAY_BINS`
    bin_end_s: np.ndarray
    arrivals: np.ndarray  # per bin
    successes: np.ndarray  # per bin


def outcome_counts(records: Chunk) -> dict[str, float]:
    """Sent attempts per outcome (`OUTCOME_METRICS`)."""
    sent = ~np.isin(records["outcome"], policy.UNSENT_OUTCOMES)
    return {
        name: float((sent & (records["outcome"] == code)).sum())
        for name, code in OUTCOME_METRICS.items()
    }


def bin_edges(frame: pd.DataFrame) -> np.ndarray:
    """Edges of a time-series frame's bins (its `time_s` are their ends; the last may be short)."""
    ends = frame["time_s"].to_numpy()
    return np.append(np.concatenate(([0.0], ends[:-1])), ends[-1])


def series_of(frame: pd.DataFrame, edges: np.ndarray, requests_at: np.ndarray) -> dict[str, Any]:
    """The compared SERIES of a time-series frame, with the requests counted per bin."""
    requests = np.histogram(requests_at[requests_at < edges[-1]], bins=edges)[0]
    return {
        "backlog": frame["backlog"].to_numpy(dtype=float),
        "retry_pool": frame["retry_pool"].to_numpy(dtype=float),
        "requests": requests.astype(float),
    }


def observe(
    scenario: Scenario,
    replication: int,
    arrival_times: Iterable[np.ndarray],
    chunks: Iterable[Chunk],
    requests_at: np.ndarray | None = None,
) -> Observation:
    """Summarize one run's records. `requests_at`: endpoint arrival times, if measured there
    (live); otherwise the dispatch times of the attempts stand for them (model)."""
    sink = Accumulator(scenario, replication)
    for times in arrival_times:
        sink.arrivals(replication, times)
    records = before_horizon(concat(chunks), scenario.horizon)
    sink.attempts(records)
    result = sink.finish()
    scalars = {name: float(result.summary[name]) for name in SUMMARY_METRICS}
    scalars.update(outcome_counts(records))
    frame = result.timeseries
    if requests_at is None:
        sent = ~np.isin(records["outcome"], policy.UNSENT_OUTCOMES)
        requests_at = records["dispatch_at"][sent]
    return Observation(
        scalars={name: scalars[name] for name in SCALARS},
        series=series_of(frame, bin_edges(frame), requests_at),
        delay_histogram=result.delay_histogram,
        bin_end_s=frame["time_s"].to_numpy(),
        arrivals=frame["arrivals"].to_numpy(dtype=float),
        successes=frame["successes"].to_numpy(dtype=float),
    )


def before_horizon(records: Chunk, horizon: float) -> Chunk:
    """The records the model can produce: attempts dispatched, and age-outs, before the horizon."""
    sent = ~np.isnan(records["dispatch_at"])
    keep = np.where(sent, records["dispatch_at"] < horizon, records["complete_at"] < horizon)
    return {name: column[keep] for name, column in records.items()}


def observe_replication(scenario: Scenario, replication: int) -> Observation:
    """Simulate one model replication and observe it."""
    sink = Collector()
    simulate_replication(scenario, replication, sink)
    return observe(scenario, replication, sink.arrival_times, sink.chunks)


def observe_replications(
    scenario: Scenario,
    first: int,
    stop: int,
    observe_one: Callable[[Scenario, int], Observation] = observe_replication,
) -> list[Observation]:
    """Simulate and observe model replications first..stop−1 (one task of `run_model`)."""
    return [observe_one(scenario, i) for i in range(first, stop)]


BATCHES_PER_WORKER = 8
"""`run_model` sends each worker about this many tasks: few enough that a scenario is pickled
a handful of times, not once per replication; enough for an even finish and a moving bar."""


def run_model(
    scenario: Scenario,
    replications: int,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    observe_one: Callable[[Scenario, int], Observation] = observe_replication,
) -> list[Observation]:
    """Observe model replications 0..replications−1 on `workers` processes (default: all cores),
    each with `observe_one` (a bus: `bus_observe.observe_bus_replication`, which the caller
    passes: that module builds on this one).

    The replications go out in batches; the observations are the same whatever the batching.
    """
    executor = Executor(workers)
    size = max(1, math.ceil(replications / (executor.workers * BATCHES_PER_WORKER)))
    tasks = [
        (scenario, i, min(i + size, replications), observe_one)
        for i in range(0, replications, size)
    ]
    batches = executor.gather(observe_replications, tasks, progress)
    return [observation for batch in batches for observation in batch]


def replaying(scenario: Scenario, times: np.ndarray, folder: Path) -> Scenario:
    """The scenario with its arrivals replaced by exactly `times` (a trace CSV in `folder`)."""
    from sim.scenario.loading import with_overrides

    path = folder / "live_arrivals.csv"
    path.write_text("arrival_s\n" + "".join(f"{float(t)!r}\n" for t in times))
    trace = {"kind": "trace", "path": str(path), "column": "arrival_s"}
    return with_overrides(scenario, {"arrivals": [trace]})
