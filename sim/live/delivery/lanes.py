"""Deliveries in memory and the per-destination lane that orders them (S2, S3).

A `Lane` belongs to one API destination and is shared by every rule target that invokes it:
it owns the destination's token bucket (`policy.TokenBucket`) and its waiting deliveries —
those waiting out a retry delay and those ready for a token, served oldest-ready first
(`fifo`, S3) or newest-ready first (`lifo`, the what-if alternative).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from sim.live.config.resources import ApiDestination, Connection, Rule, Target
from sim.live.delivery.auth import ConnectionAuth
from sim.policy import TokenBucket, expired_waiting
from sim.scenario.model import RetryPolicy


@dataclass
class Route:
    """Everything fixed about one rule target: where it goes and how it is retried."""

    rule: Rule
    target: Target
    rule_arn: str
    target_arn: str
    retry_policy: RetryPolicy
    dead_letter_arn: str | None
    lane: Lane

    @property
    def dead_letter_queue(self) -> bool:
        return self.dead_letter_arn is not None


@dataclass
class Delivery:
    """One event on its way to one target. Times are seconds since the core started."""

    id: int
    event: dict[str, Any]
    accepted_epoch: float
    route: Route
    arrival_at: float
    ready_at: float
    retries_done: int = 0
    previous_backoff_s: float = math.nan
    last_status: int | None = None
    last_message: str = ""


@dataclass
class Lane:
    """One API destination's token bucket and waiting deliveries."""

    destination: ApiDestination
    connection: Connection
    auth: ConnectionAuth
    bucket: TokenBucket
    order: str = "fifo"
    rank: int = 0  # the destination's place in the config (ties at the account quota, B5)
    head_since: float = -math.inf  # its last account grant: when its current head became head
    _waiting: list[tuple[float, int, Delivery]] = field(default_factory=list)
    _ready: list[tuple[float, int, Delivery]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._ready)

    def push(self, delivery: Delivery) -> None:
        """Add a delivery that becomes ready at `delivery.ready_at`."""
        heapq.heappush(self._waiting, (delivery.ready_at, next(self._seq), delivery))
        self.changed.set()

    @staticmethod
    def push_to_lane(delivery: Delivery) -> None:
        """Add a delivery to its own route's lane."""
        delivery.route.lane.push(delivery)

    def pop(self, now: float) -> Delivery | None:
        """The next delivery to serve among those ready at `now`, or None."""
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, seq, delivery = heapq.heappop(self._waiting)
            key = ready_at if self.order == "fifo" else -ready_at
            heapq.heappush(self._ready, (key, seq if self.order == "fifo" else -seq, delivery))
        if not self._ready:
            return None
        return heapq.heappop(self._ready)[2]

    def next_ready_at(self) -> float:
        """When the earliest waiting delivery becomes ready (inf if none)."""
        if self._ready:
            return -math.inf
        return self._waiting[0][0] if self._waiting else math.inf

    def take_token(self, ready_at: float, arrival_at: float, policy: RetryPolicy) -> float | None:
        """Dispatch time for a delivery ready at `ready_at`, or None if it would age out first.

        An event that reaches its maximum age before its token comes takes no token (S6).
        """
        dispatch_at, full_after = self.bucket.peek(ready_at)
        if expired_waiting(dispatch_at, arrival_at, policy):
            return None
        self.bucket.full_at = full_after
        return dispatch_at
