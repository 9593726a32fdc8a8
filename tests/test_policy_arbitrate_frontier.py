"""`policy.arbitrate` with a frontier: a prefix of the walk without one, cut where a further
delivery of a line that ran out could enter it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import policy


def _walk(ready, deadline, frontier=None):
    rates = [300.0, 200.0, None]
    capacity = [5.0, 1.0, 1.0]
    return policy.arbitrate(
        ready, deadline, [0, 0, 0], rates, capacity, [0.0] * 3, [0.0] * 3, 0.0, 400.0, 10.0,
        frontier,
    )  # fmt: skip


def _lines(seed: int):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 400, 3)
    ready = [np.sort(rng.uniform(0, 2, n)).tolist() for n in sizes]
    deadline = [[t + rng.choice([0.3, 60.0]) for t in line] for line in ready]
    return ready, deadline


@pytest.mark.parametrize("seed", range(20))
def test_a_frontier_gives_a_prefix_cut_where_the_next_delivery_could_enter(seed):
    ready, deadline = _lines(seed)
    frontier = [line[-1] + 0.01 if line else 0.5 for line in ready]
    full = _walk(ready, deadline)
    cut = _walk(ready, deadline, frontier)
    n = len(cut.lane)
    for name in policy.Arbitration._fields:
        assert getattr(cut, name) == getattr(full, name)[:n]  # NaN is math.nan: equal
    # where it stopped: the first entry past a run-out line's last item whose (key, lane) is
    # not below the earliest key that line's next delivery could have
    stops = []
    for d in range(len(ready)):
        mine = [k for k, lane in enumerate(full.lane) if lane == d]
        last = mine[-1] if mine else -1
        head = max([g for k, g in enumerate(full.grant_at) if k in mine and not math.isnan(g)],
                   default=0.0)  # fmt: skip
        full_at = full.lane_full_at[last] if mine else 0.0
        rate, capacity = [300.0, 200.0, None][d], [5.0, 1.0, 1.0][d]
        lowest = max(frontier[d], head, policy.token_from(full_at, rate, capacity))
        later = [
            k for k in range(last + 1, len(full.lane))
            if (full.eligible_at[k], full.lane[k]) >= (lowest, d)
        ]  # fmt: skip
        stops.append(later[0] if later else len(full.lane))
    assert n == min(stops)


def test_without_a_frontier_the_walk_takes_every_line_to_its_end():
    ready, deadline = _lines(3)
    assert len(_walk(ready, deadline).lane) == sum(map(len, ready))
