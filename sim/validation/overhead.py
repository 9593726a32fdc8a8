"""The live core's own overhead, measured per attempt, and records corrected for it.

Two overheads the model does not have (it is an ideal machine):

* **dispatch lag**: live dispatch time minus the token-bucket schedule recomputed with
  `policy.gcra_schedule` on the live ready times (oldest-ready first). It holds the ingestion
  commit, event-loop latency and timer granularity.
* **client excess**: the request latency the client saw minus what the endpoint says it spent
  (queue wait + service, or the client timeout when that came first). It holds connection
  setup, request/response transfer and the endpoint's own scheduling latency.

`corrected_records` re-times the live attempts on an ideal core — token-bucket dispatch,
the endpoint's own response times, the same waits between attempts — keeping every decision
and every endpoint response as it happened live.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import policy
from sim.endpoint.server import RequestRecord
from sim.records import Chunk
from sim.validation.bus_timing import Lines, attempt_chains, ideal_bus_dispatch, lines_of
from sim.validation.live import EVENT_HEADER, RULE_HEADER, LiveRun


@dataclass
class Overhead:
    """Per-attempt overhead of a live run, aligned with `LiveRun.records` rows (NaN = unknown)."""

    dispatch_lag_s: np.ndarray
    client_excess_s: np.ndarray
    connect_s: np.ndarray  # endpoint arrival − client dispatch
    endpoint_lag_s: np.ndarray  # endpoint answer − (endpoint arrival + queue wait + service)
    loadgen_lag_s: np.ndarray  # per event: submission − scheduled arrival
    n_sent: int  # attempts the core recorded as sent
    n_requests: int  # requests the endpoint received
    n_unmatched: int  # sent attempts with no request in the endpoint's log
    n_orphans: int  # endpoint requests no recorded attempt accounts for

    def figures(self) -> dict[str, Any]:
        """p50/p99/max of each overhead (milliseconds) and the matching counts."""
        out: dict[str, Any] = {}
        for name in ("loadgen_lag_s", "dispatch_lag_s", "client_excess_s", "connect_s"):
            values = getattr(self, name)
            values = values[~np.isnan(values)]
            key = name.removesuffix("_s") + "_ms"
            out[key] = {
                q: (float(np.quantile(values, p)) * 1e3 if values.size else math.nan)
                for q, p in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
            }
        lag = self.endpoint_lag_s[~np.isnan(self.endpoint_lag_s)]
        out["endpoint_lag_ms"] = {
            "p50": float(np.median(lag)) * 1e3 if lag.size else math.nan,
            "p99": float(np.quantile(lag, 0.99)) * 1e3 if lag.size else math.nan,
            "max": float(lag.max()) * 1e3 if lag.size else math.nan,
        }
        out.update(
            attempts_sent=self.n_sent,
            endpoint_requests=self.n_requests,
            attempts_without_request=self.n_unmatched,
            requests_without_attempt=self.n_orphans,
        )
        return out


def ideal_dispatch(records: Chunk, rate: float | None, burst: float) -> np.ndarray:
    """Token-bucket dispatch times of the sent attempts, served oldest-ready first (NaN if unsent)."""
    sent = np.flatnonzero(~np.isnan(records["dispatch_at"]))
    order = sent[np.lexsort((records["dispatch_at"][sent], records["ready_at"][sent]))]
    ideal = np.full(records["dispatch_at"].size, np.nan)
    ideal[order], _ = policy.gcra_schedule(0.0, rate, burst, records["ready_at"][order])
    return ideal


def bus_lines(live: LiveRun) -> Lines:
    """The destination and rule of each of a bus run's record rows."""
    return lines_of(live.scenario.bus, live.records, live.rule_of_delivery)


def measure(live: LiveRun) -> Overhead:
    """Dispatch lag and client excess of every attempt, by matching attempts to endpoint requests.

    For a bus, the ideal schedule is the destinations' and the account's buckets together
    (`bus_timing.ideal_bus_dispatch`), and each attempt's client timeout its destination's.
    """
    records, bus = live.records, live.scenario.bus
    dispatch = records["dispatch_at"]
    if live.scenario.is_bus:
        lines = bus_lines(live)
        lag = dispatch - ideal_bus_dispatch(bus, lines, records)[0]
        timeouts = np.array([d.timeout for d in bus.destinations])[lines.destination]
    else:
        destination = live.scenario.destination
        lag = dispatch - ideal_dispatch(
            records, destination.invocation_rate_limit_per_second, destination.burst
        )
        timeouts = np.full(dispatch.size, destination.timeout)
    matched = _match(live)
    n = dispatch.size
    excess, connect, endpoint_lag = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for row, request in matched.items():
        endpoint_s = request.queue_wait_s + request.service_s
        if records["status"][row] == policy.STATUS_TIMEOUT:
            endpoint_s = timeouts[row]
        excess[row] = records["complete_at"][row] - dispatch[row] - endpoint_s
        connect[row] = request.arrival_at - dispatch[row]
        if request.completed_at is not None:
            planned = request.arrival_at + request.queue_wait_s + request.service_s
            endpoint_lag[row] = request.completed_at - planned
    n_sent = int((~np.isnan(dispatch)).sum())
    return Overhead(
        dispatch_lag_s=lag,
        client_excess_s=excess,
        connect_s=connect,
        endpoint_lag_s=endpoint_lag,
        loadgen_lag_s=live.submitted_at - live.scheduled_at,
        n_sent=n_sent,
        n_requests=len(live.requests),
        n_unmatched=n_sent - len(matched),
        n_orphans=len(live.requests) - len(matched),
    )


