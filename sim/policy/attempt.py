"""One delivery's decisions (design §3: S2, S4–S9): the token bucket, classification, backoff,
Retry-After, and what follows an attempt. Scalars or NumPy arrays alike: the live core decides one
attempt at a time, the model a block at once, with the same code."""

from __future__ import annotations

import email.utils
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
