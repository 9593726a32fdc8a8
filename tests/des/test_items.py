"""Columns of waiting deliveries (sim.des.items) and what the faster engine builds on them: the
merge of sorted runs, the reuse of a block's decisions across reschedulings, the release of
arrival windows ahead of simulated time."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.des import engine, lane
from sim.des.items import Items, concat, empty, merge, sort_by_ready
from tests.support.builders import ListSink, scenario


def items(ready: list[float], first_id: int = 0) -> Items:
    n = len(ready)
    ready_at = np.array(ready, dtype=float)
    return Items(
        ready_at,
        ready_at - 1.0,
        np.arange(first_id, first_id + n, dtype=np.int64),
        np.zeros(n, dtype=np.int16),
        np.full(n, np.nan),
    )


times = st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), max_size=30)


@settings(max_examples=80, deadline=None)
@given(times, times)
def test_merge_is_a_stable_sort_of_the_concatenation(first, second):
    a = sort_by_ready(items(first))
    b = items(second, first_id=100)
    merged, from_first = merge(a, sort_by_ready(b))
    both = concat([a, b])
    order = np.argsort(both.ready_at, kind="stable")
    for name in ("ready_at", "arrival_at", "event_id", "retries_done"):
        np.testing.assert_array_equal(merged.column(name), both.column(name)[order])
    np.testing.assert_array_equal(from_first, order < a.size)


def test_rows_round_trip_and_selection():
    some = items([0.0, 1.0, 2.0])
    again = Items.from_rows(some.rows())
    for name in ("ready_at", "arrival_at", "event_id", "retries_done", "previous_backoff_s"):
        np.testing.assert_array_equal(again.column(name), some.column(name))
        assert again.column(name).dtype == some.column(name).dtype
    assert some[np.array([False, True, True])].event_id.tolist() == [1, 2]
    assert some[1:].size == 2 and empty().size == 0 and Items.from_rows([]).size == 0


def busy(rate: float, horizon: float = 1500):
    """Low-rate traffic with retries, a burst and age-outs: blocks span many arrival windows."""
    return scenario(
        horizon=horizon,
        arrivals=[
            {"kind": "constant", "rate_per_second": rate},
            {"kind": "burst", "start": 600, "duration": 120, "rate_per_second": 20 * rate},
        ],
        destination={"invocation_rate_limit_per_second": 3 * rate, "burst_capacity": 5},
        endpoint={
            "latency": {"kind": "lognormal", "median": 0.2, "p99": 2},
            "responses": {200: 0.9, 503: 0.08, 400: 0.02},
            "timeout_probability": 0.01,
        },
        retry_policy={"maximum_event_age": 900},
        dead_letter_queue=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_releasing_arrivals_ahead_changes_no_record(rate, monkeypatch):
    """The destination releases arrival windows ahead until a block's worth waits; with blocks
    of 16 items it releases about one 60 s window at a time. Same records either way."""
    s = busy(rate)
    ahead = ListSink()
    model = engine.Model(s, 0, ahead)
    model.run()
    assert model.block >= 1024 > 60 * 2.0  # blocks grew past one 60 s window of arrivals
    step = ListSink()
    engine.Model(s, 0, step, block_sizes=(16, 16, 16)).run()
    a, b = ahead.rows(), step.rows()
    assert a["event_id"].size > 500 and (a["attempt"] > 1).any()
    for name in a:  # token times are sums whose rounding follows the blocks (last bits only)
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_rescheduled_block_reuses_only_unchanged_decisions(monkeypatch):
    """Every decision reused from an earlier proposal of a block equals deciding it afresh."""
    s = busy(2.0)
    reused = []
    attempt = lane.Lane.attempt

    def checked(self, block, previous):
        decided = decide(self, block, previous)
        if previous is not None:
            again = attempt(self, block.items[decided.live], block.dispatch_at[decided.live])
            for name, column in decided.rows.items():
                np.testing.assert_array_equal(column, again[name], err_msg=name)
            reused.append(decided.live.size)
        return decided

    decide = lane.Lane._decide
    monkeypatch.setattr(lane.Lane, "_decide", checked)
    engine.Model(s, 0, ListSink()).run()
    assert reused  # blocks were rescheduled with the retries born inside them
