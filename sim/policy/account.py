"""The bus (docs/bus.md B2, B4, B5): rule matches, deadlines per rule, and the account's bucket
with THE arbitration rule both engines use."""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

import numpy as np

from sim.policy.attempt import TokenBucket

# --- B2/B4/B5: the bus — rule matches and the account bucket (docs/bus.md) ---------------------
#
# The account's quota is one more GCRA bucket (`token_from`, `take_token`) taken by every attempt
# of every destination. The functions below are THE arbitration rule of docs/bus.md B5, shared
# by both engines: the model walks it in blocks (`arbitrate`) and one process at a time
# (`sim.des.reference`), the live core one head at a time in real time (`head_eligible_at`,
# `grant_key`, `before_key`, `account_grant`), and validation's ideal re-timing replays it.

ACCOUNT_ORDERS = ("after_destination", "before_destination")
"""Where the account's bucket sits relative to a destination's own (B5, `account.order`)."""


def matches(draw: np.ndarray, match_fraction: float | np.ndarray) -> np.ndarray:
    """Which bus events a rule matches (B2): those whose uniform draw, keyed to (event, rule), is
    below the rule's `match_fraction`. Draws lie in [0, 1), so a rule with `match_fraction` 1
    matches every event whatever its draws (an engine need not draw them). Broadcasts: an
    (events, rules) array of draws with one fraction per rule gives each event's matches."""
    return np.asarray(draw) < np.asarray(match_fraction)


def deadlines(arrival_at: np.ndarray, maximum_event_age_s: np.ndarray) -> np.ndarray:
    """`age_deadline` of deliveries whose rules have different maximum ages (one per item)."""
    return np.asarray(arrival_at, dtype=float) + maximum_event_age_s


def take_token(full_at: float, at: float, rate_per_second: float | None) -> float:
    """A GCRA bucket's state (`full_at`, see `gcra_schedule`) after one token is taken at `at`."""
    if rate_per_second is None:
        return full_at
    return (full_at if full_at > at else at) + 1.0 / rate_per_second


def token_from(full_at: float, rate_per_second: float | None, capacity: float) -> float:
    """The earliest instant a GCRA bucket in state `full_at` holds a token (-inf: unlimited)."""
    if rate_per_second is None:
        return -math.inf
    return full_at - (capacity - 1.0) / rate_per_second


def head_eligible_at(ready_at: float, head_since: float, token_from: float) -> float:
    """B5 `after_destination`: when a line head becomes eligible for the account — the latest of
    its ready time, the instant it became its line's head (`head_since`: the line's last grant)
    and its destination bucket's first token (`token_from`). Takes nothing."""
    at = ready_at if ready_at > head_since else head_since
    return at if at > token_from else token_from


def grant_key(eligible_at: float, destination_rank: int) -> tuple[float, int]:
    """B5 `after_destination`: the order in which the account serves waiting line heads:
    oldest eligible first, ties by the destination's position in the file (`rank`, from 0)."""
    return (eligible_at, destination_rank)


def before_key(ready_at: float, destination_rank: int, order: int) -> tuple[float, int, int]:
    """B5 `before_destination`: the order of the account's one line: oldest ready first, ties by
    the destination's position in the file, then by arrival in the line (`order`)."""
    return (ready_at, destination_rank, order)


def account_grant(
    account: TokenBucket, asked_at: float, deadline: float = math.inf
) -> float | None:
    """B4 with S6, one grant at a time: take the account's token for an attempt asking from
    `asked_at` (its eligibility; before its destination, its ready time). Returns the grant time,
    max(asked_at, the account's next token) as in `arbitrate`, or None — taking nothing — if
    that is at or after the event's `deadline` (`age_deadline`). Changes only `account`."""
    rate = account.rate_per_second
    token = token_from(account.full_at, rate, account.capacity)
    grant_at = asked_at if asked_at >= token else token
    if grant_at >= deadline:
        return None
    account.full_at = take_token(account.full_at, grant_at, rate)
    return grant_at


