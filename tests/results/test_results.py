"""Metrics from records: exact counts and levels on a hand-made chunk, aggregation, SLO verdict."""

import math

import numpy as np
import pandas as pd
import pytest

import sim
from sim import policy
from sim.results.accumulator import Accumulator, pending_ages
from sim.results.tables import aggregate, slo_verdict
from tests.support.builders import scenario, trace_scenario

NAN = math.nan


def chunk(rows):
    names = [
        "event_id",
        "attempt",
        "arrival_at",
        "ready_at",
        "dispatch_at",
        "complete_at",
        "status",
        "outcome",
        "retry_after_s",
        "next_ready_at",
        "final",
        "final_reason",
    ]
    columns = {name: np.array([r[i] for r in rows]) for i, name in enumerate(names)}
    columns["replication"] = np.zeros(len(rows), dtype=np.int32)
    return columns


def test_hand_made_records_give_exact_metrics():
    s = scenario(horizon=10, sample_every=1, dead_letter_queue=True)
    acc = Accumulator(s, 0)
    acc.arrivals(0, np.array([0.5, 1.0, 1.5, 1.9]))
    acc.attempts(
        chunk(
            [
                # event 0: delivered at first try, waited 0.5 s for a token
                (
                    0,
                    1,
                    0.5,
                    0.5,
                    1.0,
                    1.2,
                    200,
                    policy.DELIVERED,
                    NAN,
                    NAN,
                    policy.FINAL_DELIVERED,
                    0,
                ),
                # event 1: 503, retried at 4.0, delivered at 4.5
                (1, 1, 1.0, 1.0, 1.0, 1.5, 503, policy.RETRY, NAN, 4.0, policy.NO_FINAL, 0),
                (
                    1,
                    2,
                    1.0,
                    4.0,
                    4.2,
                    4.5,
                    200,
                    policy.DELIVERED,
                    NAN,
                    NAN,
                    policy.FINAL_DELIVERED,
                    0,
                ),
                # event 2: 400, dead-lettered
                (
                    2,
                    1,
                    1.5,
                    1.5,
                    1.5,
                    1.6,
                    400,
                    policy.FAILED,
                    NAN,
                    NAN,
                    policy.FINAL_DLQ,
                    policy.NOT_RETRYABLE,
                ),
                # event 3: aged out waiting at 8.0
                (
                    3,
                    1,
                    1.9,
                    1.9,
                    NAN,
                    8.0,
                    0,
                    policy.EXPIRED,
                    NAN,
                    NAN,
                    policy.FINAL_DLQ,
                    policy.MAXIMUM_EVENT_AGE,
                ),
            ]
        )
    )
    result = acc.finish()
    m = result.summary
    assert (m["events_arrived"], m["events_delivered"], m["InvocationAttempts"]) == (4, 2, 4)
    assert (m["SuccessfulInvocationAttempts"], m["RetryInvocationAttempts"]) == (2, 1)
    assert (
        m["InvocationsSentToDlq"],
        m["InvocationsSentToDlq.NonRetryableError"],
        m["InvocationsSentToDlq.MaximumEventAgeInSeconds"],
        m["events_pending"],
    ) == (2, 1, 1, 0)
    assert m["delivery_delay_s.max"] == pytest.approx(3.5) and m[
        "throttled_fraction"
    ] == pytest.approx(0.5)
    ts = result.timeseries.set_index("time_s")
    # just before t=2 (end of the bin [1, 2)): event 3 waits for a token; event 1 waits out its backoff; nothing in flight
    assert (ts.loc[2.0, "backlog"], ts.loc[2.0, "retry_pool"], ts.loc[2.0, "in_flight"]) == (
        1,
        1,
        0,
    )
    assert (ts.loc[5.0, "backlog"], ts.loc[5.0, "retry_pool"]) == (1, 0)
    assert ts.loc[9.0, "backlog"] == 0
    assert ts["arrivals"].sum() == 4 and ts["attempts"].sum() == 4 and ts["dlq"].sum() == 2
    assert result.attempts_per_event[:3].tolist() == [1, 2, 1]  # aged-out event made 0 attempts


