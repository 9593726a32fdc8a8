"""The model against queueing theory: M/D/1 (S2 with b = 1), Little's law, zero-error delivery."""

import numpy as np
import pytest

from sim.des import simulate_replication
from sim.records import concat
from sim.runner.replications import run_replications
from tests.support.builders import ListSink, scenario


def md1(rate_in, horizon=21600, replications=4, **destination):
    s = scenario(
        horizon=horizon,
        replications=replications,
        arrivals=[{"kind": "constant", "rate_per_second": rate_in}],
        destination={"invocation_rate_limit_per_second": 10, "burst_capacity": 1, **destination},
        sample_every=1,
    )
    waits, results = [], run_replications(s, records=True, workers=1)
    for r in results:
        rows = concat(r.records)
        waits.append(rows["dispatch_at"] - rows["ready_at"])
    return s, results, np.concatenate(waits)


@pytest.mark.slow
def test_issue_md1_mean_wait_is_pollaczek_khinchine():
    """Poisson 8/s, rate 10/s, burst 1, zero latency, all 200: mean wait 0.2 s within 3 %."""
    _, _, waits = md1(8)
    assert waits.mean() == pytest.approx(0.2, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("load", [0.3, 0.5, 0.9])
def test_md1_across_loads(load):
    _, _, waits = md1(10 * load, horizon=7200 if load < 0.9 else 28800)
    expected = load / (2 * 10 * (1 - load))
    assert waits.mean() == pytest.approx(expected, rel=0.05 if load < 0.9 else 0.08)


@pytest.mark.slow
def test_littles_law_for_the_backlog():
    """Time-average number waiting for a token = arrival rate x mean wait (L = lambda W)."""
    s, results, waits = md1(9, horizon=14400)
    backlog = np.mean([r.timeseries["backlog"].mean() for r in results])
    arrival_rate = np.mean([r.summary["events_arrived"] for r in results]) / s.horizon
    assert backlog == pytest.approx(arrival_rate * waits.mean(), rel=0.05)


def test_zero_error_runs_deliver_everything_that_is_not_in_flight():
    s = scenario(
        horizon=600,
        arrivals=[
            {"kind": "constant", "rate_per_second": 50},
            {"kind": "burst", "start": 60, "duration": 30, "rate_per_second": 400},
        ],
        destination={"invocation_rate_limit_per_second": 100},
        endpoint={"latency": {"kind": "gamma", "mean": 0.05, "cv": 1}},
    )
    sink = ListSink()
    simulate_replication(s, 0, sink)
    rows = concat(sink.chunks)
    arrived = sum(t.size for t in sink.arrival_times)
    delivered = rows["complete_at"] < s.horizon
    assert (
        arrived - delivered.sum() < 10
    )  # only those dispatched in the last instants are still in flight
    assert (rows["attempt"] == 1).all()
