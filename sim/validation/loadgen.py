"""The load generator: replays one realization of a scenario's arrival process in real time.

Arrival times come from the same code and random stream as the model's (`sim.scenario.arrivals`,
`generator(seed, replication, "arrivals")`), so the live run sees a Poisson (or burst, diurnal,
trace) realization the model could have drawn. Events due within `BATCH_S` of now are submitted
together; each submission is its own task, so a slow commit never delays the next arrivals
(the core's group commit absorbs concurrent submissions).

For a bus, each event matches each rule independently with the rule's `match_fraction`
(docs/bus.md B2): `match_draws` draws it on a stream of its own keyed to (event, rule)
(`KeyedUniforms(seed, replication, "match")`, keys (event index, rule index + 1)), and the
event lists the rules it matches in `detail.sim-rules`, which the rules' patterns select on
(`sim.live.config.from_scenario`). The live run keeps the realized matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim import policy
from sim.live.config.from_scenario import MATCHED_RULES
from sim.rng import KeyedUniforms, generator
from sim.scenario.arrivals import arrival_windows
from sim.scenario.model import Scenario

BATCH_S = 0.001
"""Events due within this many seconds of now go out in one submission."""

EVENT_SOURCE = "sim.validation"
MATCH_SOURCE = "match"
"""Name of the random source of a bus's rule matches (a `KeyedUniforms` stream)."""

Submit = Callable[[Sequence[dict[str, Any]]], Coroutine[Any, Any, Any]]
MakeEvent = Callable[[int, float], dict[str, Any]]


def arrival_times(scenario: Scenario, replication: int) -> np.ndarray:
    """Sorted arrival times (s) in [0, horizon) of one realization of the scenario's arrivals."""
    rng = generator(scenario.seed, replication, "arrivals")
    windows = arrival_windows(scenario.arrivals, rng, scenario.horizon)
    times = [t for _, _, t in windows]
    return np.concatenate(times) if times else np.empty(0)


def make_event(index: int, scheduled_at: float) -> dict[str, Any]:
    """The EventBridge event sent for arrival number `index`; its `id` is the index."""
    return {
        "id": str(index),
        "source": EVENT_SOURCE,
        "detail-type": "ValidationEvent",
        "detail": {"n": index, "scheduled_at": round(scheduled_at, 6)},
    }


def match_draws(scenario: Scenario, replication: int, n_events: int) -> np.ndarray:
    """Which bus rules each of events 0..n_events−1 matches: booleans (events, rules) in the
    order of `scenario.bus.rules` (B2; a single-destination scenario's one rule always)."""
    rules = scenario.bus.rules
    stream = KeyedUniforms(scenario.seed, replication, MATCH_SOURCE)
    events = np.repeat(np.arange(n_events, dtype=np.int64), len(rules))
    keys = np.tile(np.arange(1, len(rules) + 1, dtype=np.int64), n_events)
    draws = stream.at(events, keys).reshape(n_events, len(rules))
    return policy.matches(draws, np.array([rule.match_fraction for rule in rules]))


def bus_events(scenario: Scenario, matches: np.ndarray) -> MakeEvent:
    """`make_event` for a bus: event `index` also lists the rules it matches (`matches[index]`)."""
    names = np.array([rule.name for rule in scenario.bus.rules])

    def make(index: int, scheduled_at: float) -> dict[str, Any]:
        event = make_event(index, scheduled_at)
        event["detail"][MATCHED_RULES] = names[matches[index]].tolist()
        return event

    return make


@dataclass
class LoadGenerator:
    """Submits event `i` (`make(i, times[i])`) at `times[i]` on a clock (`now()`, seconds since
    the run's time zero)."""

    times: np.ndarray
    submit: Submit
    now: Callable[[], float]
    batch_s: float = BATCH_S
    make: MakeEvent = make_event
    submitted_at: np.ndarray = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.submitted_at = np.full(self.times.size, np.nan)

    async def run(self) -> None:
        """Submit every event on time; return once all submissions are persisted."""
        i, n = 0, self.times.size
        while i < n:
            wait = float(self.times[i]) - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            now = self.now()
            j = int(np.searchsorted(self.times, now + self.batch_s, side="right"))
            j = max(j, i + 1)
            batch = [self.make(k, float(self.times[k])) for k in range(i, j)]
            task = asyncio.create_task(self._submit(i, j, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            i = j
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def _submit(self, i: int, j: int, batch: list[dict[str, Any]]) -> None:
        # No await before `submit` reads its clock: this is the arrival time the core records.
        self.submitted_at[i:j] = self.now()
        await self.submit(batch)

    @property
    def lag_s(self) -> np.ndarray:
        """Submission time minus scheduled arrival time, per event (negative: up to `batch_s` early)."""
        return self.submitted_at - self.times
