"""The account bucket over every destination's line: who dispatches when (B4, B5).

Given each destination's waiting deliveries in service order (a block of each line), the
destinations' buckets and the account's, a schedule says when each delivery is dispatched (or
that it ages out waiting) and in which order the account saw them — the *sequence*, whose
`key` never decreases, so that a prefix of it is exactly what one-at-a-time service would do.

* `after_destination` (B5 default): a line's head is eligible once its destination's bucket
  holds a token; the account grants its tokens to eligible heads oldest-eligible first and a
  grant takes a token from both buckets (`sim.policy.arbitrate`). The key is the eligibility
  time. Where the account never delays anyone, every line's token times are the closed form of
  its own bucket (`sim.policy.gcra_schedule`) merged in time order: that prefix is computed
  vectorized, and only from the first delivery the account delays is the arbitration walked
  one grant at a time.
* `before_destination`: one account line for all deliveries in ready order, then each
  destination's bucket over the account's grant times: two closed forms in a row. The key is
  the ready time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim import policy
from sim.des.selection import token_times


@dataclass
class Line:
    """One destination's block: deliveries in service order and its bucket."""

    ready_at: np.ndarray
    deadline: np.ndarray
    rate: float | None
    capacity: float
    full_at: float
    head_since: float
    frontier: float = math.inf  # the line's next delivery beyond the block is ready no earlier


@dataclass
class LinePlan:
    """A line's deliveries, scheduled (in the line's order)."""

    dispatch_at: np.ndarray  # NaN where the delivery aged out waiting
    expired: np.ndarray
    full_after: np.ndarray  # the destination's bucket after each delivery
    head_after: np.ndarray  # the line's last grant after each delivery
    account_wait_s: np.ndarray  # waited for an account token after the destination let it go
    position: np.ndarray  # place in the account's sequence


@dataclass
class Schedule:
    """Every line's deliveries in the order the account saw them, and each line's plan.

    `resolved` deliveries of the sequence (a prefix) are scheduled; beyond, a line's block had
    more age-outs than the closed form takes at once and its remaining deliveries were not."""

    lane: np.ndarray
    key: np.ndarray  # nondecreasing; ties by lane
    reached: np.ndarray  # the account's part: its grant, or the deadline of one that aged out
    account_after: np.ndarray  # the account bucket after each
    lines: list[LinePlan]
    resolved: int


