"""An ideal core's schedule for a bus run: the destinations' buckets and the account's (B4, B5).

What `overhead.ideal_dispatch`, `corrected_records` and `conformance` do for one destination,
for a bus: attempts are replayed through one `policy.TokenBucket` per destination and the
account's, in the configured order (`account.order`), with the decisions of `sim.policy`
(`head_eligible_at`, `grant_key`, `before_key`, `account_grant`) that the live core makes in
real time and the model walks (`policy.arbitrate`). Within a line, ties (deliveries ready at
the same instant) go in delivery order, as the core queues them.

* `after_destination`: each destination's line is served oldest-ready first; its head is
  eligible from the latest of its ready time, the line's last grant and its destination's
  token (`head_eligible_at`); the account grants its tokens oldest-eligible first, ties by
  destination order (`grant_key`), and the head takes both tokens at the grant.
* `before_destination`: one account-wide line, oldest ready first (ties by destination order,
  `before_key`), takes the account's token; then the destination's bucket is taken.

Unsent attempts (age-outs, not sent) take no token and hold no place, as in the live core.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.records import Chunk
from sim.scenario.bus import Bus

Follow = Callable[[int, float], tuple[int, float] | None]
"""After row i is dispatched at t: the next row of its delivery and when it is ready, if any."""


@dataclass
class Lines:
    """Which destination and rule each record row belongs to (indices into the bus)."""

    destination: np.ndarray  # per row
    rule: np.ndarray  # per row
    delivery: np.ndarray  # per row: the delivery id (`event_id`), the order of ties


def lines_of(bus: Bus, records: Chunk, rule_of_delivery: dict[int, str]) -> Lines:
    """Each row's rule (from its delivery id, `event_id`) and destination."""
    index = {rule.name: i for i, rule in enumerate(bus.rules)}
    rule = np.array([index[rule_of_delivery[int(e)]] for e in records["event_id"]], dtype=int)
    targets = np.array(bus.targets, dtype=int)
    destination = targets[rule] if rule.size else rule.copy()
    return Lines(destination, rule, records["event_id"])