def _match(live: LiveRun) -> dict[int, RequestRecord]:
    """Record row -> the endpoint request it made: the k-th request carrying an event's id (and,
    for a bus, its rule) is that delivery's attempt k (attempts of one delivery never overlap)."""
    by_delivery: dict[tuple[int, str], list[RequestRecord]] = {}
    for request in sorted(live.requests, key=lambda r: r.arrival_at):
        event = request.headers.get(EVENT_HEADER)
        if event is not None and event.isdigit():
            rule = request.headers.get(RULE_HEADER, "")
            by_delivery.setdefault((int(event), rule), []).append(request)
    records, out = live.records, {}
    for row in np.flatnonzero(~np.isnan(records["dispatch_at"])):
        delivery = int(records["event_id"][row])
        index = live.event_of_delivery.get(delivery)
        rule = live.rule_of_delivery.get(delivery, "")
        seen = by_delivery.get((index, rule), []) if index is not None else []
        k = int(records["attempt"][row]) - 1
        if k < len(seen):
            out[int(row)] = seen[k]
    return out


def corrected_records(
    records: Chunk, overhead: Overhead, rate: float | None, burst: float
) -> Chunk:
    """The live attempts re-timed on an ideal core: what the model's clock would have recorded.

    Every decision stays as it happened live (statuses, hangs, Retry-After, backoff draws,
    finals) and so do the endpoint's response times (client time minus client excess); what
    changes is when things happen. Attempts are replayed oldest-ready first through a fresh
    token bucket (`policy.TokenBucket`, as the model serves them): an attempt is dispatched at
    its token time, completes after its response time, and the event's next attempt is ready
    after the same wait (backoff or Retry-After) as live. Arrivals stay as submitted; age-outs
    keep their deadline (arrival + maximum age).
    """
    sent = ~np.isnan(records["dispatch_at"])
    excess = np.nan_to_num(overhead.client_excess_s)
    response = records["complete_at"] - records["dispatch_at"] - excess
    wait = records["next_ready_at"] - records["complete_at"]
    following, first = attempt_chains(records)
    out = {name: column.copy() for name, column in records.items()}
    bucket = policy.TokenBucket(rate, burst)
    queue = [(float(records["ready_at"][i]), int(i)) for i in np.flatnonzero(first)]
    heapq.heapify(queue)
    while queue:
        ready_at, i = heapq.heappop(queue)
        out["ready_at"][i] = ready_at
        if not sent[i]:
            continue  # aged out or not sent: no token, its end fixed by the arrival
        dispatch_at = bucket.take(ready_at)
        complete_at = dispatch_at + response[i]
        out["dispatch_at"][i], out["complete_at"][i] = dispatch_at, complete_at
        out["next_ready_at"][i] = complete_at + wait[i]
        if following[i] >= 0:
            heapq.heappush(queue, (complete_at + wait[i], int(following[i])))
    return out


CONFORMANCE_TOLERANCE_S = 0.005
"""How far ahead of the ideal schedule (or out of order) a live dispatch may be before it counts.

The live core takes its token on the same `policy.TokenBucket` the model uses and records the
dispatch when the attempt's task starts, never before, so a conforming core is never ahead of
the ideal schedule at all: the tolerance only absorbs clock and float noise. 5 ms is above
the event loop's timer granularity (~1 ms) and the p50 dispatch lag (1–2 ms), and far below
what a wrong core shows (a doubled rate is seconds ahead within a minute; a LIFO queue in a
backlog overtakes by seconds)."""


