"""Every delivery decision of design §3 (S2, S4–S9) as pure, I/O-free code shared by both engines.

Nothing here reads a clock or a global random generator: `now` (seconds) and random draws
(uniforms on [0, 1)) are arguments. Functions take scalars or NumPy arrays alike, so the
asyncio core decides one attempt at a time and the SimPy model decides a block at once —
with the same code.
"""

from __future__ import annotations

import email.utils
import heapq
import math
import re
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np

from sim.scenario.model import Backoff, RetryPolicy

# --- outcomes, finals and reasons: small integer codes (arrays) with names (records) ----------

DELIVERED, RETRY, FAILED, TIMEOUT, CONNECTION_ERROR, EXPIRED, NOT_SENT = range(7)
OUTCOMES = ("delivered", "retry", "failed", "timeout", "connection_error", "expired", "not_sent")
"""Attempt outcome names by code. Two mark rows that are not invocation attempts but close an
event without a request: `expired` (aged out waiting for a token, S6) and `not_sent` (the live
core could not build the request: invalid parameter, no input, deauthorized connection)."""

UNSENT_OUTCOMES = (EXPIRED, NOT_SENT)

RETRYABLE_OUTCOMES = (RETRY, TIMEOUT, CONNECTION_ERROR)

STATUS_TIMEOUT = 0
STATUS_CONNECTION_ERROR = 1
"""Pseudo status codes for attempts that got no HTTP response (real codes are 100-599)."""

NO_FINAL, FINAL_DELIVERED, FINAL_DLQ, FINAL_DROPPED = range(4)
FINALS = (None, "delivered", "dlq", "dropped")

NO_REASON, NOT_RETRYABLE, MAXIMUM_RETRY_ATTEMPTS, MAXIMUM_EVENT_AGE, RETRY_AFTER_NEGATIVE = range(5)
REASONS = (
    None,
    "NonRetryableError",
    "MaximumRetryAttempts",
    "MaximumEventAgeInSeconds",
    "RetryAfterNegative",
)


# --- S2: the token bucket ----------------------------------------------------------------------