def _sequence(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every line's items merged by key (ties: the lower lane, then line order):
    (order into the concatenation, lane of each, key of each)."""
    lanes = np.repeat(np.arange(len(keys)), [k.size for k in keys])
    flat = np.concatenate(keys) if keys else np.zeros(0)
    order = np.argsort(flat, kind="stable")
    return order, lanes[order], flat[order]


def _head_after(dispatch_at: np.ndarray, head_since: float) -> np.ndarray:
    """The line's last grant after each item (grants never decrease along a line)."""
    grants = np.where(np.isnan(dispatch_at), -np.inf, dispatch_at)
    return np.maximum.accumulate(np.concatenate(([head_since], grants)))[1:]


def after_destination(
    lines: list[Line],
    account_full_at: float,
    rate: float,
    capacity: float,
    previous: tuple[list[Line], Schedule] | None = None,
) -> Schedule:
    """B5 `after_destination` (see the module docstring).

    `previous`: the lines and schedule of an earlier round of the same block (same buckets,
    same frontiers, retries merged differently): the part of its sequence that nothing changed
    in the lines could alter is taken as it is, and the walk resumes after it."""
    times, fulls, expireds, counts = [], [], [], []
    for line in lines:
        ready = np.maximum(line.ready_at, line.head_since)  # eligible once it is the head
        t, f, x, n = token_times(ready, line.deadline, line.full_at, line.rate, line.capacity)
        times.append(t[:n])
        fulls.append(f[:n])
        expireds.append(x[:n])
        counts.append(n)
    order, lane, key = _sequence(times)
    index = np.concatenate([np.arange(n) for n in counts])[order] if counts else order
    expired = np.concatenate(expireds)[order]
    live = np.flatnonzero(~expired)
    grant, after = policy.gcra_schedule(account_full_at, rate, capacity, key[live])
    delayed = np.flatnonzero(grant > key[live])
    size = key.size
    grant_at = np.full(size, np.nan)
    grant_at[live] = grant
    account_after = np.empty(size)
    filled = np.full(size, np.nan)
    filled[live] = after
    account_after[:] = _carry(filled, account_full_at)
    full_after = np.concatenate(fulls)[order]
    stop = size if not delayed.size else int(live[delayed[0]])
    kept = 0 if stop == size or previous is None else _unchanged(lines, counts, *previous)
    if kept > stop:  # an earlier round walked further with the same lines: resume after it
        assert previous is not None
        before = previous[1]
        stop = kept
        lane, key, account_after = before.lane[:stop], before.key[:stop], before.account_after
        index, grant_at = np.empty(stop, dtype=np.int64), np.empty(stop)
        full_after = np.empty(stop)
        for plan in before.lines:
            mine = plan.position[plan.position < stop]
            index[mine] = np.arange(mine.size)
            grant_at[mine] = plan.dispatch_at[: mine.size]
            full_after[mine] = plan.full_after[: mine.size]
    if stop < size:  # from the first delivery the account delays: one grant at a time
        start = [int(np.count_nonzero(lane[:stop] == d)) for d in range(len(lines))]
        line_full, head = [], []
        for d, (line, s) in enumerate(zip(lines, start, strict=True)):
            mine = np.flatnonzero(lane[:stop] == d)
            line_full.append(float(full_after[mine[-1]]) if s else line.full_at)
            head.append(float(_head_after(grant_at[mine], line.head_since)[-1]) if s
                        else line.head_since)  # fmt: skip
        walked = policy.arbitrate(
            [line.ready_at[: counts[d]].tolist() for d, line in enumerate(lines)],
            [line.deadline[: counts[d]].tolist() for d, line in enumerate(lines)],
            start,
            [line.rate for line in lines],
            [line.capacity for line in lines],
            line_full,
            head,
            float(account_after[stop - 1]) if stop else account_full_at,
            rate,
            capacity,
            [
                float(line.ready_at[n]) if n < line.ready_at.size else line.frontier
                for line, n in zip(lines, counts, strict=True)
            ],  # walk no further than a line's frontier could let the schedule stand
        )
        lane = np.concatenate((lane[:stop], np.asarray(walked.lane, dtype=np.int64)))
        index = np.concatenate((index[:stop], np.asarray(walked.position, dtype=np.int64)))
        key = np.concatenate((key[:stop], walked.eligible_at))
        grant_at = np.concatenate((grant_at[:stop], walked.grant_at))
        full_after = np.concatenate((full_after[:stop], walked.lane_full_at))
        account_after = np.concatenate((account_after[:stop], walked.account_full_at))
    expired = np.isnan(grant_at)
    deadline = np.concatenate([line.deadline[:n] for line, n in zip(lines, counts, strict=True)])
    offsets = np.concatenate(([0], np.cumsum(counts)))
    reached = np.where(expired, deadline[offsets[lane] + index], grant_at)
    plans = []
    for d, line in enumerate(lines):
        mine = np.flatnonzero(lane == d)  # in line order: a line's items keep their order
        dispatch = grant_at[mine]
        plans.append(
            LinePlan(
                dispatch_at=dispatch,
                expired=expired[mine],
                full_after=full_after[mine],
                head_after=_head_after(dispatch, line.head_since),
                account_wait_s=np.where(expired[mine], 0.0, dispatch - key[mine]),
                position=mine,
            )
        )
    return Schedule(lane, key, reached, account_after, plans, lane.size)


def _unchanged(lines: list[Line], counts: list[int], before: list[Line], plan: Schedule) -> int:
    """How much of an earlier round's sequence (`before`, `plan`) stands for `lines`: up to
    the first place where a line's first changed delivery (or its end) could enter it."""
    kept = plan.lane.size
    for d, (line, old, mine) in enumerate(zip(lines, before, plan.lines, strict=True)):
        n = min(counts[d], old.ready_at.size)
        differ = np.flatnonzero(
            (line.ready_at[:n] != old.ready_at[:n]) | (line.deadline[:n] != old.deadline[:n])
        )
        j = int(differ[0]) if differ.size else n  # the line's first changed (or last) place
        if j < mine.position.size:  # the old delivery there is no longer the same
            kept = min(kept, int(mine.position[j]))
        if j > mine.position.size:
            continue  # the change lies beyond what the earlier walk scheduled of this line
        at = line.ready_at[j] if j < line.ready_at.size else line.frontier
        head = float(mine.head_after[j - 1]) if j else line.head_since
        full = float(mine.full_after[j - 1]) if j else line.full_at
        lowest = lowest_key(float(at), head, full, line.rate, line.capacity)
        last = int(mine.position[j - 1]) if j else -1
        kept = min(kept, first_from(plan, lowest, d, last))
    return kept


def lowest_key(
    ready_at: float, head_since: float, full_at: float, rate: float | None, capacity: float
) -> float:
    """`after_destination`: the smallest key a delivery ready at or after `ready_at` could have
    in a line whose head took its place at `head_since` and whose bucket is in state `full_at`."""
    return policy.head_eligible_at(ready_at, head_since, policy.token_from(full_at, rate, capacity))


def first_from(schedule: Schedule, key: float, lane: int, after: int) -> int:
    """The first position of the sequence past `after` whose (key, lane) is at least
    (key, lane): where a delivery of that lane with that key would enter it."""
    keys = schedule.key
    low = int(np.searchsorted(keys, key, side="left"))
    high = int(np.searchsorted(keys, key, side="right"))
    if high > low:
        low += int(np.searchsorted(schedule.lane[low:high], lane, side="left"))
    return max(low, after + 1)


def before_destination(
    lines: list[Line], account_full_at: float, rate: float, capacity: float
) -> Schedule:
    """B5 `before_destination` (see the module docstring)."""
    order, lane, key = _sequence([line.ready_at for line in lines])
    deadline_all = np.concatenate([line.deadline for line in lines]) if lines else key
    deadline = deadline_all[order]
    grant, account_after, expired_account, resolved = token_times(
        key, deadline, account_full_at, rate, capacity
    )
    plans = []
    for d, line in enumerate(lines):
        mine = np.flatnonzero(lane[:resolved] == d)
        out = np.full(mine.size, np.nan)
        full_after = np.empty(mine.size)
        expired = expired_account[mine].copy()
        passed = np.flatnonzero(~expired)
        t, f, x, n = token_times(
            grant[mine[passed]], deadline[mine[passed]], line.full_at, line.rate, line.capacity
        )
        if n < passed.size:  # too many age-outs at the destination: resolve a prefix only
            resolved = min(resolved, int(mine[passed[n]]))
            t, f, x = t[:n], f[:n], x[:n]
            passed = passed[:n]
        out[passed] = np.where(x, np.nan, t)
        expired[passed] = x
        full_after[passed] = f
        full_after[:] = _carry(np.where(expired_account[mine], np.nan, full_after), line.full_at)
        wait = np.where(expired, 0.0, grant[mine] - key[mine])
        plans.append(
            LinePlan(out, expired, full_after, _head_after(out, line.head_since), wait, mine)
        )
    reached = np.where(expired_account, deadline, grant)
    return Schedule(lane, key, reached, account_after, plans, resolved)


def _carry(values: np.ndarray, first: float) -> np.ndarray:
    """NaN entries replaced by the last value before them (`first` at the start)."""
    filled = np.concatenate(([first], values))
    valid = ~np.isnan(filled)
    last = np.maximum.accumulate(np.where(valid, np.arange(filled.size), 0))
    return filled[last][1:]
