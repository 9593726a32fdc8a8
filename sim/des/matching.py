"""Which rules match each bus event, and the deliveries that gives each destination (B1, B2).

Each rule matches each event independently with probability `match_fraction`, by a uniform
draw keyed to (event, rule) on a stream of its own (`match`), so matches never depend on how
arrivals are windowed. A rule with `match_fraction` 1 draws nothing. Every match is one
delivery, numbered `event * n_rules + rule` (`sim.des.rules`); a destination's deliveries are
in arrival order, and one event's deliveries to the same destination in rule order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.rng import KeyedUniforms
from sim.scenario.model import Bus


@dataclass
class Matched:
    """One window's deliveries: per destination (times, delivery ids or None when they are the
    event ids themselves), and per rule the arrival times of the events it matched."""

    lanes: list[tuple[np.ndarray, np.ndarray | None]]
    rules: list[np.ndarray]


class Matcher:
    """Splits windows of bus events into each destination's deliveries."""

    def __init__(self, bus: Bus, seed: int, replication: int) -> None:
        self.fractions = [rule.match_fraction for rule in bus.rules]
        self.n_rules = len(bus.rules)
        self.lane_rules = [
            [i for i, target in enumerate(bus.targets) if target == d]
            for d in range(len(bus.destinations))
        ]
        self.draws = KeyedUniforms(seed, replication, "match")

    def split(self, first_id: int, times: np.ndarray) -> Matched:
        """The deliveries of the events `first_id, first_id + 1, ...` arriving at `times`."""
        events = np.arange(first_id, first_id + times.size, dtype=np.int64)
        matched: list[np.ndarray] = []  # per rule: positions in the window of the events matched
        for rule, fraction in enumerate(self.fractions):
            if fraction >= 1.0:
                matched.append(np.arange(times.size))
            elif fraction <= 0.0:
                matched.append(np.zeros(0, dtype=np.int64))
            else:
                draw = self.draws.at(events, np.full(times.size, rule + 1, dtype=np.int64))
                matched.append(np.flatnonzero(policy.matches(draw, fraction)))
        lanes: list[tuple[np.ndarray, np.ndarray | None]] = []
        for rules in self.lane_rules:
            if self.n_rules == 1 and matched[0].size == times.size:
                lanes.append((times, None))  # one rule matching everything: the events themselves
                continue
            ids = np.concatenate([events[matched[r]] * self.n_rules + r for r in rules])
            if len(rules) > 1:
                ids.sort()
            lanes.append((times[ids // self.n_rules - first_id], ids))
        return Matched(lanes, [times[m] for m in matched])