@dataclass
class Conformance:
    """Did the live core keep to the configured schedule? Part of the verdict.

    The overhead correction re-times attempts *later-is-fixable*: it may only remove lateness.
    A core that sends earlier than the token bucket allows, or out of the configured order,
    has a genuine defect that the ideal re-timing would otherwise hide, so either FAILs.
    """

    tolerance_s: float
    attempts: int  # sent attempts checked
    ahead: int  # ranks k where the k-th live dispatch precedes the ideal k-th token
    ahead_max_s: float
    before_ready: int  # attempts dispatched before they were ready
    before_ready_max_s: float
    out_of_order: int  # attempts sent while an attempt ready earlier was still waiting
    out_of_order_max_s: float  # how much earlier the overtaken attempt had been ready

    @property
    def ok(self) -> bool:
        return self.ahead == 0 and self.before_ready == 0 and self.out_of_order == 0

    def problems(self) -> list[str]:
        """One line per violation kind (empty when the core conformed)."""
        tol = f"{self.tolerance_s * 1e3:g} ms"
        out = []
        if self.ahead:
            out.append(
                f"core dispatched ahead of the token bucket: {self.ahead:,} of "
                f"{self.attempts:,} dispatches earlier than the ideal schedule allows by more "
                f"than {tol} (at most {self.ahead_max_s * 1e3:,.1f} ms)"
            )
        if self.before_ready:
            out.append(
                f"core dispatched attempts before they were ready: {self.before_ready:,} by more "
                f"than {tol} (at most {self.before_ready_max_s * 1e3:,.1f} ms)"
            )
        if self.out_of_order:
            out.append(
                f"core sent attempts out of the configured (oldest-ready first) order: "
                f"{self.out_of_order:,} overtook an attempt ready more than {tol} earlier (by up "
                f"to {self.out_of_order_max_s * 1e3:,.1f} ms)"
            )
        return out

    def figures(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tolerance_ms": self.tolerance_s * 1e3,
            "attempts": self.attempts,
            "ahead": self.ahead,
            "ahead_max_ms": self.ahead_max_s * 1e3,
            "before_ready": self.before_ready,
            "before_ready_max_ms": self.before_ready_max_s * 1e3,
            "out_of_order": self.out_of_order,
            "out_of_order_max_ms": self.out_of_order_max_s * 1e3,
            "problems": self.problems(),
        }


def conformance(
    records: Chunk,
    rate: float | None,
    burst: float,
    tolerance_s: float = CONFORMANCE_TOLERANCE_S,
    *,
    check_order: bool = True,
) -> Conformance:
    """Check the live core against the schedule the correction assumes (oldest-ready first).

    * **Rate**: the k-th live dispatch (in time order) must not precede the k-th token of the
      ideal token bucket on the live ready times by more than `tolerance_s`. The greedy ideal
      schedule gives the earliest k-th dispatch any bucket-conforming core can achieve, in any
      order, so this catches a faster rate or a bigger burst whatever the core's order.
    * **Ready**: no attempt dispatched more than `tolerance_s` before its ready time.
    * **Order**: no attempt sent while another, ready more than `tolerance_s` earlier, was
      still waiting and went more than `tolerance_s` later (FIFO, `throttle_order: fifo`);
      `check_order=False` leaves it out (the account's bucket, shared by lines served oldest
      *eligible* first).
    """
    sent = ~np.isnan(records["dispatch_at"])
    ready, dispatch = records["ready_at"][sent], records["dispatch_at"][sent]
    n = int(dispatch.size)
    if n == 0:
        return Conformance(tolerance_s, 0, 0, 0.0, 0, 0.0, 0, 0.0)
    ideal, _ = policy.gcra_schedule(0.0, rate, burst, np.sort(ready))
    ahead = np.sort(ideal) - np.sort(dispatch)
    early = ready - dispatch
    skipped = np.zeros(0)
    if check_order:
        by_dispatch = np.argsort(dispatch, kind="stable")
        r, d = ready[by_dispatch], dispatch[by_dispatch]
        # oldest ready time among attempts dispatched more than `tolerance_s` after each one
        oldest_later = np.append(np.minimum.accumulate(r[::-1])[::-1], np.inf)
        skipped = r - oldest_later[np.searchsorted(d, d + tolerance_s, side="right")]

    def count(excess: np.ndarray) -> tuple[int, float]:
        bad = excess > tolerance_s
        return int(bad.sum()), float(excess[bad].max()) if bad.any() else 0.0

    return Conformance(tolerance_s, n, *count(ahead), *count(early), *count(skipped))


def bus_conformance(live: LiveRun, tolerance_s: float = CONFORMANCE_TOLERANCE_S) -> Conformance:
    """`conformance` of a bus run: each destination's bucket and order on its own attempts,
    and the account's bucket on all of them; the counts add up, the maxima are the largest."""
    records, bus = live.records, live.scenario.bus
    lines = bus_lines(live)
    parts = []
    for index, destination in enumerate(bus.destinations):
        rows = {name: column[lines.destination == index] for name, column in records.items()}
        rate = destination.invocation_rate_limit_per_second
        parts.append(conformance(rows, rate, destination.burst, tolerance_s))
    account = bus.account
    if account.invocation_limit_per_second is not None:
        limit = account.invocation_limit_per_second
        parts.append(conformance(records, limit, account.burst, tolerance_s, check_order=False))
    return Conformance(
        tolerance_s,
        sum(p.attempts for p in parts[: len(bus.destinations)]),
        sum(p.ahead for p in parts),
        max(p.ahead_max_s for p in parts),
        sum(p.before_ready for p in parts[: len(bus.destinations)]),
        max(p.before_ready_max_s for p in parts),
        sum(p.out_of_order for p in parts),
        max(p.out_of_order_max_s for p in parts),
    )