class Arbitration(NamedTuple):
    """What `arbitrate` decided, one entry per head it took, in order."""

    lane: list[int]
    position: list[int]
    eligible_at: list[float]  # when the head became eligible (its destination let it go)
    grant_at: list[float]  # NaN: the head aged out waiting (S6), taking no token
    lane_full_at: list[float]  # the head's destination bucket after it
    account_full_at: list[float]  # the account bucket after it


def arbitrate(
    ready_at: list[list[float]],
    deadline: list[list[float]],
    start: list[int],
    rate_per_second: list[float | None],
    capacity: list[float],
    full_at: list[float],
    head_since: list[float],
    account_full_at: float,
    account_rate: float,
    account_capacity: float,
    frontier: list[float] | None = None,
) -> Arbitration:
    """B5 `after_destination`: the account's tokens granted to destination line heads, one by one.

    Each destination d has a line of deliveries in service order (`ready_at[d]`, from position
    `start[d]`), a bucket (`full_at[d]`) and the time its current head became head
    (`head_since[d]`: its last grant). Its head is *eligible* from the earliest time at or after
    its ready time and `head_since` at which the destination's bucket holds a token. The account
    grants its next token to the eligible head that has waited longest (ties: the lower
    destination index), at the later of its eligibility and the account's next token; the
    grant takes a token from both buckets. A head whose grant would come at or after its
    deadline ages out (takes no token) and the next head of its line takes its place.
    The lists in `full_at` and `head_since` are updated in place.

    With `frontier`, line d is a block of a longer one whose next delivery is ready at or after
    `frontier[d]`: once it runs out, the walk stops at the first head whose (eligibility, d) is
    not below (the earliest eligibility that delivery could have, d): a prefix of the walk
    without `frontier`.
    """
    spacing = [0.0 if r is None else 1.0 / r for r in rate_per_second]
    slack = [
        math.inf if r is None else (c - 1.0) / r
        for r, c in zip(rate_per_second, capacity, strict=True)
    ]
    account_spacing = 1.0 / account_rate
    account_slack = (account_capacity - 1.0) / account_rate
    index, account = list(start), account_full_at
    heap: list[tuple[float, int]] = []  # each line's head, or its frontier once it ran out
    for d, lane in enumerate(ready_at):
        first = lane[index[d]] if index[d] < len(lane) else frontier[d] if frontier else None
        if first is not None:
            eligible = head_eligible_at(first, head_since[d], full_at[d] - slack[d])
            heap.append(grant_key(eligible, d))
    heapq.heapify(heap)
    out = Arbitration([], [], [], [], [], [])  # the loop below uses local names only
    put_lane, put_position = out.lane.append, out.position.append
    put_eligible, put_grant = out.eligible_at.append, out.grant_at.append
    put_lane_full, put_account = out.lane_full_at.append, out.account_full_at.append
    sizes = [len(lane) for lane in ready_at]
    replace, pop, nan = heapq.heapreplace, heapq.heappop, math.nan
    while heap:
        eligible, d = heap[0]
        i = index[d]
        if i >= sizes[d]:  # a line's frontier: what follows could change
            break
        token = account - account_slack
        grant = eligible if eligible >= token else token
        lane_full = full_at[d]
        if grant >= deadline[d][i]:
            grant = nan
            head = head_since[d]
        else:
            step = spacing[d]
            if step:
                lane_full = (lane_full if lane_full > grant else grant) + step
                full_at[d] = lane_full
            head_since[d] = head = grant
            account = (account if account > grant else grant) + account_spacing
        put_lane(d)
        put_position(i)
        put_eligible(eligible)
        put_grant(grant)
        put_lane_full(lane_full)
        put_account(account)
        i += 1
        index[d] = i
        if i < sizes[d]:
            at = ready_at[d][i]
        elif frontier is not None:  # the line ran out: its frontier takes its place
            at = frontier[d]
        else:
            pop(heap)
            continue
        # the next head's key: `grant_key(head_eligible_at(...), d)`, inlined (the hot loop)
        at = at if at > head else head
        token = lane_full - slack[d]
        replace(heap, (at if at > token else token, d))
    return out
