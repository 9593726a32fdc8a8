"""The CloudWatch metrics EventBridge publishes (`AWS/Events`, per period, by rule), from attempt
records: what the live core writes with `--metrics` and what the backtest predicts from the
model's records — one definition for both.

Each metric counts records at one instant, in bins of `period_s`:

| metric | counted |
|---|---|
| MatchedEvents | events matched by the rule, at ingestion |
| InvocationsCreated | deliveries created (one per matched event and target), at ingestion |
| InvocationAttempts | requests sent, at dispatch |
| SuccessfulInvocationAttempts | attempts answered 2xx, at completion |
| RetryInvocationAttempts | requests sent that were retries (attempt > 1), at dispatch |
| InvocationsSentToDlq | events dead-lettered, when they ended |
| FailedInvocations | events that ended undelivered (dead-lettered or dropped), when they ended |
| IngestionToInvocationSuccessLatency | ingestion -> successful attempt's completion, ms, at completion |

Counts are statistic `Sum`; the latency is a statistic over the successes of each period
(`Average`, `Minimum`, `Maximum`, `SampleCount`, `Sum` or a percentile `p99`), NaN (no
datapoint) where there is none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.records import Chunk, Sink, concat
from sim.scenario.metric_data import COUNT_METRICS, LATENCY_METRIC, metric_data_document

CORE_STATS = {**dict.fromkeys(COUNT_METRICS, ("Sum",)), LATENCY_METRIC: ("Average", "p99")}
"""What the live core writes: every count (Sum) and the latency's Average and p99."""
KEPT = ("event_id", "attempt", "arrival_at", "dispatch_at", "complete_at", "outcome", "final")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?)$")


def check_stat(metric: str, stat: str) -> None:
    """ValueError unless the model can predict this statistic of this metric."""
    if metric == LATENCY_METRIC:
        if stat in ("Average", "Minimum", "Maximum", "SampleCount", "Sum") or _PERCENTILE.match(
            stat
        ):
            return
    elif metric in COUNT_METRICS and stat == "Sum":
        return
    raise ValueError(
        f"{metric} {stat}: the model predicts counts as Sum and {LATENCY_METRIC} "
        "as Average, Minimum, Maximum, SampleCount, Sum or a percentile (p99)"
    )


def period_metrics(
    records: Chunk,
    matched_at: np.ndarray,
    created_at: np.ndarray,
    edges: np.ndarray,
    wanted: Iterable[tuple[str, str]],
) -> dict[tuple[str, str], np.ndarray]:
    """Each wanted (metric, statistic) per bin [edges[i], edges[i+1]) (times in one time base)."""
    sent = ~np.isin(records["outcome"], policy.UNSENT_OUTCOMES)
    dispatch, complete = records["dispatch_at"], records["complete_at"]
    final = records["final"]
    delivered = sent & (records["outcome"] == policy.DELIVERED)
    at: dict[str, np.ndarray] = {
        "MatchedEvents": matched_at,
        "InvocationsCreated": created_at,
        "InvocationAttempts": dispatch[sent],
        "SuccessfulInvocationAttempts": complete[delivered],
        "RetryInvocationAttempts": dispatch[sent & (records["attempt"] > 1)],
        "InvocationsSentToDlq": complete[final == policy.FINAL_DLQ],
        "FailedInvocations": complete[np.isin(final, (policy.FINAL_DLQ, policy.FINAL_DROPPED))],
    }
    out: dict[tuple[str, str], np.ndarray] = {}
    for metric, stat in wanted:
        check_stat(metric, stat)
        if metric == LATENCY_METRIC:
            latency_ms = (complete[delivered] - records["arrival_at"][delivered]) * 1000.0
            out[(metric, stat)] = _binned_stat(complete[delivered], latency_ms, edges, stat)
        else:
            out[(metric, stat)] = np.histogram(at[metric], bins=edges)[0].astype(float)
    return out


def _binned_stat(times: np.ndarray, values: np.ndarray, edges: np.ndarray, stat: str) -> np.ndarray:
    index = np.searchsorted(edges, times, side="right") - 1
    inside = (index >= 0) & (index < edges.size - 1)
    index, values = index[inside], values[inside]
    n_bins = edges.size - 1
    count = np.bincount(index, minlength=n_bins).astype(float)
    if stat == "SampleCount":
        return count
    total = np.bincount(index, weights=values, minlength=n_bins)
    if stat == "Sum":
        return total
    result = np.full(n_bins, math.nan)
    if stat == "Average":
        np.divide(total, count, out=result, where=count > 0)
        return result
    order = np.lexsort((values, index))
    index, values = index[order], values[order]
    starts = np.searchsorted(index, np.arange(n_bins))
    ends = np.searchsorted(index, np.arange(n_bins), side="right")
    percentile = _PERCENTILE.match(stat)
    for i in np.flatnonzero(count):
        chunk = values[starts[i] : ends[i]]
        if stat == "Maximum":
            result[i] = chunk[-1]
        elif stat == "Minimum":
            result[i] = chunk[0]
        else:
            assert percentile is not None
            result[i] = np.quantile(chunk, float(percentile.group(1)) / 100.0)
    return result


