"""Every destination's block at once, under the account quota (B4, B5).

With an account quota the destinations are no longer independent: every attempt takes an
account token, so which delivery goes next depends on all lines. `Joint.step` takes a block of
each line, schedules them together (`sim.des.account`: a *sequence* in the order the account
saw them), decides the attempts lane by lane (`Lane.attempt`) and commits the longest prefix
of the sequence that nothing unknown could change:

* a line whose block ends (it held no more items ready before the release frontier, or was
  cut at its block size) could still receive a delivery that overtakes what comes after its
  last item (its *frontier*);
* a retry born inside the block joins its line by ready time; as for one line, the block is
  rescheduled with those retries merged in until the retries it holds are exactly the ones its
  attempts produce, and a retry that would have entered the sequence earlier cuts it there.

Cuts change the cost, never the result: the tests run it one item at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.des.account import (
    Line,
    Schedule,
    after_destination,
    before_destination,
    first_from,
    lowest_key,
)
from sim.des.items import Items, empty, merge, sort_by_ready
from sim.des.lane import Lane, children_of
from sim.des.selection import MAX_ROUNDS, carried_over_items, identity
from sim.scenario.model import Account


@dataclass
class Proposal:
    """One joint block: each lane's items (queue items and merged retries) and their schedule."""

    items: list[Items]
    from_queue: list[np.ndarray]
    lines: list[Line]
    schedule: Schedule
    length: int  # the sequence's prefix that nothing unknown could change
    finished: bool  # the prefix is empty because the next delivery leaves after the horizon


@dataclass
class LaneDecided:
    """One lane's attempts within the proposal's prefix, decided."""

    live: np.ndarray  # lane positions of the items sent
    rows: dict[str, np.ndarray]
    children: Items
    parents: np.ndarray  # lane position of each child's attempt
    cut: np.ndarray  # where each child would enter the sequence


