"""The account's invocation quota in real time (docs/bus.md B4, B5): one token bucket for every lane.

`AccountGate` holds the account's `policy.TokenBucket` and one arbiter task that hands its
tokens out; every attempt of every target takes one, and over the quota attempts wait — they
are never refused. The arbitration rule is `sim.policy`'s, the one the model walks
(`policy.arbitrate`); the two orders of `sim.account_order`:

* `after_destination` (default): a lane's head is eligible from the latest of its ready time,
  the lane's last grant (`Lane.head_since`: a lane serves one head at a time) and its
  destination bucket's first token (`policy.head_eligible_at`); the arbiter grants the
  account's tokens to waiting heads oldest-eligible first, ties by the destination's place in
  the config (`policy.grant_key`), and the head then takes its destination's token at the same
  instant (`take_tokens`). Both limits therefore hold on dispatch times.
* `before_destination`: every delivery, when it becomes ready, joins one account-wide line
  (oldest ready first, ties by the destination's place, then arrival in the line:
  `policy.before_key`); the arbiter gives it the account's token, then it joins its lane and
  waits for its destination's token as without a quota. A token once granted stays spent, even
  if the delivery then ages out at its destination.

Either way a delivery that would reach its maximum age before its account token takes none
(`policy.account_grant`, S6): it ends at its deadline, as when it waits for its destination.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sim import policy
from sim.live.delivery.lanes import Delivery, Lane
from sim.scenario.model import RetryPolicy

Clock = Callable[[], float]


@dataclass(order=True)
class _Head:
    """A lane's head waiting for the account (after_destination), in grant order."""

    key: tuple[float, int]
    seq: int
    eligible_at: float = field(compare=False)
    arrival_at: float = field(compare=False)
    retry_policy: RetryPolicy = field(compare=False)
    future: asyncio.Future[float | None] = field(compare=False)


class AccountGate:
    """The account's token bucket and the arbiter task that grants its tokens (module docstring).

    `granted(delivery)` (before_destination) hands a delivery that got its account token to its
    lane; `expired(delivery)` ends one that reached its maximum age first.
    """

    def __init__(
        self,
        bucket: policy.TokenBucket,
        order: str,
        now: Clock,
        granted: Callable[[Delivery], None],
        expired: Callable[[Delivery], None],
    ) -> None:
        if order not in policy.ACCOUNT_ORDERS:
            raise ValueError(f"account order must be one of {policy.ACCOUNT_ORDERS}")
        self.bucket = bucket
        self.order = order
        self.now = now
        self._granted = granted
        self._expired = expired
        self._heads: list[_Head] = []  # after_destination
        self._line: list[tuple[tuple[float, int, int], Delivery]] = []  # before_destination
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def before_destination(self) -> bool:
        return self.order == "before_destination"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="account-quota")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # --- after_destination: lanes ask for a grant -------------------------------------------

    async def grant(
        self, rank: int, eligible_at: float, arrival_at: float, retry_policy: RetryPolicy
    ) -> float | None:
        """Wait for the account's token for a lane's head eligible at `eligible_at`; return the
        grant time (now, or a moment ago), or None if the event reached its maximum age first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float | None] = loop.create_future()
        head = _Head(
            policy.grant_key(eligible_at, rank),
            next(self._seq),
            eligible_at,
            arrival_at,
            retry_policy,
            future,
        )
        heapq.heappush(self._heads, head)
        self._changed.set()
        deadline = policy.age_deadline(arrival_at, retry_policy)
        timer = loop.call_later(max(0.0, deadline - self.now()), self._give_up, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _give_up(self, future: asyncio.Future[float | None]) -> None:
        """The head reached its maximum age waiting: it takes no token (S6)."""
        if not future.done():
            future.set_result(None)
            self._changed.set()

    # --- before_destination: deliveries queue for the account first -------------------------

    def push(self, delivery: Delivery) -> None:
        """Add a delivery that becomes ready at `delivery.ready_at` to the account's line."""
        key = policy.before_key(delivery.ready_at, delivery.route.lane.rank, next(self._seq))
        heapq.heappush(self._line, (key, delivery))
        self._changed.set()

    # --- the arbiter ----------------------------------------------------------------------

    async def _run(self) -> None:
        step = self._step_before if self.before_destination else self._step_after
        while True:
            wait = step()
            if wait is None:
                continue
            self._changed.clear()
            try:
                async with asyncio.timeout(None if wait == math.inf else max(0.0, wait)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def _step_after(self) -> float | None:
        """Grant one token if the first head in grant order may have it now; else seconds to wait."""
        heads = self._heads
        while heads and heads[0].future.done():  # given up or cancelled
            heapq.heappop(heads)
        if not heads:
            return math.inf
        head, now = heads[0], self.now()
        asked_at = max(head.eligible_at, now)
        grant_at = self.bucket.peek(asked_at)[0]
        if grant_at > now and not policy.expired_waiting(
            grant_at, head.arrival_at, head.retry_policy
        ):
            return grant_at - now
        heapq.heappop(heads)  # its token is here, or it can never have one in time
        head.future.set_result(
            policy.account_grant(
                self.bucket, asked_at, policy.age_deadline(head.arrival_at, head.retry_policy)
            )
        )
        return None

    def _step_before(self) -> float | None:
        """Grant the oldest ready delivery its token if it may have it now; else seconds to wait."""
        if not self._line:
            return math.inf
        (ready_at, _, _), delivery = self._line[0]
        now = self.now()
        if ready_at > now:
            return ready_at - now
        route = delivery.route
        grant_at = self.bucket.peek(now)[0]
        if grant_at > now and not policy.expired_waiting(
            grant_at, delivery.arrival_at, route.retry_policy
        ):
            return grant_at - now
        heapq.heappop(self._line)
        deadline = policy.age_deadline(delivery.arrival_at, route.retry_policy)
        if policy.account_grant(self.bucket, now, deadline) is None:
            self._expired(delivery)
        else:
            self._granted(delivery)
        return None


async def take_tokens(
    gate: AccountGate | None, lane: Lane, delivery: Delivery, ready_at: float
) -> float | None:
    """The dispatch time of a lane's head served from `ready_at` (its ready time, or now if
    later): its destination's token and, with an `after_destination` quota, the account's (both
    at the grant); None if it would reach its maximum age first.

    Without a quota, or with `before_destination` (the account's token was taken before the
    delivery joined the lane), only the destination's bucket is taken.
    """
    retry_policy = delivery.route.retry_policy
    if gate is None or gate.before_destination:
        return lane.take_token(ready_at, delivery.arrival_at, retry_policy)
    bucket = lane.bucket
    token = policy.token_from(bucket.full_at, bucket.rate_per_second, bucket.capacity)
    eligible_at = policy.head_eligible_at(delivery.ready_at, lane.head_since, token)
    asked_at = max(eligible_at, ready_at)  # no grant before now: real time
    if policy.expired_waiting(asked_at, delivery.arrival_at, retry_policy):
        return None
    granted = await gate.grant(lane.rank, eligible_at, delivery.arrival_at, retry_policy)
    if granted is None:
        return None
    lane.head_since = granted
    return lane.bucket.take(granted)  # eligible, so its token is there at the grant
