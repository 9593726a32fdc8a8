"""The delivery core over real loopback HTTP: classification, retries, Retry-After, limits, DLQ.

Endpoints are plain aiohttp.web apps (or raw sockets) written here, on 127.0.0.1 only, with a
short client timeout so every test stays bounded (helpers in `tests/support/live.py`).
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiohttp import web

from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import NewEvent, Store
from sim.live.delivery.transport import PublicResolver
from sim.records import COLUMNS
from sim.results.accumulator import Accumulator
from sim.scenario.loading import build_scenario
from tests.support.live import (
    TIMEOUT_S,
    Outcome,
    RecordingEndpoint,
    Seen,
    core_config,
    deliver,
    event,
    run,
)

pytestmark = pytest.mark.live

# --- classification (S4, S5) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "attempts", "final", "reason"),
    [
        (200, "delivered", 1, "delivered", None),
        (204, "delivered", 1, "delivered", None),
        (302, "failed", 1, "dlq", "NonRetryableError"),
        (400, "failed", 1, "dlq", "NonRetryableError"),
        (401, "failed", 1, "dlq", "NonRetryableError"),
        (404, "failed", 1, "dlq", "NonRetryableError"),
        (409, "retry", 3, "dlq", "MaximumRetryAttempts"),
        (429, "retry", 3, "dlq", "MaximumRetryAttempts"),
        (500, "retry", 3, "dlq", "MaximumRetryAttempts"),
        (503, "retry", 3, "dlq", "MaximumRetryAttempts"),
    ],
)
def test_each_status_class_is_classified_per_s5(
    tmp_path: Path, status: int, outcome: str, attempts: int, final: str, reason: str | None
) -> None:
    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        def respond(seen: Seen) -> web.Response:
            headers = {"Location": "/elsewhere"} if 300 <= status < 400 else {}
            return web.Response(status=status, headers=headers)

        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url + "/hook", retries=2)
            return await deliver(config, tmp_path / "db", [event(1)]), endpoint

    result, endpoint = run(scenario())
    rows = result.records
    assert len(rows) == attempts == len(endpoint.requests)
    assert list(rows["outcome"]) == [outcome] * attempts
    assert list(rows["status"]) == [status] * attempts
    assert rows["final"].iloc[-1] == final
    assert (rows["final"].iloc[:-1].isna()).all()
    assert (rows["final_reason"].iloc[-1] if reason else None) == (reason if reason else None)
    assert all(seen.path == "/hook" for seen in endpoint.requests)  # redirects not followed
    if final == "dlq":
        attributes = result.dlq[0]["attributes"]
        assert attributes["ERROR_CODE"] == "ERROR_FROM_TARGET"
        assert attributes["RETRY_ATTEMPTS"] == attempts - 1
        assert str(status) in attributes["ERROR_MESSAGE"]


def test_timeout_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async def respond(seen: Seen) -> web.Response:
            await asyncio.sleep(TIMEOUT_S * 2)
            return web.Response(status=200)

        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url, retries=1)
            return await deliver(config, tmp_path / "db", [event(1)]), endpoint

    result, endpoint = run(scenario())
    rows = result.records
    assert list(rows["outcome"]) == ["timeout", "timeout"]
    assert rows["status"].isna().all()  # pseudo status 0 shows as null
    durations = rows["complete_at"] - rows["dispatch_at"]
    assert ((durations > TIMEOUT_S - 0.02) & (durations < TIMEOUT_S + 0.2)).all()
    attributes = result.dlq[0]["attributes"]
    assert attributes["ERROR_CODE"] == "TIMEOUT"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"] == 1
    assert len(endpoint.requests) == 2


def test_refused_connection_is_a_retried_connection_failure(tmp_path: Path) -> None:
    async def scenario() -> Outcome:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens on `port` any more
        config = core_config(f"http://127.0.0.1:{port}/", retries=2)
        return await deliver(config, tmp_path / "db", [event(1)])

    result = run(scenario())
    assert list(result.records["outcome"]) == ["connection_error"] * 3
    attributes = result.dlq[0]["attributes"]
    assert attributes["ERROR_CODE"] == "CONNECTION_FAILURE"
    assert attributes["RETRY_ATTEMPTS"] == 2


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (b"NOT HTTP\r\n\r\n", "connection_error"),  # malformed response
        (b"", "connection_error"),  # reset before any response
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (3 << 20), "delivered"),  # huge body, 1 MiB read
    ],
)
def test_endpoint_faults_are_classified_not_fatal(
    tmp_path: Path, reply: bytes, outcome: str
) -> None:
    async def scenario() -> Outcome:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            try:
                writer.write(reply)
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            config = core_config(f"http://127.0.0.1:{port}/", retries=0)
            return await deliver(config, tmp_path / "db", [event(1)])
        finally:
            server.close()

    result = run(scenario())
    assert list(result.records["outcome"]) == [outcome]


def test_endless_body_is_cut_at_one_mebibyte(tmp_path: Path) -> None:
    written: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            for _ in range(10_000):  # 640 MiB if the client kept reading
                await response.write(b"x" * 65536)
                written.append(1)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def scenario() -> Outcome:
        app = web.Application()
        app.router.add_post("/", endless)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            config = core_config(f"http://127.0.0.1:{port}/", retries=0)
            return await deliver(config, tmp_path / "db", [event(1)])
        finally:
            await runner.cleanup()

    result = run(scenario())
    assert list(result.records["outcome"]) == ["delivered"]
    assert len(written) < 1000  # the client stopped reading long before the server would have


# --- Retry-After (S8) -------------------------------------------------------------------------


def _retry_after_run(tmp_path: Path, header: str, *, max_age: float = 86400) -> Outcome:
    async def scenario() -> Outcome:
        def respond(seen: Seen) -> web.Response:
            if len(endpoint.requests) == 1:
                return web.Response(status=429, headers={"Retry-After": header})
            return web.Response(status=200)

        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url, retries=3, max_age=max_age)
            return await deliver(config, tmp_path / "db", [event(1)])

    return run(scenario())


def test_retry_after_seconds_waits_the_longer_of_backoff_and_header(tmp_path: Path) -> None:
    result = _retry_after_run(tmp_path, "1")
    first, second = result.records.iloc[0], result.records.iloc[1]
    assert first["retry_after_s"] == 1.0
    assert first["next_ready_at"] == pytest.approx(first["complete_at"] + 1.0)
    assert second["ready_at"] == first["next_ready_at"]
    assert second["dispatch_at"] >= first["complete_at"] + 1.0 - 0.005
    assert second["final"] == "delivered"


def test_retry_after_http_date_is_honoured(tmp_path: Path) -> None:
    header = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1-2 s away (whole seconds)
    result = _retry_after_run(tmp_path, header)
    first, second = result.records.iloc[0], result.records.iloc[1]
    assert 0.5 < first["retry_after_s"] <= 2.0
    assert second["dispatch_at"] - first["complete_at"] >= first["retry_after_s"] - 0.005
    assert second["final"] == "delivered"


def test_negative_retry_after_stops_retrying_at_once(tmp_path: Path) -> None:
    result = _retry_after_run(tmp_path, "-1")
    assert len(result.records) == 1
    row = result.records.iloc[0]
    assert (row["final"], row["final_reason"]) == ("dlq", "RetryAfterNegative")
    attributes = result.dlq[0]["attributes"]
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes
    assert attributes["RETRY_ATTEMPTS"] == 0


def test_retry_after_past_the_maximum_age_ends_the_event_now(tmp_path: Path) -> None:
    result = _retry_after_run(tmp_path, "120", max_age=60)
    assert len(result.records) == 1
    assert result.records.iloc[0]["final_reason"] == "MaximumEventAgeInSeconds"
    assert result.dlq[0]["attributes"]["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeInSeconds"


def test_unparseable_retry_after_is_ignored(tmp_path: Path) -> None:
    result = _retry_after_run(tmp_path, "soon")
    first = result.records.iloc[0]
    assert math.isnan(first["retry_after_s"])
    assert first["next_ready_at"] - first["complete_at"] == pytest.approx(0.01)  # backoff base
    assert result.records.iloc[1]["final"] == "delivered"


# --- limits, token bucket, DLQ ---------------------------------------------------------------


def test_event_aging_out_while_waiting_for_a_token_ends_at_its_deadline(tmp_path: Path) -> None:
    db = tmp_path / "db"
    store = Store(db)
    long_ago = time.time() - 61  # accepted 61 s ago, maximum age 60 s
    store.accept(NewEvent("old", "default", json.dumps(event(1)), long_ago, [("rule", "t1")]))
    store.close()

    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url, max_age=60)
            return await deliver(config, db, []), endpoint

    result, endpoint = run(scenario())
    assert endpoint.requests == []
    row = result.records.iloc[0]
    assert (row["outcome"], row["final"], row["final_reason"]) == (
        "expired",
        "dlq",
        "MaximumEventAgeInSeconds",
    )
    assert math.isnan(row["dispatch_at"])
    assert row["complete_at"] == pytest.approx(row["arrival_at"] + 60, abs=1e-6)
    attributes = result.dlq[0]["attributes"]
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeInSeconds"
    assert attributes["ERROR_CODE"] == "THROTTLING"


def test_token_bucket_is_shared_by_every_rule_targeting_a_destination(tmp_path: Path) -> None:
    rate = 20.0
    target = {"Id": "t1", "Arn": "dest"}
    rules = [
        {"Name": "even", "EventPattern": {"detail": {"parity": ["even"]}}, "Targets": [target]},
        {"Name": "odd", "EventPattern": {"detail": {"parity": ["odd"]}}, "Targets": [target]},
    ]

    async def scenario() -> Outcome:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url, rate=rate, rules=rules, sim={"burst_capacity": 1})
            events = [event(i, parity="even" if i % 2 == 0 else "odd") for i in range(10)]
            return await deliver(config, tmp_path / "db", events)

    rows = run(scenario()).records
    assert len(rows) == 10 and (rows["final"] == "delivered").all()
    dispatch = np.sort(rows["dispatch_at"].to_numpy())
    gaps = np.diff(dispatch)  # one token per 1/r seconds for both rules together (burst 1)
    # dispatch_at is the real send time: allow the event loop's wake-up jitter on a busy machine
    assert (gaps >= 1 / rate - 0.015).all(), gaps
    assert dispatch[-1] - dispatch[0] >= 9 / rate - 0.002


def test_waiting_deliveries_are_served_oldest_ready_first(tmp_path: Path) -> None:
    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url, rate=50, sim={"burst_capacity": 1})
            core_events = [event(i) for i in range(8)]
            return await deliver(config, tmp_path / "db", core_events), endpoint

    _, endpoint = run(scenario())
    assert [seen.json["detail"]["n"] for seen in endpoint.requests] == list(range(8))


def test_without_a_dead_letter_queue_failed_events_are_dropped(tmp_path: Path) -> None:
    async def scenario() -> Outcome:
        async with RecordingEndpoint(lambda seen: web.Response(status=400)) as endpoint:
            return await deliver(core_config(endpoint.url, dlq=False), tmp_path / "db", [event(1)])

    result = run(scenario())
    assert result.dlq == []
    assert result.counts["dropped"] == 1
    assert result.records.iloc[0]["final"] == "dropped"


def test_dlq_holds_the_original_event_not_the_transformed_input(tmp_path: Path) -> None:
    transformer = {
        "InputTransformer": {"InputPathsMap": {"n": "$.detail.n"}, "InputTemplate": '{"num": <n>}'}
    }

    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint(lambda seen: web.Response(status=400)) as endpoint:
            config = core_config(endpoint.url, target=transformer)
            return await deliver(config, tmp_path / "db", [event(7)]), endpoint

    result, endpoint = run(scenario())
    assert endpoint.requests[0].json == {"num": 7}
    record = result.dlq[0]
    assert record["event"]["detail"] == {"n": 7} and record["event"]["source"] == "test"
    assert record["attributes"] == {
        "RULE_ARN": "arn:aws:events:us-east-1:123456789012:rule/rule",
        "TARGET_ARN": "arn:aws:events:us-east-1:123456789012:api-destination/dest/399980f5-8757-5738-8c37-2cd4f097561a",
        "ERROR_CODE": "ERROR_FROM_TARGET",
        "ERROR_MESSAGE": "HTTP 400 Bad Request",
        "RETRY_ATTEMPTS": 0,
    }
    assert record["dead_letter_queue"] == "arn:aws:sqs:us-east-1:123456789012:dlq"


def test_header_value_from_the_event_with_crlf_is_refused_not_sent(tmp_path: Path) -> None:
    params = {"HttpParameters": {"HeaderParameters": {"x-order": "$.detail.order"}}}

    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url, target=params)
            events = [event(1, order="a\r\nX-Injected: 1"), event(2, order="fine")]
            return await deliver(config, tmp_path / "db", events), endpoint

    result, endpoint = run(scenario())
    assert [seen.headers.get("x-order") for seen in endpoint.requests] == ["fine"]
    assert all("X-Injected" not in seen.headers for seen in endpoint.requests)
    (record,) = result.dlq
    assert record["event"]["detail"]["n"] == 1
    assert record["attributes"]["ERROR_CODE"] == "INVALID_PARAMETER"
    assert "EXHAUSTED_RETRY_CONDITION" not in record["attributes"]


def test_rules_match_by_pattern_and_bus_and_disabled_rules_do_not(tmp_path: Path) -> None:
    target = {"Id": "t1", "Arn": "dest"}
    rules = [
        {
            "Name": "a",
            "EventPattern": {"detail": {"n": [{"numeric": [">", 5]}]}},
            "Targets": [target],
        },
        {
            "Name": "b",
            "EventPattern": {"source": ["test"]},
            "State": "DISABLED",
            "Targets": [target],
        },
        {
            "Name": "c",
            "EventBusName": "other",
            "EventPattern": {"source": ["test"]},
            "Targets": [target],
        },
    ]

    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url, rules=rules)
            return await deliver(config, tmp_path / "db", [event(i) for i in range(10)]), endpoint

    result, endpoint = run(scenario())
    assert sorted(seen.json["detail"]["n"] for seen in endpoint.requests) == [6, 7, 8, 9]
    assert result.counts["events"] == 10 and result.counts["delivered"] == 4


# --- records -----------------------------------------------------------------------------------


def test_records_use_the_shared_schema_and_feed_the_results_accumulator(tmp_path: Path) -> None:
    def respond(seen: Seen) -> web.Response:
        return web.Response(status=503 if seen.json["detail"]["n"] % 3 == 0 else 200)

    async def scenario() -> tuple[Outcome, Accumulator]:
        scenario_data = {
            "name": "live",
            "horizon": 60,
            "arrivals": [{"kind": "constant", "rate_per_second": 1}],
            "endpoint": {"latency": {"kind": "constant", "value": 0.001}},
            "dead_letter_queue": True,
        }
        accumulator = Accumulator(build_scenario(scenario_data, source="test"), 0)
        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url, retries=1)
            core = DeliveryCore(config, tmp_path / "db", accumulator)
            await core.start()
            await core.submit([event(i) for i in range(9)])
            await asyncio.wait_for(core.wait_idle(), 10)
            await core.stop()
        return Outcome(pd.DataFrame(), [], {}, accumulator.records), accumulator

    _, accumulator = run(scenario())
    summary = accumulator.finish().summary
    assert summary["events_arrived"] == 9
    assert summary["events_delivered"] == 6
    assert summary["InvocationsSentToDlq"] == 3
    assert summary["InvocationAttempts"] == 12  # 6 + 3 events x 2 attempts
    assert summary["RetryInvocationAttempts"] == 3
    assert summary["events_pending"] == 0


def test_record_chunks_have_exactly_the_shared_columns_and_dtypes(tmp_path: Path) -> None:
    async def scenario() -> Outcome:
        async with RecordingEndpoint() as endpoint:
            return await deliver(core_config(endpoint.url), tmp_path / "db", [event(1), event(2)])

    result = run(scenario())
    for chunk in result.chunks:
        assert list(chunk) == list(COLUMNS)
        assert {name: chunk[name].dtype for name in chunk} == {
            name: np.dtype(dtype) for name, dtype in COLUMNS.items()
        }
    rows = result.records
    assert (rows["arrival_at"] <= rows["ready_at"]).all()
    assert (rows["ready_at"] <= rows["dispatch_at"]).all()
    assert (rows["dispatch_at"] < rows["complete_at"]).all()
    assert set(rows["event_id"]) == {1, 2}


def test_idle_core_counts_each_accepted_event_until_it_ends(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        release = asyncio.Event()

        async def respond(seen: Seen) -> web.Response:
            await release.wait()
            return web.Response(status=200)

        async with RecordingEndpoint(respond) as endpoint:
            core = DeliveryCore(core_config(endpoint.url, sim={"timeout": 5}), tmp_path / "db")
            await core.start()
            await core.submit([event(1), event(2)])
            await asyncio.sleep(0.1)
            during = core.live
            release.set()
            await asyncio.wait_for(core.wait_idle(), 5)
            after = core.live
            await core.stop()
        return during, after

    assert run(scenario()) == (2, 0)


def test_host_names_resolving_to_private_addresses_are_refused_at_connect_time() -> None:
    async def scenario() -> None:
        resolver = PublicResolver()
        try:
            with pytest.raises(OSError, match="private"):
                await resolver.resolve("localhost", 443)
        finally:
            await resolver.close()

    run(scenario())


def test_a_failure_while_preparing_one_delivery_does_not_stop_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sim.live.delivery.core as core_module

    real = core_module.build_request

    def flaky(*args: Any) -> Any:
        if args[3]["detail"]["n"] == 1:
            raise RuntimeError("bug")
        return real(*args)

    monkeypatch.setattr(core_module, "build_request", flaky)

    async def scenario() -> tuple[Outcome, RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            return await deliver(
                core_config(endpoint.url), tmp_path / "db", [event(1), event(2)]
            ), endpoint

    result, endpoint = run(scenario())
    assert [seen.json["detail"]["n"] for seen in endpoint.requests] == [2]
    (record,) = result.dlq
    assert record["attributes"]["ERROR_CODE"] == "INTERNAL_ERROR"
    assert result.counts["pending"] == 0


def test_objects_alive_at_start_are_kept_out_of_the_gc_until_stop(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        core = DeliveryCore(core_config("http://127.0.0.1:9/"), tmp_path / "db")
        await core.start()
        frozen = gc.get_freeze_count()
        await core.stop()
        return frozen, gc.get_freeze_count()

    frozen, after = run(scenario())
    assert frozen > 0 and after == 0


def test_deliveries_are_dispatched_while_their_commit_is_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit is not in the dispatch path; submit() still returns only once committed."""
    import threading

    from sim.live.delivery.store import Store as StoreClass

    release = threading.Event()
    real_apply = StoreClass.apply

    def slow_apply(self: StoreClass, operations: list[Any]) -> list[Any]:
        if any(isinstance(op, NewEvent) for op in operations):
            release.wait(5.0)  # the writer thread holds the commit until the request is seen
        return real_apply(self, operations)

    monkeypatch.setattr(StoreClass, "apply", slow_apply)

    async def scenario() -> tuple[int, bool, list[dict[str, Any]]]:
        async with RecordingEndpoint() as endpoint:
            core = DeliveryCore(core_config(endpoint.url), tmp_path / "db")
            await core.start()
            try:
                submitted = asyncio.create_task(core.submit([event(1)]))
                for _ in range(200):
                    if endpoint.requests:
                        break
                    await asyncio.sleep(0.01)
                seen_before_commit = len(endpoint.requests)
                acknowledged_early = submitted.done()
                release.set()
                await submitted
                await asyncio.wait_for(core.wait_idle(), 5.0)
            finally:
                release.set()
                await core.stop()
        store = Store(tmp_path / "db")
        try:
            return seen_before_commit, acknowledged_early, store.deliveries()
        finally:
            store.close()

    seen, acknowledged_early, deliveries = run(scenario())
    assert seen == 1 and not acknowledged_early
    assert [(d["id"], d["state"]) for d in deliveries] == [(1, "delivered")]
