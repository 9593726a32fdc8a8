"""The account's invocation quota in the live core (docs/bus.md B4, B5), over real loopback HTTP.

Two API destinations, each with its own aiohttp endpoint on 127.0.0.1; the quota is
`sim.account_invocation_limit_per_second`. Bounds on dispatch times are checked against the
greedy token-bucket schedule (`policy.gcra_schedule`): the earliest any core honouring a bucket
can send, so a correct core is never ahead of it (beyond float and clock noise). Being late is
overhead, not a violation; upper bounds leave room for a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiohttp import web

from sim import policy
from sim.live.config.loading import CoreConfig, build_config
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import NewEvent, Store
from sim.records import to_frame
from tests.support.builders import ListSink
from tests.support.live import FAST_BACKOFF, TIMEOUT_S, RecordingEndpoint, Seen, run

pytestmark = pytest.mark.live

NOISE_S = 0.005  # as validation's conformance tolerance: clock and float noise only
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def bus_config(
    urls: dict[str, str],
    rates: dict[str, float | None],
    rules: list[dict[str, Any]],
    **quota: Any,
) -> CoreConfig:
    """Destinations `a`, `b` (burst 1 each) at their own endpoints; `quota`: the `sim.account_*`
    settings without their prefix."""
    data = {
        "Connections": [
            {
                "Name": "conn",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}},
            }
        ],
        "ApiDestinations": [
            {
                "Name": name,
                "ConnectionArn": "conn",
                "InvocationEndpoint": url,
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": rates[name],
            }
            for name, url in urls.items()
        ],
        "Rules": rules,
        "sim": {
            "allow_private_endpoints": True,
            "timeout": TIMEOUT_S,
            "backoff": FAST_BACKOFF,
            "burst_capacity": 1,
            **{f"account_{key}": value for key, value in quota.items()},
        },
    }
    return build_config(data, source="test", environ={})


def rule(name: str, destination: str, pattern: dict[str, Any], **target: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "EventPattern": pattern,
        "Targets": [{"Id": "t", "Arn": destination, **target}],
    }


def events(n: int, **detail: Any) -> list[dict[str, Any]]:
    return [{"source": "test", "detail-type": "t", "detail": {"n": i, **detail}} for i in range(n)]


async def run_core(
    config: CoreConfig,
    db: Path,
    batches: list[tuple[float, list[dict[str, Any]]]],
    *,
    until_idle: bool = True,
    run_for_s: float = 10.0,
) -> tuple[pd.DataFrame, DeliveryCore]:
    """Submit each batch at its time (s after start); run until idle, or for `run_for_s`."""
    sink = ListSink()
    core = DeliveryCore(config, db, sink)
    await core.start()
    try:
        for at, batch in batches:
            await asyncio.sleep(max(0.0, at - core.now()))
            await core.submit(batch)
        if until_idle:
            await asyncio.wait_for(core.wait_idle(), run_for_s)
        else:
            await asyncio.sleep(max(0.0, run_for_s - core.now()))
    finally:
        await core.stop()
    return with_destination(to_frame(sink.chunks), db), core


def with_destination(frame: pd.DataFrame, db: Path) -> pd.DataFrame:
    """The records with each delivery's rule (read back from the core's database)."""
    store = Store(db)
    try:
        rules = dict(store.db.execute("SELECT id, rule FROM deliveries").fetchall())
    finally:
        store.close()
    frame["rule"] = frame["event_id"].map(rules)
    return frame


def sent(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["dispatch_at"].notna()]


def assert_bucket_holds(frame: pd.DataFrame, rate: float, burst: float) -> None:
    """No k-th dispatch earlier than the k-th token of a `rate`/`burst` bucket on these ready
    times: whatever the order, no faster than the bucket allows."""
    rows = sent(frame)
    ideal, _ = policy.gcra_schedule(0.0, rate, burst, np.sort(rows["ready_at"].to_numpy()))
    ahead = ideal - np.sort(rows["dispatch_at"].to_numpy())
    assert ahead.max(initial=-1.0) <= NOISE_S, f"{(ahead > NOISE_S).sum()} dispatches too early"


def by_rule(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame[frame["rule"] == name]


# --- the quota binds across destinations, delays and never rejects -----------------------------


def test_the_quota_binds_across_two_destinations_and_nothing_is_rejected(tmp_path: Path) -> None:
    """30 events to both `a` (10/s) and `b` (100/s) under a 30/s quota: `a` keeps to its own
    10/s, `b` gets what `a` leaves (20/s), retries take quota tokens too, nothing is refused."""
    tries: dict[int, int] = {}

    def respond_b(seen: Seen) -> web.Response:
        n = seen.json["detail"]["n"]
        tries[n] = tries.get(n, 0) + 1
        if n == 7:
            return web.Response(status=400)
        return web.Response(status=503 if n % 5 == 0 and tries[n] == 1 else 200)

    async def scenario() -> pd.DataFrame:
        async with RecordingEndpoint() as a, RecordingEndpoint(respond_b) as b:
            rules = [
                rule("to-a", "a", {"source": ["test"]}),
                rule("to-b", "b", {"source": ["test"]}, DeadLetterConfig={"Arn": DLQ}),
            ]
            config = bus_config(
                {"a": a.url, "b": b.url},
                {"a": 10.0, "b": 100.0},
                rules,
                invocation_limit_per_second=30.0,
                burst_capacity=1,
            )
            frame, _ = await run_core(config, tmp_path / "db", [(0.0, events(30))])
            assert len(a.requests) == 30 and len(b.requests) == 30 + 6  # n = 0, 5, ..., 25 retried
            return frame

    frame = run(scenario())
    assert_bucket_holds(frame, 30.0, 1)  # the account, over both destinations
    assert_bucket_holds(by_rule(frame, "to-a"), 10.0, 1)
    assert_bucket_holds(by_rule(frame, "to-b"), 100.0, 1)
    b_sent = sent(by_rule(frame, "to-b"))
    span = b_sent["dispatch_at"].max() - b_sent["dispatch_at"].min()
    # `b` alone would send its 36 attempts in 0.35 s; under the quota it cannot beat 35/30 s,
    # and with `a` taking up to 10/s it gets 20-30/s (room for a busy machine on top)
    assert 35 / 30 - NOISE_S <= span <= 35 / 20 + 0.8, span
    finals = frame.groupby("rule")["final"].value_counts().to_dict()
    finals = {key: count for key, count in finals.items() if count}
    assert finals == {("to-a", "delivered"): 30, ("to-b", "delivered"): 29, ("to-b", "dlq"): 1}
    assert set(frame["outcome"]) <= {"delivered", "retry", "failed"}  # no throttling end
    retries = sent(by_rule(frame, "to-b")).query("attempt > 1")
    assert len(retries) == 6 and (retries["outcome"] == "delivered").all()


def test_records_and_dead_letters_are_those_of_a_core_without_quota(tmp_path: Path) -> None:
    """The quota only delays: per delivery, the same attempts, outcomes, finals and DLQ
    attributes as the same run without a quota."""

    def respond(seen: Seen) -> web.Response:
        n = seen.json["detail"]["n"]
        return web.Response(status=400 if n % 3 == 0 else 500 if n % 3 == 1 else 200)

    async def once(quota: float | None, db: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        async with RecordingEndpoint(respond) as a, RecordingEndpoint(respond) as b:
            target = {"DeadLetterConfig": {"Arn": DLQ}, "RetryPolicy": {"MaximumRetryAttempts": 1}}
            rules = [
                rule("to-a", "a", {"source": ["test"]}, **target),
                rule("to-b", "b", {"detail": {"n": [{"numeric": ["<", 6]}]}}, **target),
            ]
            config = bus_config(
                {"a": a.url, "b": b.url},
                {"a": None, "b": None},
                rules,
                invocation_limit_per_second=quota,
                burst_capacity=1,
            )
            frame, _ = await run_core(config, db, [(0.0, events(9))])
        store = Store(db)
        try:
            dlq = list(store.dead_letters())
        finally:
            store.close()
        return frame, dlq

    plain, plain_dlq = run(once(None, tmp_path / "plain.db"))
    quota, quota_dlq = run(once(20.0, tmp_path / "quota.db"))
    columns = ["rule", "event_id", "attempt", "status", "outcome", "final", "final_reason"]
    key = ["rule", "event_id", "attempt"]
    left = plain[columns].sort_values(key, ignore_index=True)
    right = quota[columns].sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(left, right)
    assert len(plain) == 12 + 8  # 9 + 6 deliveries; the 500s (n % 3 == 1) retried once

    def comparable(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (r["event"]["detail"]["n"], r["attributes"]["RULE_ARN"], r["attributes"]["ERROR_CODE"],
             r["attributes"].get("EXHAUSTED_RETRY_CONDITION"), r["attributes"]["RETRY_ATTEMPTS"])
            for r in records
        )  # fmt: skip

    assert comparable(quota_dlq) == comparable(plain_dlq) and len(plain_dlq) == 10
    assert_bucket_holds(quota, 20.0, 1)
    dispatch = sent(quota)["dispatch_at"]
    assert dispatch.max() - dispatch.min() >= 19 / 20 - NOISE_S  # it did bind


# --- B5: which waiting head the account serves first -------------------------------------------


def test_the_account_serves_line_heads_oldest_eligible_first_as_the_model_does(
    tmp_path: Path,
) -> None:
    """Destinations that do not bind, a 5/s quota: 5 events for `a` at 0, 5 for `b` at 0.5 s,
    5 more for `a` at 1 s. A head is eligible from the latest of its ready time and its line's
    last grant (a line serves one head at a time), so once both lines wait the account
    alternates between them (max-min fair, docs/bus.md B5), not first-come-first-served
    across lines: a a a a b a b ... The order is the model's (`policy.arbitrate` on the
    deliveries' ready times as the core recorded them) exactly."""

    async def scenario() -> pd.DataFrame:
        async with RecordingEndpoint() as a, RecordingEndpoint() as b:
            rules = [
                rule("to-a", "a", {"detail": {"to": ["a"]}}),
                rule("to-b", "b", {"detail": {"to": ["b"]}}),
            ]
            config = bus_config(
                {"a": a.url, "b": b.url},
                {"a": None, "b": None},
                rules,
                invocation_limit_per_second=5.0,
                burst_capacity=1,
            )
            batches = [(0.0, events(5, to="a")), (0.5, events(5, to="b"))]
            batches.append((1.0, events(5, to="a")))
            frame, _ = await run_core(config, tmp_path / "db", batches)
            return frame

    frame = run(scenario()).sort_values("dispatch_at", ignore_index=True)
    assert len(frame) == 15
    lines = [
        np.sort(frame.loc[frame["rule"] == r, "ready_at"].to_numpy()) for r in ("to-a", "to-b")
    ]
    model = policy.arbitrate(
        [line.tolist() for line in lines], [[math.inf] * line.size for line in lines], [0, 0],
        [None, None], [1.0, 1.0], [0.0, 0.0], [-math.inf, -math.inf], 0.0, 5.0, 1.0,
    )  # fmt: skip
    expected = [("to-a", "to-b")[lane] for lane in model.lane]
    assert expected[:7] == ["to-a"] * 4 + ["to-b", "to-a", "to-b"]
    assert frame["rule"].tolist() == expected
    # never before the model's grant (real time only adds lateness, which is not asserted here)
    assert (frame["dispatch_at"].to_numpy() >= np.asarray(model.grant_at) - 1e-6).all()
    assert_bucket_holds(frame, 5.0, 1)


