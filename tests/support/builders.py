"""Builders shared by the tests: tiny scenarios, a list sink, reference implementations, the
design's example scenario, synthetic validation observations, attempt-record chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sim.records import COLUMNS, Chunk, concat
from sim.results.accumulator import DELAY_BINS
from sim.scenario.loading import build_scenario
from sim.scenario.model import Scenario
from sim.validation.observe import SCALARS, SERIES, Observation


def chunk(**columns: Any) -> Chunk:
    """An attempt-record chunk of the given columns; the others zero, or NaN for times."""
    n = len(columns["event_id"])
    out = {name: np.zeros(n, dtype=dtype) for name, dtype in COLUMNS.items()}
    for name in ("arrival_at", "ready_at", "dispatch_at", "complete_at", "next_ready_at"):
        out[name] = np.full(n, np.nan)
    for name, values in columns.items():
        out[name] = np.asarray(values, dtype=COLUMNS[name])
    return out


def assert_same_attempt_log(fast: Chunk, slow: Chunk) -> None:
    """Two engines' attempt logs (rows in the same order) agree row by row: integer columns
    exactly, times to 1e-9 s (sums taken in another order)."""
    assert fast["event_id"].size == slow["event_id"].size
    for name, column in fast.items():
        if column.dtype.kind == "f":
            np.testing.assert_allclose(slow[name], column, rtol=0, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_array_equal(slow[name], column, err_msg=name)


def scenario(**overrides: Any) -> Scenario:
    """A tiny valid scenario; keyword arguments replace top-level keys."""
    data: dict[str, Any] = {
        "name": "t",
        "horizon": 60,
        "seed": 3,
        "replications": 2,
        "arrivals": [{"kind": "constant", "rate_per_second": 5}],
        "destination": {"invocation_rate_limit_per_second": 10},
        "endpoint": {"latency": {"kind": "constant", "value": 0}},
    }
    data.update(overrides)
    return build_scenario(data, source="test", base_dir=Path("."))


def trace_scenario(tmp_path: Path, times: list[float], **overrides: Any) -> Scenario:
    """A scenario replaying exactly `times` (seconds) from a CSV trace."""
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s\n" + "\n".join(repr(float(t)) for t in times) + "\n")
    arrivals = [{"kind": "trace", "path": str(path), "column": "arrival_s"}]
    return scenario(arrivals=arrivals, **overrides)


class ListSink:
    """Collects what an engine emits."""

    def __init__(self) -> None:
        self.arrival_times: list[np.ndarray] = []
        self.chunks: list[dict[str, np.ndarray]] = []

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.arrival_times.append(times)

    def attempts(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunks.append(chunk)

    def rows(self) -> dict[str, np.ndarray]:
        """All attempt rows, ordered by event then attempt."""
        merged = concat(self.chunks)
        order = np.lexsort((merged["attempt"], merged["event_id"]))
        return {name: column[order] for name, column in merged.items()}


def explicit_bucket(ready, rate, capacity):
    """Independent reference: a bucket holding a token count, refilled continuously, FIFO."""
    tokens, last, previous, out = capacity, 0.0, 0.0, []
    for a in ready:
        t = max(a, previous)
        tokens = min(capacity, tokens + rate * (t - last))
        last = t
        if tokens < 1:
            wait = (1 - tokens) / rate
            t += wait
            tokens, last = 1.0, t
        tokens -= 1
        previous = t
        out.append(t)
    return np.array(out)


DESIGN_EXAMPLE = """
name: burst
horizon: 24h
seed: 7
replications: 10
arrivals:
  - {kind: constant, rate_per_second: 200}
  - {kind: burst, start: 2h, duration: 10m, rate_per_second: 5000}
  - {kind: diurnal, mean_per_second: 150, amplitude: 0.6, peak_at: 14h}
  - {kind: counts, path: per-minute.csv, time_column: timestamp, count_column: events}
  - {kind: trace, path: arrivals.csv, column: arrival_s}
destination:
  name: partner-webhook
  invocation_rate_limit_per_second: 300
  burst_capacity: 300
  timeout: 5s
  throttle_order: fifo
endpoint:
  latency: {kind: lognormal, median: 120ms, p99: 900ms}
  responses: {200: 0.984, 429: 0.005, 503: 0.01, 400: 0.001}
  timeout_probability: 0.002
  retry_after: {429: 30s}
  capacity: {concurrency: 200, queue: 400, overload_status: 503}
  incidents:
    - {start: 6h, duration: 30m, responses: {503: 1.0}}
retry_policy:
  maximum_event_age: 24h
  maximum_retry_attempts: 185
  backoff: {base: 1s, multiplier: 2, cap: 15m, jitter: full}
  retry_statuses: [409, 429, 5xx]
dead_letter_queue: true
sample_every: 1m
slo: {max_p99_delivery_delay: 15m, max_dropped_fraction: 0}
"""


def synthetic(n: int, nan_share: dict[str, float], seed: int = 0) -> list[Observation]:
    """n model-like observations: normal scalars, 3 bins a series, some items NaN in a share."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scalars = {name: float(rng.normal(100, 10)) for name in SCALARS}
        for name, share in nan_share.items():
            if i < round(share * n):
                scalars[name] = math.nan
        histogram = rng.multinomial(200, np.full(DELAY_BINS.size - 1, 1 / (DELAY_BINS.size - 1)))
        out.append(
            Observation(
                scalars=scalars,
                series={name: rng.normal(50, 5, 3) for name in SERIES},
                delay_histogram=histogram,
                bin_end_s=np.array([1.0, 2.0, 3.0]),
                arrivals=np.zeros(3),
                successes=np.zeros(3),
            )
        )
    return out
