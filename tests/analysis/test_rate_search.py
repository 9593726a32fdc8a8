"""The sizing search (bisection, sequential replications, common random numbers) against the
exhaustive grid, and the rule that decides a rate early."""

import math

import pandas as pd
import pytest

from sim.analysis.rate_search import FIRST_REPLICATIONS, sequential_state
from sim.analysis.sizing import size_rate_limit
from sim.scenario.loading import build_scenario


def burst_like(**overrides):
    """A day in miniature: 5/s steady, a 2-minute burst at 60/s, p99 and drop SLOs."""
    data = {
        "name": "mini-burst",
        "horizon": 1800,
        "seed": 5,
        "replications": 6,
        "arrivals": [
            {"kind": "constant", "rate_per_second": 5},
            {"kind": "burst", "start": 300, "duration": 120, "rate_per_second": 60},
        ],
        "destination": {"invocation_rate_limit_per_second": 10},
        "endpoint": {
            "latency": {"kind": "lognormal", "median": 0.1, "p99": 0.8},
            "responses": {200: 0.97, 503: 0.03},
        },
        "slo": {"max_p99_delivery_delay": 120, "max_dropped_fraction": 0},
    }
    data.update(overrides)
    return build_scenario(data, source="test")


@pytest.mark.slow
def test_search_recommends_what_the_exhaustive_grid_does_within_a_step():
    s = burst_like()
    search = size_rate_limit(s, min_rate=10, max_rate=80, step=2, workers=2)
    grid = size_rate_limit(s, min_rate=10, max_rate=80, step=2, workers=2, grid=True)
    assert search.met and grid.met
    assert abs(search.recommended - grid.recommended) <= 2
    assert grid.method == "grid" and grid.rates_evaluated == grid.lattice_size == 36
    assert (grid.evaluations["replications"] == 6).all()
    # the search evaluated few rates, and most of them with fewer than all replications
    assert search.rates_evaluated <= 1 + math.ceil(math.log2(36 + 1))
    assert search.replications_run < grid.replications_run / 4
    assert (search.evaluations["replications"] < 6).any()
    assert search.replications_run == search.evaluations["replications"].sum() == len(search.runs)
    assert f"Searched {search.rates_evaluated} of 36 rates" in search.effort()
    # common random numbers: a rate has the same per-replication numbers in both
    rate = search.recommended
    first = search.runs[search.runs["rate"] == rate].set_index("replication")
    same = grid.runs[grid.runs["rate"] == rate].set_index("replication").loc[first.index]
    pd.testing.assert_series_equal(first["events_arrived"], same["events_arrived"])
    pd.testing.assert_series_equal(first["backlog_peak"], same["backlog_peak"])


def _table(low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame({"ci_low": [low], "ci_high": [high]}, index=["m"])


def _check(high: float, limit: float = 10.0) -> dict:
    return {"slo": "s", "metric": "m", "limit": limit, "ci_high": high, "met": high <= limit}


@pytest.mark.parametrize(
    ("low", "high", "done", "state"),
    [
        (1.0, 9.0, FIRST_REPLICATIONS, "met"),  # CI below the limit
        (11.0, 20.0, FIRST_REPLICATIONS, "fails"),  # CI above it
        (8.0, 12.0, FIRST_REPLICATIONS, "open"),  # straddles: more replications
        (8.0, 12.0, 10, "fails"),  # at the maximum: the upper bound decides
        (1.0, 9.0, FIRST_REPLICATIONS - 1, "open"),  # too few to decide early
        (math.nan, math.nan, 2, "open"),
    ],
)
def test_a_rate_is_decided_as_soon_as_its_ci_clears_the_limit(low, high, done, state):
    assert sequential_state([_check(high)], _table(low, high), done, 10) == state