class MetricsSink:
    """A sink keeping the columns of the attempt records the metrics need, and passing
    arrivals and records on to `inner` (e.g. the `--records` CSV writer)."""

    def __init__(self, inner: Sink | None = None) -> None:
        self.inner = inner
        self._chunks: list[Chunk] = []

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        if self.inner is not None:
            self.inner.arrivals(replication, times)

    def attempts(self, chunk: Chunk) -> None:
        self._chunks.append({name: chunk[name] for name in KEPT})
        if self.inner is not None:
            self.inner.attempts(chunk)

    def records(self) -> Chunk:
        """Every record received so far (the kept columns)."""
        if not self._chunks:
            empty = concat([])
            return {name: empty[name] for name in KEPT}
        return {name: np.concatenate([c[name] for c in self._chunks]) for name in KEPT}


@dataclass(frozen=True)
class Deliveries:
    """What the core's store says of each delivery: its id, event row, rule, ingestion (epoch s)."""

    id: np.ndarray
    event: np.ndarray
    rule: np.ndarray  # rule names (object array)
    accepted_at: np.ndarray


def core_metric_data(
    records: Chunk, deliveries: Deliveries, since_epoch: float, period_s: float
) -> dict[str, object]:
    """The GetMetricData response the live core's run would give: every rule's metrics per
    `period_s` (bins aligned to epoch multiples of it, as CloudWatch's minutes), labelled
    `RULE METRIC` (`RULE METRIC STAT` for the latency), zero counts and empty latencies left
    out as CloudWatch leaves them out.

    `records` carry core times; deliveries accepted at or after `since_epoch` count as matched
    and created in this run; the core's clock is placed on the epoch by each delivery's
    ingestion time (epoch in the store, core time in its records).
    """
    position = {int(d): i for i, d in enumerate(deliveries.id)}
    rows = np.array([position.get(int(e), -1) for e in records["event_id"]], dtype=np.int64)
    known = rows >= 0
    records = {name: column[known] for name, column in records.items()}
    rows = rows[known]
    offset = (
        float(np.median(deliveries.accepted_at[rows] - records["arrival_at"])) if rows.size else 0.0
    )
    timed = dict(records)
    for name in ("arrival_at", "dispatch_at", "complete_at"):
        timed[name] = records[name] + offset
    new = deliveries.accepted_at >= since_epoch
    times = np.concatenate(
        (deliveries.accepted_at[new], timed["dispatch_at"], timed["complete_at"])
    )
    times = times[np.isfinite(times)]
    if not times.size:
        return metric_data_document([])
    first = math.floor(times.min() / period_s) * period_s
    n_bins = math.floor((times.max() - first) / period_s) + 1
    edges = first + period_s * np.arange(n_bins + 1)
    series: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for rule in dict.fromkeys(deliveries.rule[new].tolist() + deliveries.rule[rows].tolist()):
        mine = deliveries.rule[rows] == rule
        chunk = {name: column[mine] for name, column in timed.items()}
        created = new & (deliveries.rule == rule)
        _, first_of_event = np.unique(deliveries.event[created], return_index=True)
        matched = deliveries.accepted_at[created][first_of_event]
        wanted = [(m, s) for m, stats in CORE_STATS.items() for s in stats]
        values = period_metrics(chunk, matched, deliveries.accepted_at[created], edges, wanted)
        for (metric, stat), per_bin in values.items():
            keep = np.isfinite(per_bin) & ((per_bin != 0) | (metric == LATENCY_METRIC))
            label = f"{rule} {metric}" + (f" {stat}" if metric == LATENCY_METRIC else "")
            series.append((label, f"m{len(series)}", edges[:-1][keep], per_bin[keep]))
    return metric_data_document(series)


def model_metrics(
    records: Chunk, arrivals: np.ndarray, edges: np.ndarray, wanted: Mapping[str, Iterable[str]]
) -> dict[tuple[str, str], np.ndarray]:
    """`period_metrics` of one model replication (one rule, one target: every arrival is one
    matched event and one created delivery)."""
    pairs = [(metric, stat) for metric, stats in wanted.items() for stat in stats]
    return period_metrics(records, arrivals, arrivals, edges, pairs)