@pytest.mark.parametrize("order", ["after_destination", "before_destination"])
def test_the_order_setting_decides_who_waits_when_a_destination_binds(
    tmp_path: Path, order: str
) -> None:
    """40 events to both `a` (2/s) and `b` (unlimited) under a 40/s quota (docs/bus.md T2).

    after_destination: `a` takes only what its own limit lets through (2/s); `b` gets the
    other 38/s and is done in about 1.05 s. before_destination: the account alternates its
    tokens between the two (oldest ready first, `a` first), `a`'s wait at `a` spent: `b` gets
    20/s and its 40th request leaves at 79/40 = 1.975 s at the earliest.
    """

    async def scenario() -> pd.DataFrame:
        async with RecordingEndpoint() as a, RecordingEndpoint() as b:
            rules = [
                rule("to-a", "a", {"source": ["test"]}),
                rule("to-b", "b", {"source": ["test"]}),
            ]
            config = bus_config(
                {"a": a.url, "b": b.url},
                {"a": 2.0, "b": None},
                rules,
                invocation_limit_per_second=40.0,
                burst_capacity=1,
                order=order,
            )
            batches = [(0.0, events(40))]
            frame, _ = await run_core(
                config, tmp_path / "db", batches, until_idle=False, run_for_s=3.0
            )
            return frame

    frame = run(scenario())
    a, b = sent(by_rule(frame, "to-a")), sent(by_rule(frame, "to-b"))
    start = frame["arrival_at"].min()
    assert len(b) == 40, len(b)
    assert_bucket_holds(frame, 40.0, 1)
    assert_bucket_holds(a, 2.0, 1)  # the destination's own bucket holds either way
    b_done = b["dispatch_at"].max() - start
    if order == "after_destination":
        assert b_done <= 1.5, b_done  # 1.0 s ideal; room for a busy machine
    else:
        assert b_done >= 79 / 40 - NOISE_S, b_done
    assert len(a) >= 5  # `a` kept its 2/s: 0, 0.5, ..., 2.0 s (one burst token first)