def bus_schedule(
    bus: Bus, lines: Lines, sent: np.ndarray, ready_at: np.ndarray, follow: Follow | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch time of every sent row on an ideal core (NaN for unsent rows), and how long it
    waited for the account's token after its destination let it go (0 for unsent rows; the
    model's `account_wait_s`: grant − eligibility after the destination, grant − ready before).

    `ready_at` holds the ready times of the rows that start a chain; with `follow`, each
    dispatched row may release the next (its ready time computed from the dispatch), which is
    how `corrected_bus_records` chains an event's attempts. Without `follow`, every row is
    scheduled from its own `ready_at` (`ideal_bus_dispatch`).
    """
    account = bus.account
    buckets = [
        policy.TokenBucket(d.invocation_rate_limit_per_second, d.burst) for d in bus.destinations
    ]
    quota = policy.TokenBucket(account.invocation_limit_per_second, account.burst)
    dispatch = np.full(ready_at.size, np.nan)
    wait = np.zeros(ready_at.size)
    if account.order == "before_destination":
        _before(lines, sent, ready_at, follow, buckets, quota, dispatch, wait)
    else:
        _after(lines, sent, ready_at, follow, buckets, quota, dispatch, wait)
    return dispatch, wait


def _release(
    row: int, at: float, follow: Follow | None, push: Callable[[int, float], None]
) -> None:
    if follow is not None:
        following = follow(row, at)
        if following is not None:
            push(*following)


def _after(
    lines: Lines,
    sent: np.ndarray,
    ready_at: np.ndarray,
    follow: Follow | None,
    buckets: list[policy.TokenBucket],
    quota: policy.TokenBucket,
    dispatch: np.ndarray,
    wait: np.ndarray,
) -> None:
    queues: list[list[tuple[float, int, int]]] = [[] for _ in buckets]
    head_since = [-math.inf] * len(buckets)

    def push(row: int, at: float) -> None:
        ready_at[row] = at
        if sent[row]:
            heapq.heappush(queues[int(lines.destination[row])], (at, int(lines.delivery[row]), row))

    for start in np.flatnonzero(~np.isnan(ready_at)):  # rows with a ready time
        push(int(start), float(ready_at[start]))
    while True:
        best: tuple[tuple[float, int], int] | None = None
        for lane, queue in enumerate(queues):
            if queue:
                bucket = buckets[lane]
                token = policy.token_from(bucket.full_at, bucket.rate_per_second, bucket.capacity)
                eligible = policy.head_eligible_at(queue[0][0], head_since[lane], token)
                key = policy.grant_key(eligible, lane)
                if best is None or key < best[0]:
                    best = (key, lane)
        if best is None:
            return
        (eligible, _), lane = best
        granted = policy.account_grant(quota, eligible)
        assert granted is not None  # no deadline: sent attempts were sent
        at = buckets[lane].take(granted)
        _, _, row = heapq.heappop(queues[lane])
        head_since[lane] = granted
        dispatch[row], wait[row] = at, granted - eligible
        _release(row, at, follow, push)


def _before(
    lines: Lines,
    sent: np.ndarray,
    ready_at: np.ndarray,
    follow: Follow | None,
    buckets: list[policy.TokenBucket],
    quota: policy.TokenBucket,
    dispatch: np.ndarray,
    wait: np.ndarray,
) -> None:
    line: list[tuple[tuple[float, int, int], int]] = []

    def push(row: int, at: float) -> None:
        ready_at[row] = at
        if sent[row]:
            rank, order = int(lines.destination[row]), int(lines.delivery[row])
            heapq.heappush(line, (policy.before_key(at, rank, order), row))

    for start in np.flatnonzero(~np.isnan(ready_at)):
        push(int(start), float(ready_at[start]))
    while line:
        (ready, _, _), row = heapq.heappop(line)
        granted = policy.account_grant(quota, ready)
        assert granted is not None
        at = buckets[int(lines.destination[row])].take(granted)
        dispatch[row], wait[row] = at, granted - ready
        _release(row, at, follow, push)


def ideal_bus_dispatch(bus: Bus, lines: Lines, records: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """The sent attempts on an ideal core from their live ready times (`bus_schedule`): their
    dispatch times, and each one's wait for the account's token (the live core does not record
    it; the model does, `account_wait_s`)."""
    sent = ~np.isnan(records["dispatch_at"])
    return bus_schedule(bus, lines, sent, records["ready_at"].astype(float).copy())


def corrected_bus_records(
    bus: Bus, lines: Lines, records: Chunk, client_excess_s: np.ndarray
) -> Chunk:
    """`overhead.corrected_records` for a bus: the live attempts re-timed on an ideal core.

    Every decision stays as live; an attempt is dispatched at its ideal grant, completes after
    the endpoint's own response time, and its delivery's next attempt is ready after the same
    wait as live. Arrivals stay as submitted; age-outs keep their deadline. The records gain
    `account_wait_s`, the ideal core's (`bus_schedule`).
    """
    sent = ~np.isnan(records["dispatch_at"])
    response = records["complete_at"] - records["dispatch_at"] - np.nan_to_num(client_excess_s)
    wait = records["next_ready_at"] - records["complete_at"]
    following, first = attempt_chains(records)
    out = {name: column.copy() for name, column in records.items()}
    ready = np.where(first, records["ready_at"], np.nan)

    def follow(row: int, at: float) -> tuple[int, float] | None:
        complete_at = at + response[row]
        out["complete_at"][row] = complete_at
        out["next_ready_at"][row] = complete_at + wait[row]
        nxt = int(following[row])
        return None if nxt < 0 else (nxt, complete_at + wait[row])

    dispatch, out["account_wait_s"] = bus_schedule(bus, lines, sent, ready, follow)
    out["ready_at"] = np.where(np.isnan(ready), out["ready_at"], ready)
    out["dispatch_at"] = np.where(sent, dispatch, out["dispatch_at"])
    return out


def attempt_chains(records: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """Each attempt's next attempt of the same event (its row, -1: none), and a mask of the
    attempts that are their event's first."""
    n = records["event_id"].size
    order = np.lexsort((records["attempt"], records["event_id"]))
    following = np.full(n, -1)
    same = records["event_id"][order[1:]] == records["event_id"][order[:-1]]
    following[order[:-1][same]] = order[1:][same]
    first = np.ones(n, dtype=bool)
    first[following[following >= 0]] = False
    return following, first