class Joint:
    """The account bucket and the block loop over every lane."""

    def __init__(self, lanes: list[Lane], account: Account, horizon: float) -> None:
        assert account.invocation_limit_per_second is not None
        self.lanes = lanes
        self.rate = account.invocation_limit_per_second
        self.capacity = account.burst
        self.after = account.order == "after_destination"
        self.full_at = 0.0  # the account bucket: full from this instant on
        self.horizon = horizon

    def step(self, before: float) -> float | None:
        """Serve one joint block of items ready before `before`.

        Returns the last time reached, None when nothing can be scheduled before the release
        frontier, inf when the next delivery could only leave after the horizon."""
        lanes = self.lanes
        peeks = [lane.queue.peek(lane.block, before) for lane in lanes]
        if not any(p.size for p in peeks):
            return None
        bounds = [
            float(p.ready_at[-1]) if p.size == lane.block else before
            for p, lane in zip(peeks, lanes, strict=True)
        ]
        inside = [empty() for _ in lanes]
        previous: tuple[Proposal, list[LaneDecided]] | None = None
        for round_ in range(MAX_ROUNDS + 1):
            earlier = None if previous is None else previous[0]
            proposal = self._propose(peeks, inside, bounds, earlier)
            if proposal.length == 0:
                return np.inf if proposal.finished else None
            decided = [self._decide(proposal, d, previous) for d in range(len(lanes))]
            previous = proposal, decided
            wanted = [dec.children[dec.cut < proposal.length] for dec in decided]
            merged = [it[~fq] for it, fq in zip(proposal.items, proposal.from_queue, strict=True)]
            if all(_as_map(m) == _as_map(w) for m, w in zip(merged, wanted, strict=True)):
                break
            if round_ < MAX_ROUNDS:
                inside = wanted
        k = self._settled(proposal, decided)
        return self._commit(proposal, decided, k)

    # --- scheduling -----------------------------------------------------------------------

    def _propose(
        self,
        peeks: list[Items],
        inside: list[Items],
        bounds: list[float],
        earlier: Proposal | None = None,
    ) -> Proposal:
        items, from_queue = [], []
        for peeked, extra in zip(peeks, inside, strict=True):
            merged, mask = merge(peeked, sort_by_ready(extra))
            items.append(merged)
            from_queue.append(mask)
        lines = [
            Line(
                it.ready_at,
                lane.rules.deadline(it.arrival_at, it.event_id),
                lane.rate,
                lane.capacity,
                lane.full_at,
                lane.head_since,
                bound,
            )
            for it, lane, bound in zip(items, self.lanes, bounds, strict=True)
        ]
        if self.after:
            reuse = None if earlier is None else (earlier.lines, earlier.schedule)
            plan = after_destination(lines, self.full_at, self.rate, self.capacity, reuse)
        else:
            plan = before_destination(lines, self.full_at, self.rate, self.capacity)
        length = plan.resolved
        beyond = np.flatnonzero(plan.reached[:length] >= self.horizon)
        horizon_cut = int(beyond[0]) if beyond.size else length
        length = min(length, horizon_cut)
        for d, (lane, bound) in enumerate(zip(self.lanes, bounds, strict=True)):
            line = plan.lines[d]
            if line.position.size < items[d].size:  # too many age-outs: the rest is unknown
                bound = float(items[d].ready_at[line.position.size])
            if line.position.size:
                last = int(line.position[-1])
                if last >= length:
                    continue  # its block reaches past the prefix: no frontier inside it
                lowest = self._lowest_key(lane, bound, line.head_after[-1], line.full_after[-1])
            else:
                last = -1
                lowest = self._lowest_key(lane, bound, lane.head_since, lane.full_at)
            length = min(length, first_from(plan, lowest, d, last))
        return Proposal(items, from_queue, lines, plan, length, horizon_cut == 0)

    def _lowest_key(self, lane: Lane, ready_at: float, head_since: float, full_at: float) -> float:
        """The smallest key a delivery ready at or after `ready_at` could have in this lane."""
        if not self.after:
            return ready_at
        return lowest_key(ready_at, float(head_since), float(full_at), lane.rate, lane.capacity)

    # --- deciding -------------------------------------------------------------------------

    def _decide(
        self, proposal: Proposal, d: int, previous: tuple[Proposal, list[LaneDecided]] | None
    ) -> LaneDecided:
        """Lane d's attempts within the prefix; those the `previous` round of the block decided
        for the same delivery at the same dispatch time are reused (their draws are keyed to
        the attempt, their decision depends on nothing else)."""
        lane, items = self.lanes[d], proposal.items[d]
        line = proposal.schedule.lines[d]
        live = np.flatnonzero(
            (line.position < proposal.length)
            & ~line.expired
            & (np.nan_to_num(line.dispatch_at, nan=np.inf) < self.horizon)
        )
        if not live.size:
            none = np.zeros(0, dtype=np.int64)
            return LaneDecided(live, {}, empty(), none, none)
        sent, dispatch_at = items[live], line.dispatch_at[live]
        match = None
        if previous is not None and lane.server is None and previous[1][d].live.size:
            match = _reusable(proposal, d, live, dispatch_at, *previous)
        if match is None or previous is None or not (match >= 0).any():
            rows = lane.attempt(sent, dispatch_at)
        else:
            fresh = match < 0
            new = lane.attempt(sent[fresh], dispatch_at[fresh])
            rows = {}
            before = previous[1][d].rows
            for name, column in new.items():  # one gather, then the few fresh rows
                rows[name] = before[name][match]
                rows[name][fresh] = column
        rows["account_wait_s"] = line.account_wait_s[live]
        children, parents = children_of(sent, rows)
        parents = live[parents]
        return LaneDecided(live, rows, children, parents, self._cuts(proposal, d, children))

    def _cuts(self, proposal: Proposal, d: int, children: Items) -> np.ndarray:
        """Where each retry would enter the sequence: after the queue items of its line ready
        by its ready time, at the first place whose key reaches the smallest key it could have."""
        lane, items = self.lanes[d], proposal.items[d]
        line = proposal.schedule.lines[d]
        queued = np.flatnonzero(proposal.from_queue[d])
        at = np.searchsorted(items.ready_at[queued], children.ready_at, side="right") - 1
        cuts = np.empty(children.size, dtype=np.int64)
        for c, (ready, q) in enumerate(zip(children.ready_at.tolist(), at.tolist(), strict=True)):
            if q < 0:
                last, head, full = -1, lane.head_since, lane.full_at
            elif queued[q] >= line.position.size:  # after the items left unscheduled
                cuts[c] = np.iinfo(np.int64).max
                continue
            else:
                i = int(queued[q])
                last, head, full = int(line.position[i]), line.head_after[i], line.full_after[i]
            lowest = self._lowest_key(lane, ready, head, full)
            cuts[c] = first_from(proposal.schedule, lowest, d, last)
        return cuts

    def _settled(self, proposal: Proposal, decided: list[LaneDecided]) -> int:
        """The prefix of the sequence unchanged by the retries born in the block."""
        cuts = [proposal.length]
        for d, dec in enumerate(decided):
            inside = dec.cut < proposal.length
            want = dict(zip(identity(dec.children[inside]).tolist(), dec.cut[inside].tolist(),
                            strict=True))  # fmt: skip
            want_at = _as_map(dec.children[inside])
            items, from_queue = proposal.items[d], proposal.from_queue[d]
            merged = np.flatnonzero(~from_queue)
            have = _as_map(items[merged])
            for key, at in want_at.items():
                if have.get(key) != at:  # missing: it would have entered the sequence there
                    cuts.append(want[key])
            position = proposal.schedule.lines[d].position
            for key, i in zip(identity(items[merged]).tolist(), merged.tolist(), strict=True):
                if i >= position.size:  # left unscheduled: it would come after the prefix
                    continue
                if want_at.get(key) != have[key]:  # stale: no longer born, or born at another time
                    cuts.append(int(position[i]))
        return min(cuts)

    # --- committing -----------------------------------------------------------------------

    def _commit(self, proposal: Proposal, decided: list[LaneDecided], k: int) -> float:
        """Keep the first k deliveries of the sequence: every lane's share of them."""
        last = -np.inf
        schedule = proposal.schedule
        for d, lane in enumerate(self.lanes):
            line, dec = schedule.lines[d], decided[d]
            items = proposal.items[d]
            n = int(np.searchsorted(line.position, k))  # this lane's items among the first k
            if not items.size:
                continue
            if n < items.size:  # cut: next time about twice what it kept (lines move together)
                lane.block = min(lane.max_block, max(lane.min_block, 2 * n))
            else:
                lane.resize_block(cut=False)
            if n == 0:
                continue
            from_queue = proposal.from_queue[d][:n]
            lane.queue.consume(int(np.count_nonzero(from_queue)))
            lane.full_at = float(line.full_after[n - 1])
            lane.head_since = float(line.head_after[n - 1])
            taken = int(np.searchsorted(dec.live, n))
            rows = {name: column[:taken] for name, column in dec.rows.items()}
            kept = items[:n]
            deadline = lane.rules.deadline(kept.arrival_at, kept.event_id)
            expired = line.expired[:n] & (deadline < self.horizon)
            lane.keep(
                kept,
                from_queue,
                items[dec.live[:taken]],
                rows,
                taken == dec.live.size,
                dec.children[dec.parents < n],
                expired,
            )
            if taken:
                last = max(last, float(rows["dispatch_at"][-1]))
            if expired.any():
                last = max(last, float(deadline[expired].max()))
        self.full_at = float(schedule.account_after[k - 1])
        return min(last, self.horizon)