def test_a_delivery_that_would_age_out_waiting_for_the_account_takes_no_token(
    tmp_path: Path,
) -> None:
    """A 0.5/s quota (tokens at 0, 2, 4 s, ...) and 5 deliveries with 3 s left of their maximum
    age: two are sent, the other three take no token (S6) and end at their deadline in the
    DLQ with ERROR_CODE THROTTLING; an event submitted after that gets the 4 s token."""
    db = tmp_path / "db"
    store = Store(db)
    then = time.time() - 57  # maximum age 60 s: 3 s left
    for n, body in enumerate(events(5)):
        store.accept(NewEvent(f"e{n}", "default", json.dumps(body), then, [("to-a", "t")]))
    store.close()

    async def scenario() -> pd.DataFrame:
        async with RecordingEndpoint() as a, RecordingEndpoint() as b:
            target = {
                "DeadLetterConfig": {"Arn": DLQ},
                "RetryPolicy": {"MaximumEventAgeInSeconds": 60},
            }
            rules = [rule("to-a", "a", {"source": ["test"]}, **target)]
            rules.append(rule("to-b", "b", {"source": ["nothing"]}))
            config = bus_config(
                {"a": a.url, "b": b.url},
                {"a": None, "b": None},
                rules,
                invocation_limit_per_second=0.5,
                burst_capacity=1,
            )
            frame, _ = await run_core(config, db, [(3.2, events(1))])
            assert len(a.requests) == 3
            return frame

    frame = run(scenario())
    expired = frame[frame["outcome"] == "expired"]
    assert len(expired) == 3 and (expired["final_reason"] == "MaximumEventAgeInSeconds").all()
    np.testing.assert_allclose(expired["complete_at"], expired["arrival_at"] + 60, atol=1e-6)
    fresh = frame[frame["arrival_at"] > 3]
    assert len(fresh) == 1 and fresh["outcome"].item() == "delivered"
    assert 4.0 - NOISE_S <= fresh["dispatch_at"].item() <= 4.5  # the expired took no token
    store = Store(db)
    try:
        codes = [r["attributes"]["ERROR_CODE"] for r in store.dead_letters()]
    finally:
        store.close()
    assert codes == ["THROTTLING"] * 3