def test_aggregate_gives_t_intervals():
    table = aggregate(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert table.loc["x", "mean"] == 2.5
    assert table.loc["x", "ci_high"] == pytest.approx(2.5 + half)


def test_slo_verdict_uses_the_upper_confidence_bound():
    s = scenario(slo={"max_p99_delivery_delay": 10, "max_dropped_fraction": 0})
    table = aggregate(
        pd.DataFrame(
            {
                "delivery_delay_s.p99_with_pending": [8.0, 9.0, 10.5],
                "dropped_fraction": [0.0, 0.0, 0.0],
                "dlq_fraction": [0.0, 0.0, 0.0],
            }
        )
    )
    verdict = {c["slo"]: c["met"] for c in slo_verdict(s, table)}
    assert verdict == {"max_p99_delivery_delay": False, "max_dropped_fraction": True}


def test_run_result_draws_the_report_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.runner.simulate import simulate

    result = simulate(
        scenario(
            horizon=120,
            arrivals=[{"kind": "constant", "rate_per_second": 20}],
            endpoint={
                "latency": {"kind": "constant", "value": 0.05},
                "responses": {200: 0.9, 503: 0.1},
            },
        ),
        replications=2,
        workers=1,
    )
    for name in (
        "plot_backlog",
        "plot_throughput",
        "plot_delay_cdf",
        "plot_dlq",
        "plot_attempts_per_event",
    ):
        ax = getattr(sim.plots, name)(result)
        assert ax.get_title(), name
        assert ax.lines or ax.patches or ax.collections, f"{name} drew nothing"
        _, mine = plt.subplots()
        assert getattr(sim.plots, name)(result, ax=mine) is mine
        plt.close("all")


def test_pending_ages_are_per_arrival_bin_from_the_bin_ends():
    arrivals = np.array([3, 0, 2, 1])  # bins of 0.5 s over a 2 s horizon
    assert pending_ages(arrivals, arrivals, 0.5, 2.0).size == 0
    assert pending_ages(arrivals, np.array([1, 0, 2, 0]), 0.5, 2.0).tolist() == [0.0, 1.5, 1.5]
    assert pending_ages(arrivals, np.zeros(4, int), 0.5, 2.0).tolist() == [
        0,
        0.5,
        0.5,
        1.5,
        1.5,
        1.5,
    ]


TWICE_THE_RATE = [i / 2 for i in range(200)]  # 2 events/s for 100 s


def _twice_the_rate(tmp_path, order):
    """The summary of TWICE_THE_RATE replayed against 1 token/s (burst 1), zero latency."""
    from sim.runner.simulate import simulate

    s = trace_scenario(
        tmp_path,
        TWICE_THE_RATE,
        horizon=100,
        replications=1,
        destination={
            "invocation_rate_limit_per_second": 1,
            "burst_capacity": 1,
            "throttle_order": order,
        },
        endpoint={"latency": {"kind": "constant", "value": 0}},
    )
    return simulate(s, workers=1).summary.iloc[0]


def test_the_p99_slo_counts_events_still_waiting_at_their_age(tmp_path):
    """2 events/s against 1 token/s: half are still waiting at the horizon, counted at their
    age (to the 1 s time bin)."""
    times = TWICE_THE_RATE
    summary = _twice_the_rate(tmp_path, "fifo")
    assert summary["events_delivered"] == 100 and summary["events_pending"] == 100
    delays = np.array([i / 2 for i in range(100)])  # event i leaves at i s
    ages = np.array([100 - (math.floor(t) + 1) for t in times[100:]], dtype=float)
    assert summary["delivery_delay_s.p99"] == pytest.approx(np.quantile(delays, 0.99))
    assert summary["delivery_delay_s.p99_with_pending"] == pytest.approx(
        np.quantile(np.concatenate((delays, ages)), 0.99)
    )


@pytest.mark.parametrize("seed", range(20))
def test_quantile_of_union_equals_numpy_on_the_concatenation(seed):
    from sim.results.accumulator import quantile_of_union

    rng = np.random.default_rng(seed)
    values = rng.exponential(size=rng.integers(0, 300)).astype(np.float32)
    extra = np.sort(rng.exponential(3, size=rng.integers(0 if values.size else 1, 300)))
    extra = extra.astype(np.float32)
    q = [0.0, 0.5, 0.99, 1.0, rng.random()][seed % 5]
    expected = np.quantile(np.concatenate((values, extra)).astype(np.float64), q)
    assert quantile_of_union(values.copy(), extra, q) == pytest.approx(expected, rel=1e-6)


def test_the_p99_slo_sees_old_events_left_waiting_by_lifo(tmp_path):
    """LIFO serves the newest first, so the events still waiting are the oldest: 2 events/s
    against 1 token/s for 100 s leaves the first half of the arrivals waiting."""
    summary = _twice_the_rate(tmp_path, "lifo")
    assert summary["events_pending"] == 100
    assert summary["delivery_delay_s.p99"] < 5  # the delivered are the freshest
    assert summary["delivery_delay_s.p99_with_pending"] > 90  # the oldest waited ~100 s


@pytest.mark.parametrize("sample_every", [0.1, 1.5, 2.5, 60, 420])
def test_time_series_rows_follow_sample_every_and_peak_rps_does_not(sample_every):
    """Rows every `sample_every` (the last one may be short), throughput plot per second of
    each row's width, and endpoint_peak_rps over 1 s windows whatever the sampling."""
    from sim.runner.simulate import simulate

    s = scenario(
        horizon=600,
        sample_every=sample_every,
        arrivals=[{"kind": "constant", "rate_per_second": 20}],
        destination={"invocation_rate_limit_per_second": 50, "burst_capacity": 50},
    )
    result = simulate(s, replications=2, workers=1)
    times = result.timeseries.groupby("replication")["time_s"].apply(list).iloc[0]
    expected = [
        min((i + 1) * sample_every, 600) for i in range(math.ceil(600 / sample_every - 1e-9))
    ]
    assert times == pytest.approx(expected, abs=1e-9)
    # 20/s Poisson against 50/s: the busiest second holds a few dozen attempts, never hundreds
    assert 20 < result.summary["endpoint_peak_rps"].max() < 60


def test_headline_says_when_some_replications_never_drained():
    from sim.report.run import headline
    from sim.runner.simulate import simulate

    result = simulate(
        scenario(
            horizon=300,
            replications=2,
            arrivals=[{"kind": "burst", "start": 0, "duration": 60, "rate_per_second": 40}],
            destination={"invocation_rate_limit_per_second": 10, "burst_capacity": 1},
        ),
        workers=1,
    )
    summary = result.summary.copy()
    summary.loc[summary.index[0], "time_to_drain_s"] = math.nan  # as if one had not drained
    result.summary = summary
    result.metrics = aggregate(summary)
    text = " ".join(headline(result))
    assert "had not drained by the horizon in 1 of 2 replications" in text


def test_one_replication_verdict_claims_no_confidence_bound():
    from sim.report.run import headline
    from sim.runner.simulate import simulate

    result = simulate(
        scenario(
            replications=1,
            endpoint={"latency": {"kind": "constant", "value": 0.05}},
            slo={"max_p99_delivery_delay": 0.001},
        ),
        workers=1,
    )
    assert "no confidence bound" in headline(result)[-1]
