"""The asyncio delivery core: rules -> input -> token bucket -> HTTP -> policy decision (S1-S13).

`DeliveryCore` accepts events (persisting them before it returns), matches them against the
rules of their event bus, and delivers one copy per matching target. Each API destination
has one `Lane`: a token bucket shared by every rule targeting it, serving ready deliveries
oldest-ready first; with `sim.account_invocation_limit_per_second`, every attempt of every
lane also takes a token of the account's quota (`account.AccountGate`). Every decision —
classification, backoff, Retry-After, limits, DLQ or drop — is made by `sim.policy`, the
module the SimPy model uses; this file only wires it to real time and real HTTP. Every attempt becomes a row in the shared attempt-record schema,
sent to an optional sink (e.g. `sim.results.accumulator.Accumulator`).

Times in records are seconds since `start()` (a monotonic clock); the store keeps epoch
seconds, so deliveries resumed after a restart have negative `arrival_at`.

Usage::

    core = DeliveryCore(config, "core.db", sink=accumulator)
    await core.start()                 # resumes pending deliveries from the database
    await core.submit([event, ...])    # persisted when this returns
    await core.wait_idle()             # every accepted event delivered, dead-lettered or dropped
    await core.stop()
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sim import policy
from sim.live.config.resources import CoreConfig, Rule, redact
from sim.live.delivery.account import AccountGate, take_tokens
from sim.live.delivery.auth import Deauthorized
from sim.live.delivery.connections import Connections
from sim.live.delivery.endings import Endings
from sim.live.delivery.lanes import Delivery, Lane, Route
from sim.live.delivery.loop_lag import LoopLag
from sim.live.delivery.recorder import Recorder
from sim.live.delivery.request import HttpRequest, InvalidParameter, build_request
from sim.live.delivery.store import (
    Durability,
    Finish,
    NewEvent,
    PendingDelivery,
    Retry,
    Store,
    StoreWriter,
)
from sim.live.delivery.transport import Response, Transport
from sim.live.eventbridge.transform import TargetContext
from sim.records import Sink
from sim.rng import generator

log = logging.getLogger("sim.live")

NOT_DELIVERED_BY_TRANSFORM = "INVALID_JSON"
"""ERROR_CODE of an event whose input transformer produced no valid JSON (nothing is sent)."""


class DeliveryCore:
    """The live delivery core for one config and one database (see the module docstring)."""

    def __init__(
        self,
        config: CoreConfig,
        db_path: str | Path,
        sink: Sink | None = None,
        *,
        replication: int = 0,
        durability: Durability = "normal",
    ) -> None:
        self.config = config
        self.db_path = Path(db_path)
        self.durability: Durability = durability
        self.recorder = Recorder(sink, replication)
        self.transport = Transport(config.sim.timeout, config.sim.allow_private_endpoints)
        seed = config.sim.seed if config.sim.seed is not None else np.random.SeedSequence().entropy
        self._rng = generator(int(seed) % 2**63, replication, "backoff")  # type: ignore[arg-type]
        self._table = policy.outcome_table(config.sim.retry_statuses)
        self._lanes: dict[str, Lane] = {}
        self._account: AccountGate | None = None  # the account's invocation quota, if any
        self.connections = Connections(config, self.transport.send, self.redact)
        self._routes: dict[tuple[str, str, str], Route] = {}  # (bus, rule, target id)
        self._rules: dict[str, list[Rule]] = {}
        self._writer: StoreWriter | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._live = 0  # deliveries accepted and not yet ended
        self._submitting = 0
        self._idle = asyncio.Event()
        self._started_mono = 0.0
        self.loop_lag = LoopLag()  # how late the event loop runs (logged when it lags)
        self.started_epoch = 0.0
        self.orphans = 0  # pending deliveries in the database whose rule/target is gone
        self.accepted = 0  # events accepted since start()
        self._endings = Endings(
            self.recorder, self._store_finish, self.epoch, self.redact, self._ended
        )

    # --- clock ----------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since core time zero (`start()`, or its `t0`), on the monotonic clock."""
        return time.monotonic() - self._started_mono

    def epoch(self, at: float | None = None) -> float:
        """Epoch seconds of core time `at` (default: now)."""
        return self.started_epoch + (self.now() if at is None else at)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, t0: float | None = None) -> None:
        """Open the database and HTTP client, resume pending deliveries, start dispatching.

        `t0` is a `time.monotonic()` instant taken as core time zero (e.g. a local endpoint's,
        so records and the endpoint's log share one clock); by default, now.
        """
        mono, epoch = time.monotonic(), time.time()
        self._started_mono = mono if t0 is None else t0
        self.started_epoch = epoch - (mono - self._started_mono)
        self._build_routes()
        store = await asyncio.to_thread(Store, self.db_path, self.durability)
        self._writer = StoreWriter(store)
        self._writer.start()
        await self.connections.restore(self._writer, store)
        self.loop_lag.start()
        # What is alive now (modules, config, routes) lives as long as the core: leave it out
        # of the cyclic GC, whose full collections over it stall the loop for tens of ms.
        gc.freeze()
        await self.transport.start()
        pending = await self._writer.call(store.pending)
        for row in pending:
            self._resume(row)
        self._dispatchers = [
            asyncio.create_task(self._dispatch(lane), name=f"lane-{name}")
            for name, lane in self._lanes.items()
        ]
        if self._account is not None:
            self._account.start()
        self._update_idle()
        if pending:
            log.info("resumed %d pending deliveries", len(pending) - self.orphans)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop dispatching; let attempts in flight finish for up to `grace_s`, then cancel them.

        Deliveries not ended stay pending in the database and resume on the next start.
        """
        for task in self._dispatchers:
            task.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        if self._account is not None:
            await self._account.stop()
        if self._tasks and grace_s > 0:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._endings.cancel_timers()
        self.recorder.flush()
        await self.transport.close()
        await self.loop_lag.stop()
        gc.unfreeze()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def wait_idle(self) -> None:
        """Wait until every accepted delivery has ended; then flush records and the store."""
        while True:
            await self._idle.wait()
            self.recorder.flush()
            assert self._writer is not None
            await self._writer.drain()
            if self._idle.is_set():
                return

    @property
    def live(self) -> int:
        """Deliveries accepted and not yet ended."""
        return self._live

    # --- accepting events -----------------------------------------------------------------

    async def submit(self, events: Sequence[Mapping[str, Any]], bus: str = "default") -> list[str]:
        """Accept events on an event bus: persisted with their deliveries before this returns.

        Their deliveries may be dispatched before the commit completes (see the comment below).

        Events are EventBridge events (`id`, `source`, `detail-type`, `detail`, ...); a
        missing `id` is filled in. Returns the event ids.
        """
        assert self._writer is not None, "start() the core first"
        accepted_epoch = time.time()
        arrival_at = self.now()
        batch, routes = [], []
        for raw in events:
            event = dict(raw)
            event.setdefault("id", str(uuid.uuid4()))
            matched = self.match(event, bus)
            routes.append(matched)
            targets = [(r.rule.Name, r.target.Id) for r in matched]
            batch.append(NewEvent(str(event["id"]), bus, _json(event), accepted_epoch, targets))
        self._submitting += 1
        self._idle.clear()
        # The deliveries are dispatched while their commit is under way (their ids are final):
        # the commit is not in the dispatch path. The events are acknowledged (this returns)
        # only once committed; an attempt made for an event whose commit then fails is at
        # worst a duplicate, as the submitter, never acknowledged, sends the event again.
        ids, committed = self._writer.accept_soon(batch)
        arrivals = []
        for new, matched, delivery_ids in zip(batch, routes, ids, strict=True):
            event = _parse(new.body)  # the stored form, exactly as a resumed delivery sees it
            for route, delivery_id in zip(matched, delivery_ids, strict=True):
                delivery = Delivery(
                    delivery_id, event, accepted_epoch, route, arrival_at, ready_at=arrival_at
                )
                self._live += 1
                self._enqueue(delivery)
                arrivals.append(arrival_at)
        self.recorder.arrivals(arrivals)
        try:
            await committed
        finally:
            self._submitting -= 1
            self._update_idle()
        self.accepted += len(batch)
        return [new.event_id for new in batch]

    def match(self, event: Mapping[str, Any], bus: str = "default") -> list[Route]:
        """The rule targets an event goes to: enabled rules of its bus whose pattern matches."""
        routes: list[Route] = []
        for rule in self._rules.get(bus, []):
            if rule.State == "ENABLED" and rule.pattern.matches(event):
                routes.extend(self._routes[(bus, rule.Name, t.Id)] for t in rule.Targets)
        return routes

    # --- wiring ---------------------------------------------------------------------------

    def _build_routes(self) -> None:
        config = self.config
        quota = config.sim.account_quota
        if quota.invocation_limit_per_second is not None:
            bucket = policy.TokenBucket(quota.invocation_limit_per_second, quota.burst)
            self._account = AccountGate(
                bucket, quota.order, self.now, Lane.push_to_lane, self._age_out_later
            )
        for rank, destination in enumerate(config.ApiDestinations):
            connection = config.connection_of(destination)
            bucket = policy.TokenBucket(
                destination.InvocationRateLimitPerSecond, config.burst(destination)
            )
            auth = self.connections[connection.Name]  # shared by every lane it authorizes
            self._lanes[destination.Name] = Lane(
                destination, connection, auth, bucket, config.sim.throttle_order, rank
            )
        for rule in config.Rules:
            self._rules.setdefault(rule.EventBusName, []).append(rule)
            for target in rule.Targets:
                dlq = target.DeadLetterConfig
                self._routes[(rule.EventBusName, rule.Name, target.Id)] = Route(
                    rule=rule,
                    target=target,
                    rule_arn=config.rule_arn(rule),
                    target_arn=config.target_arn(target),
                    retry_policy=config.retry_policy(target),
                    dead_letter_arn=dlq.Arn if dlq is not None else None,
                    lane=self._lanes[config.destination_of(target).Name],
                )

    def _resume(self, row: PendingDelivery) -> None:
        route = self._routes.get((row.bus, row.rule, row.target))
        if route is None:
            self.orphans += 1
            log.warning(
                "delivery %d: rule %s target %s is not in this config; left pending",
                row.id, row.rule, row.target,
            )  # fmt: skip
            return
        delivery = Delivery(
            id=row.id,
            event=_parse(row.body),
            accepted_epoch=row.accepted_at,
            route=route,
            arrival_at=row.accepted_at - self.started_epoch,
            ready_at=row.ready_at - self.started_epoch,
            retries_done=row.retries_done,
            previous_backoff_s=_nan_if_none(row.previous_backoff_s),
            last_status=row.last_status,
            last_message=row.last_message or "",
        )
        self._live += 1
        self._enqueue(delivery)

    def _enqueue(self, delivery: Delivery) -> None:
        """A delivery (new, resumed or to retry) waits for its ready time: in the account's line
        first with a `before_destination` quota, else in its destination's lane."""
        if self._account is not None and self._account.before_destination:
            self._account.push(delivery)
        else:
            delivery.route.lane.push(delivery)

    # --- dispatching ----------------------------------------------------------------------

    async def _dispatch(self, lane: Lane) -> None:
        """Serve a lane forever: next ready delivery, its token, then its attempt."""
        while True:
            delivery = lane.pop(self.now())
            if delivery is None:
                lane.changed.clear()
                wait = lane.next_ready_at() - self.now()
                try:  # asyncio.timeout, not wait_for: no extra task, no extra loop iteration
                    async with asyncio.timeout(None if wait == math.inf else wait):
                        await lane.changed.wait()
                except TimeoutError:
                    pass
                continue
            try:
                await self._serve(lane, delivery)
            except Exception as err:  # a bug must not stop the lane or lose the delivery
                log.exception("delivery %d: unexpected error while dispatching", delivery.id)
                self._endings.not_sent(delivery, "INTERNAL_ERROR", type(err).__name__, self.now())

    async def _serve(self, lane: Lane, delivery: Delivery) -> None:
        try:
            request = self._request(delivery)
        except InvalidParameter as err:
            self._endings.not_sent(delivery, err.error_code, str(err), self.now())
            return
        if request is None:
            message = "the input transformer produced no valid JSON; nothing was sent"
            self._endings.not_sent(delivery, NOT_DELIVERED_BY_TRANSFORM, message, self.now())
            return
        # A delivery the core reaches late (commit latency, a busy loop) takes its token now:
        # tokens it "missed" must not let the next requests through faster than the limit.
        ready_at = max(delivery.ready_at, self.now())
        dispatch_at = await take_tokens(self._account, lane, delivery, ready_at)
        if dispatch_at is None:
            self._age_out_later(delivery)
            return
        delay = dispatch_at - self.now()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(self._attempt(lane, delivery, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if delay <= 0:  # yield anyway: a backlog served in one go must not hold up responses
            await asyncio.sleep(0)

    def _request(self, delivery: Delivery) -> HttpRequest | None:
        route = delivery.route
        context = TargetContext(
            rule_arn=route.rule_arn,
            rule_name=route.rule.Name,
            ingestion_time=datetime.fromtimestamp(delivery.accepted_epoch, UTC),
        )
        body = route.target.input_spec.render(delivery.event, context)
        if body is None:
            return None
        return build_request(
            route.lane.destination,
            route.lane.connection.AuthParameters.InvocationHttpParameters,
            route.target.HttpParameters,
            delivery.event,
            body,
        )

    async def _attempt(self, lane: Lane, delivery: Delivery, request: HttpRequest) -> None:
        """One invocation attempt: authorize, send, classify, decide (S4-S9, S11)."""
        dispatch_at = self.now()
        try:
            auth_headers = await lane.auth.headers()
        except Deauthorized as err:
            self._endings.not_sent(delivery, err.error_code, str(err), self.now())
            return
        try:
            response = await self.transport.send(request.with_auth(auth_headers))
        except Exception as err:  # a bug must not lose the delivery: count it as a failure
            log.exception("delivery %d: unexpected error while sending", delivery.id)
            response = Response(policy.STATUS_CONNECTION_ERROR, message=type(err).__name__)
        lane.auth.rejected(response.status, auth_headers)
        try:
            self._decide(delivery, dispatch_at, self.now(), response)
        except Exception as err:  # a bug must not leave the delivery pending forever
            log.exception("delivery %d: unexpected error while deciding", delivery.id)
            self._endings.not_sent(delivery, "INTERNAL_ERROR", type(err).__name__, self.now())

    def _decide(
        self, delivery: Delivery, dispatch_at: float, complete_at: float, response: Response
    ) -> None:
        route = delivery.route
        outcome = policy.classify(response.status, self._table)
        retry_after = policy.parse_retry_after(response.retry_after, self.epoch(complete_at))
        backoff_s = policy.backoff_delay(
            delivery.retries_done + 1,
            self._rng.random(),
            route.retry_policy.backoff,
            delivery.previous_backoff_s,
        )
        decision = policy.decide(
            outcome,
            delivery.retries_done,
            delivery.arrival_at,
            complete_at,
            backoff_s,
            math.nan if retry_after is None else retry_after,
            route.retry_policy,
            route.dead_letter_queue,
        )
        self.recorder.row(
            event_id=delivery.id,
            attempt=delivery.retries_done + 1,
            arrival_at=delivery.arrival_at,
            ready_at=delivery.ready_at,
            dispatch_at=dispatch_at,
            complete_at=complete_at,
            status=response.status,
            outcome=int(outcome),
            retry_after_s=retry_after,
            next_ready_at=float(decision.next_ready_at),
            final=int(decision.final),
            final_reason=int(decision.reason),
        )
        if decision.final == policy.NO_FINAL:
            message = self.redact(response.message)
            delivery.ready_at = float(decision.next_ready_at)
            delivery.retries_done += 1
            delivery.previous_backoff_s = float(backoff_s)
            delivery.last_status, delivery.last_message = response.status, message
            assert self._writer is not None
            self._writer.record(
                Retry(
                    delivery.id,
                    self.epoch(delivery.ready_at),
                    delivery.retries_done,
                    delivery.previous_backoff_s,
                    response.status,
                    message,
                )
            )
            self._enqueue(delivery)
            return
        error_code = policy.error_code(response.status)
        final, reason = int(decision.final), int(decision.reason)
        self._endings.finish(delivery, final, reason, error_code, response.message, complete_at)

    # --- ending deliveries ----------------------------------------------------------------

    def _age_out_later(self, delivery: Delivery) -> None:
        """The event reaches its maximum age before its token: it ends at that moment (S6)."""
        self._endings.age_out_later(delivery, self.now())

    def redact(self, text: str) -> str:
        """`text` without any secret: the config's and every connection's current credentials."""
        return redact(self.config.redact(text), self.connections.secrets())

    def _store_finish(self, finish: Finish) -> None:
        assert self._writer is not None
        self._writer.record(finish)

    def _ended(self) -> None:
        self._live -= 1
        self._update_idle()

    def _update_idle(self) -> None:
        if self._live == 0 and self._submitting == 0:
            self._idle.set()
        else:
            self._idle.clear()


def _json(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _parse(body: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value