def _reusable(
    proposal: Proposal,
    d: int,
    live: np.ndarray,
    dispatch_at: np.ndarray,
    previous: Proposal,
    decided: list[LaneDecided],
) -> np.ndarray:
    """For each attempt lane d sends in `proposal`, the row of the previous round's decision of
    the same delivery (same identity, arrival and previous backoff) at the same dispatch time,
    or -1 where it must be decided anew."""
    before_items, dec = previous.items[d], decided[d]
    to_row = np.full(before_items.size, -1, dtype=np.int64)
    to_row[dec.live] = np.arange(dec.live.size)
    items = proposal.items[d]
    before = carried_over_items(items, proposal.from_queue[d], before_items, previous.from_queue[d])
    before = before[live]
    match = np.where(before >= 0, to_row[np.maximum(before, 0)], -1)
    seen = np.flatnonzero(match >= 0)
    now, then = items[live[seen]], before_items[before[seen]]
    same = (
        (dec.rows["dispatch_at"][match[seen]] == dispatch_at[seen])
        & (now.event_id == then.event_id)
        & (now.retries_done == then.retries_done)
        & (now.arrival_at == then.arrival_at)
        & _same_floats(now.previous_backoff_s, then.previous_backoff_s)
    )
    match[seen[~same]] = -1
    return match


def _same_floats(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _as_map(items: Items) -> dict[int, float]:
    return dict(zip(identity(items).tolist(), items.ready_at.tolist(), strict=True))