def gcra_schedule(
    full_at: float, rate_per_second: float | None, capacity: float, ready_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch times for items served in the given order by a token bucket; state after each.

    The bucket (rate r, capacity b, continuous refill, one token per attempt) is held as
    `full_at`, the instant from which it is full again; it starts full (`full_at = 0`). This is
    the GCRA form of S2: item i leaves at max(ready_i, full_at − (b−1)/r) and moves `full_at` to
    max(full_at, ready_i) + 1/r. The recursion is solved in closed form with a running maximum,
    so a block of n items costs O(n) vectorized work. Returns (dispatch_at, full_at after item i).
    """
    ready_at = np.asarray(ready_at, dtype=float)
    if rate_per_second is None:
        return ready_at.copy(), np.full(ready_at.shape, full_at)
    spacing = 1.0 / rate_per_second
    slack = (capacity - 1.0) * spacing
    steps = np.arange(ready_at.size, dtype=float) * spacing
    running = np.maximum.accumulate(np.maximum(ready_at - steps, full_at))
    full_after = running + steps + spacing
    full_before = np.concatenate(([full_at], full_after[:-1]))
    dispatch_at = np.maximum(ready_at, full_before - slack)
    return dispatch_at, full_after


@dataclass
class TokenBucket:
    """The S2 bucket as a small stateful object, for callers that take one token at a time."""

    rate_per_second: float | None
    capacity: float
    full_at: float = 0.0

    def peek(self, ready_at: float) -> tuple[float, float]:
        """(dispatch time, bucket state after) for an item ready at `ready_at`, taking nothing.

        The one-item case of `gcra_schedule`, in plain floats (same operations, same result).
        """
        if self.rate_per_second is None:
            return ready_at, self.full_at
        spacing = 1.0 / self.rate_per_second
        slack = (self.capacity - 1.0) * spacing
        return max(ready_at, self.full_at - slack), max(ready_at, self.full_at) + 0.0 + spacing

    def take(self, ready_at: float) -> float:
        """Consume a token for an item ready at `ready_at`; return when it may be dispatched."""
        dispatch_at, self.full_at = self.peek(ready_at)
        return dispatch_at

    def tokens_at(self, now: float) -> float:
        """Tokens in the bucket at `now` (fractional), assuming no further takes."""
        if self.rate_per_second is None:
            return math.inf
        return self.capacity - max(0.0, self.full_at - now) * self.rate_per_second


# --- S4/S5: classification ---------------------------------------------------------------------


def outcome_table(retry_statuses: list[int | str]) -> np.ndarray:
    """Outcome code for every status 0-599 (0 = timeout, 1 = connection failure), per S5."""
    table = np.full(600, FAILED, dtype=np.int8)
    table[200:300] = DELIVERED
    for entry in retry_statuses:
        if isinstance(entry, str):
            first = int(entry[0]) * 100
            table[first : first + 100] = RETRY
        else:
            table[entry] = RETRY
    table[200:300] = DELIVERED
    table[STATUS_TIMEOUT] = TIMEOUT
    table[STATUS_CONNECTION_ERROR] = CONNECTION_ERROR
    return table


def classify(status: int | np.ndarray, table: np.ndarray) -> int | np.ndarray:
    """Outcome code(s) of status code(s): delivered, retry (retryable HTTP), failed, timeout, ..."""
    result = table[status]
    return int(result) if np.ndim(result) == 0 else result


def error_code(status: int) -> str:
    """The DLQ `ERROR_CODE` attribute for an attempt's status (S9)."""
    if status == STATUS_TIMEOUT:
        return "TIMEOUT"
    if status == STATUS_CONNECTION_ERROR:
        return "CONNECTION_FAILURE"
    return "ERROR_FROM_TARGET"


def exhausted_retry_condition(reason: int) -> str | None:
    """The DLQ `EXHAUSTED_RETRY_CONDITION` attribute: set only when a retry limit ended the event."""
    return REASONS[reason] if reason in (MAXIMUM_RETRY_ATTEMPTS, MAXIMUM_EVENT_AGE) else None


# --- S7: backoff --------------------------------------------------------------------------------


def backoff_delay(
    retry_number: int | np.ndarray,
    draw: float | np.ndarray,
    backoff: Backoff,
    previous_s: float | np.ndarray | None = None,
) -> float | np.ndarray:
    """Seconds to wait before retry `retry_number` (1 = first retry), given a uniform draw.

    full: U·x; equal: x/2 + U·x/2; none: x, with x = min(cap, base·multiplier^(k−1)).
    decorrelated (Brooker 2015): min(cap, base + U·(3·previous − base)), previous starting at base.
    """
    if _scalars(retry_number, draw, previous_s):
        return _backoff_one(int(retry_number), float(draw), backoff, previous_s)  # type: ignore[arg-type]
    draw = np.asarray(draw, dtype=float)
    if backoff.jitter == "decorrelated":
        previous = np.asarray(backoff.base if previous_s is None else previous_s, dtype=float)
        previous = np.where(np.isnan(previous), backoff.base, previous)
        delay = np.minimum(backoff.cap, backoff.base + draw * (3.0 * previous - backoff.base))
    else:
        exponent = np.asarray(retry_number, dtype=float) - 1.0
        if backoff.multiplier > 1.0:
            # beyond this exponent the cap binds anyway; clipping avoids overflow to inf
            limit = math.ceil(math.log(backoff.cap / backoff.base) / math.log(backoff.multiplier))
            exponent = np.clip(exponent, 0.0, max(limit, 0) + 1.0)
        ceiling = np.minimum(backoff.cap, backoff.base * backoff.multiplier**exponent)
        if backoff.jitter == "full":
            delay = draw * ceiling
        elif backoff.jitter == "equal":
            delay = ceiling / 2.0 + draw * ceiling / 2.0
        else:
            delay = ceiling * np.ones_like(draw)
    return float(delay) if np.ndim(delay) == 0 else delay


def _scalars(*values: object) -> bool:
    """True when every value is a plain number (or None): the per-attempt path of the live core."""
    return all(v is None or isinstance(v, int | float | np.number) for v in values)


def _backoff_one(k: int, draw: float, backoff: Backoff, previous_s: float | None) -> float:
    """`backoff_delay` for one retry, in plain floats (kept identical by the property tests)."""
    if backoff.jitter == "decorrelated":
        previous = backoff.base if previous_s is None or math.isnan(previous_s) else previous_s
        return min(backoff.cap, backoff.base + draw * (3.0 * previous - backoff.base))
    exponent = k - 1.0
    if backoff.multiplier > 1.0:
        limit = math.ceil(math.log(backoff.cap / backoff.base) / math.log(backoff.multiplier))
        exponent = min(max(exponent, 0.0), max(limit, 0) + 1.0)
    ceiling = min(backoff.cap, backoff.base * backoff.multiplier**exponent)
    if backoff.jitter == "full":
        return draw * ceiling
    if backoff.jitter == "equal":
        return ceiling / 2.0 + draw * ceiling / 2.0
    return ceiling * 1.0


# --- S8: Retry-After ----------------------------------------------------------------------------

_SECONDS = re.compile(r"^\s*(-?)(\d+)\s*$")


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: integer seconds (may be negative) or an HTTP-date.

    A date in the past means 0; anything unparseable means None (the header is ignored). An
    integer too long for a float means ±inf: a wait no event outlives, or a stop.
    """
    if value is None:
        return None
    match = _SECONDS.match(value)
    if match:
        sign, digits = match.groups()
        seconds = float(int(digits)) if len(digits) <= 300 else math.inf
        return -seconds if sign else seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


# --- S6/S8/S9: the decision after an attempt ----------------------------------------------------


class Decision(NamedTuple):
    """What happens after an attempt: the retry's ready time (NaN = none), final and reason codes."""

    next_ready_at: float | np.ndarray
    final: int | np.ndarray
    reason: int | np.ndarray


def decide(
    outcome: int | np.ndarray,
    retries_done: int | np.ndarray,
    arrival_at: float | np.ndarray,
    complete_at: float | np.ndarray,
    backoff_s: float | np.ndarray,
    retry_after_s: float | np.ndarray,
    policy: RetryPolicy,
    dead_letter_queue: bool,
) -> Decision:
    """Apply S6, S8 and S9 to attempt(s) that completed at `complete_at`.

    `retries_done` counts retries before this attempt (0 for the first attempt); `retry_after_s`
    is NaN when the response carried none. Checks, in order: delivered; not retryable; retry
    attempts exhausted; negative Retry-After; the wait — the longer of backoff and Retry-After —
    ending after the maximum event age. Ended events go to the DLQ if configured, else dropped.
    """
    if _scalars(outcome, retries_done, arrival_at, complete_at, backoff_s, retry_after_s):
        return _decide_one(
            int(outcome),  # type: ignore[arg-type]
            int(retries_done),  # type: ignore[arg-type]
            float(arrival_at),  # type: ignore[arg-type]
            float(complete_at),  # type: ignore[arg-type]
            float(backoff_s),  # type: ignore[arg-type]
            float(retry_after_s),  # type: ignore[arg-type]
            policy,
            dead_letter_queue,
        )
    outcome = np.asarray(outcome)
    retry_after = np.asarray(retry_after_s, dtype=float)
    wait = np.fmax(np.asarray(backoff_s, dtype=float), retry_after)  # fmax ignores NaN
    next_ready = np.asarray(complete_at, dtype=float) + wait
    deadline = age_deadline(arrival_at, policy)
    retryable = (outcome == RETRY) | (outcome == TIMEOUT) | (outcome == CONNECTION_ERROR)
    reason = np.select(
        [
            outcome == DELIVERED,
            ~retryable,
            np.asarray(retries_done) >= policy.maximum_retry_attempts,
            retry_after < 0,
            next_ready > deadline,
        ],
        [NO_REASON, NOT_RETRYABLE, MAXIMUM_RETRY_ATTEMPTS, RETRY_AFTER_NEGATIVE, MAXIMUM_EVENT_AGE],
        default=NO_REASON,
    ).astype(np.int8)
    ended = reason != NO_REASON
    final = np.where(
        outcome == DELIVERED,
        FINAL_DELIVERED,
        np.where(ended, FINAL_DLQ if dead_letter_queue else FINAL_DROPPED, NO_FINAL),
    ).astype(np.int8)
    next_ready = np.where(final == NO_FINAL, next_ready, np.nan)
    if np.ndim(final) == 0:
        return Decision(float(next_ready), int(final), int(reason))
    return Decision(next_ready, final, reason)


def _decide_one(
    outcome: int,
    retries_done: int,
    arrival_at: float,
    complete_at: float,
    backoff_s: float,
    retry_after_s: float,
    policy: RetryPolicy,
    dead_letter_queue: bool,
) -> Decision:
    """`decide` for one attempt, in plain Python (kept identical by the property tests)."""
    if outcome == DELIVERED:
        return Decision(math.nan, FINAL_DELIVERED, NO_REASON)
    wait = backoff_s if math.isnan(retry_after_s) else max(backoff_s, retry_after_s)
    next_ready = complete_at + wait
    if outcome not in RETRYABLE_OUTCOMES:
        reason = NOT_RETRYABLE
    elif retries_done >= policy.maximum_retry_attempts:
        reason = MAXIMUM_RETRY_ATTEMPTS
    elif retry_after_s < 0:
        reason = RETRY_AFTER_NEGATIVE
    elif next_ready > age_deadline(arrival_at, policy):
        reason = MAXIMUM_EVENT_AGE
    else:
        return Decision(next_ready, NO_FINAL, NO_REASON)
    return Decision(math.nan, age_out_final(dead_letter_queue), reason)


@overload
def age_deadline(arrival_at: float, policy: RetryPolicy) -> float: ...


@overload
def age_deadline(arrival_at: np.ndarray, policy: RetryPolicy) -> np.ndarray: ...


def age_deadline(arrival_at: float | np.ndarray, policy: RetryPolicy) -> float | np.ndarray:
    """The instant(s) an event reaches its maximum age (S6): arrival + maximum_event_age. An
    event still waiting for a token then ends; a retry ready after it is never made (S8)."""
    if _scalars(arrival_at):
        return float(arrival_at) + policy.maximum_event_age
    return np.asarray(arrival_at, dtype=float) + policy.maximum_event_age


def expired_waiting(
    dispatch_at: float | np.ndarray, arrival_at: float | np.ndarray, policy: RetryPolicy
) -> bool | np.ndarray:
    """True where an event would reach the maximum age before its token comes (S6)."""
    if _scalars(dispatch_at, arrival_at):
        return bool(dispatch_at >= age_deadline(arrival_at, policy))  # type: ignore[operator]
    result = np.asarray(dispatch_at) >= age_deadline(arrival_at, policy)
    return bool(result) if np.ndim(result) == 0 else result


def aged_out(dispatch_at: float | np.ndarray, deadline: float | np.ndarray) -> bool | np.ndarray:
    """`expired_waiting` given the deadline (`age_deadline`): the token would come at or after it."""
    if _scalars(dispatch_at, deadline):
        return bool(dispatch_at >= deadline)  # type: ignore[operator]
    return np.asarray(dispatch_at) >= deadline


def age_out_final(dead_letter_queue: bool) -> int:
    """Final code for an event that ends without delivery: DLQ if configured, else dropped (S9)."""
    return FINAL_DLQ if dead_letter_queue else FINAL_DROPPED


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
