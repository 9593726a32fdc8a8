"""CloudWatch metrics from attempt records: exact counts per period on a tiny log of records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import policy
from sim.records import COLUMNS
from sim.results.cloudwatch import Deliveries, MetricsSink, core_metric_data, period_metrics

NAN = math.nan
# event, attempt, arrival, dispatch, complete, status, outcome, final
ROWS = [
    (1, 1, 0.5, 0.5, 0.6, 200, policy.DELIVERED, policy.FINAL_DELIVERED),
    (2, 1, 1.0, 1.2, 1.3, 503, policy.RETRY, policy.NO_FINAL),
    (3, 1, 1.5, 1.5, 1.6, 400, policy.FAILED, policy.FINAL_DLQ),
    (2, 2, 1.0, 2.5, 2.6, 200, policy.DELIVERED, policy.FINAL_DELIVERED),
    (4, 1, 2.0, NAN, 3.5, 0, policy.EXPIRED, policy.FINAL_DROPPED),  # aged out waiting
]


def records() -> dict[str, np.ndarray]:
    columns = list(zip(*ROWS, strict=True))
    names = (
        "event_id",
        "attempt",
        "arrival_at",
        "dispatch_at",
        "complete_at",
        "status",
        "outcome",
        "final",
    )
    chunk = {
        name: np.asarray(values, dtype=COLUMNS[name])
        for name, values in zip(names, columns, strict=True)
    }
    n = len(ROWS)
    chunk.update(
        replication=np.zeros(n, np.int32),
        ready_at=chunk["arrival_at"].copy(),
        retry_after_s=np.full(n, NAN),
        next_ready_at=np.full(n, NAN),
        final_reason=np.zeros(n, np.int8),
    )
    return chunk


def test_each_metric_counts_its_records_at_its_instant():
    arrivals = np.array([0.5, 1.0, 1.5, 2.0])
    wanted = [
        ("MatchedEvents", "Sum"),
        ("InvocationAttempts", "Sum"),
        ("SuccessfulInvocationAttempts", "Sum"),
        ("RetryInvocationAttempts", "Sum"),
        ("InvocationsSentToDlq", "Sum"),
        ("FailedInvocations", "Sum"),
        ("IngestionToInvocationSuccessLatency", "Average"),
        ("IngestionToInvocationSuccessLatency", "SampleCount"),
        ("IngestionToInvocationSuccessLatency", "p99"),
    ]
    out = period_metrics(records(), arrivals, arrivals, np.arange(5.0), wanted)
    got = {
        metric if stat in ("Sum",) else f"{metric} {stat}": v.tolist()
        for (metric, stat), v in out.items()
    }
    assert got["MatchedEvents"] == [1, 2, 1, 0]
    assert got["InvocationAttempts"] == [1, 2, 1, 0]  # at dispatch; the age-out is no attempt
    assert got["SuccessfulInvocationAttempts"] == [1, 0, 1, 0]  # at completion
    assert got["RetryInvocationAttempts"] == [0, 0, 1, 0]
    assert got["InvocationsSentToDlq"] == [0, 1, 0, 0]
    assert got["FailedInvocations"] == [0, 1, 0, 1]  # dead-lettered or dropped, when they ended
    average = got["IngestionToInvocationSuccessLatency Average"]
    assert average[0] == pytest.approx(100.0) and average[2] == pytest.approx(1600.0)
    assert math.isnan(average[1]) and math.isnan(average[3])  # no success: no datapoint
    assert got["IngestionToInvocationSuccessLatency SampleCount"] == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="counts as Sum"):
        period_metrics(
            records(), arrivals, arrivals, np.arange(5.0), [("MatchedEvents", "Average")]
        )


def test_the_core_writes_each_rules_metrics_in_the_get_metric_data_shape():
    epoch = 1_767_225_600.0  # core time 0 at 2026-01-01T00:00:00Z + 10 s
    sink = MetricsSink()
    sink.attempts(records())
    # deliveries 1-3 are rule `a` (event rows 1, 2, 2: one event, two targets); 4 is rule `b`
    deliveries = Deliveries(
        id=np.array([1, 2, 3, 4]),
        event=np.array([1, 2, 2, 3]),
        rule=np.array(["a", "a", "a", "b"], dtype=object),
        accepted_at=epoch + 10 + np.array([0.5, 1.0, 1.5, 2.0]),
    )
    document = core_metric_data(sink.records(), deliveries, since_epoch=epoch, period_s=1.0)
    results = {r["Label"]: r for r in document["MetricDataResults"]}
    assert set(document) == {"MetricDataResults", "Messages"}
    matched = results["a MatchedEvents"]
    assert matched["Timestamps"] == [
        "2026-01-01T00:00:11+00:00",
        "2026-01-01T00:00:10+00:00",
    ]  # newest first
    assert matched["Values"] == [1, 1]  # deliveries 2 and 3 are one event
    assert results["a InvocationsCreated"]["Values"] == [2, 1]
    assert results["b FailedInvocations"]["Timestamps"] == ["2026-01-01T00:00:13+00:00"]
    assert results["b InvocationAttempts"]["Values"] == []  # zero counts are left out, as AWS does
    assert results["a IngestionToInvocationSuccessLatency p99"]["Values"] == pytest.approx(
        [1600, 100]
    )
    assert all(r["Id"].startswith("m") and r["StatusCode"] == "Complete" for r in results.values())
