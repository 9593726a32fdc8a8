"""Ingestion: PutEvents entries and JSONL events, and an unmodified boto3 client over loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.config import Config

from sim.errors import InputError
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import Store
from sim.live.ingest import (
    EntryError,
    Envelope,
    event_from_entry,
    event_from_line,
    read_event_file,
    submit_all,
)
from sim.live.put_events import PutEventsServer
from tests.support.live import RecordingEndpoint, core_config, run

pytestmark = pytest.mark.live

ENVELOPE = Envelope(account="111122223333", region="eu-west-1")


def test_a_put_events_entry_becomes_the_event_eventbridge_would_build() -> None:
    entry = {
        "Source": "shop",
        "DetailType": "OrderPlaced",
        "Detail": '{"id": 7}',
        "Resources": ["arn:x"],
        "Time": 1_700_000_000,
        "EventBusName": "arn:aws:events:eu-west-1:111122223333:event-bus/orders",
    }
    bus, event = event_from_entry(entry, ENVELOPE)
    assert bus == "orders"
    assert event["source"] == "shop" and event["detail-type"] == "OrderPlaced"
    assert event["detail"] == {"id": 7} and event["resources"] == ["arn:x"]
    assert (event["account"], event["region"], event["version"]) == (
        "111122223333",
        "eu-west-1",
        "0",
    )
    assert event["time"] == "2023-11-14T22:13:20Z"
    assert len(event["id"]) == 36


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ({"DetailType": "d", "Detail": "{}"}, "InvalidArgument"),
        ({"Source": "s", "Detail": "{}"}, "InvalidArgument"),
        ({"Source": "s", "DetailType": "d", "Detail": "[1]"}, "MalformedDetail"),
        ({"Source": "s", "DetailType": "d", "Detail": "{nope"}, "MalformedDetail"),
        (
            {"Source": "s", "DetailType": "d", "Detail": "{}", "Time": "yesterday"},
            "InvalidArgument",
        ),
    ],
)
def test_bad_entries_are_refused_per_entry(entry: dict[str, Any], code: str) -> None:
    with pytest.raises(EntryError) as caught:
        event_from_entry(entry, ENVELOPE)
    assert caught.value.code == code


def test_a_full_event_line_keeps_its_fields_and_gets_the_missing_envelope() -> None:
    bus, event = event_from_line(
        {"id": "mine", "source": "s", "detail-type": "d", "detail": {"a": 1}}, ENVELOPE
    )
    assert bus == "default"
    assert event["id"] == "mine" and event["detail"] == {"a": 1}
    assert event["region"] == "eu-west-1" and event["resources"] == []
    with pytest.raises(ValueError, match="source"):
        event_from_line({"detail-type": "d"}, ENVELOPE)


def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps({"source": "s", "detail-type": "d"})
    path.write_text(f"{good}\n\n{good}\n[1, 2]\n")
    with pytest.raises(InputError) as caught:
        read_event_file(path, ENVELOPE)
    assert (caught.value.source, caught.value.key) == (str(path), "line 4")
    path.write_text(f"{good}\n\n{good}\n")
    assert len(read_event_file(path, ENVELOPE)) == 2


def test_submit_all_keeps_order_and_each_event_on_its_bus(tmp_path: Path) -> None:
    rules = [
        {"Name": "a", "EventPattern": {"source": ["s"]}, "Targets": [{"Id": "t", "Arn": "dest"}]},
        {
            "Name": "b",
            "EventBusName": "other",
            "EventPattern": {"source": ["s"]},
            "Targets": [{"Id": "t", "Arn": "dest"}],
        },
    ]

    async def scenario() -> list[str]:
        async with RecordingEndpoint() as endpoint:
            core = DeliveryCore(core_config(endpoint.url, rules=rules), tmp_path / "db")
            await core.start()
            events = [
                (bus, {"source": "s", "detail-type": "d", "detail": {"n": n}, "id": f"{bus}-{n}"})
                for n, bus in enumerate(["default", "other", "other", "default"])
            ]
            assert await submit_all(core, events) == 4
            await asyncio.wait_for(core.wait_idle(), 5)
            await core.stop()
        store = Store(tmp_path / "db")
        rows = [(d["rule"], d["event_id"]) for d in store.deliveries()]
        store.close()
        return rows  # type: ignore[return-value]

    assert run(scenario()) == [
        ("a", "default-0"),
        ("b", "other-1"),
        ("b", "other-2"),
        ("a", "default-3"),
    ]


def _boto3_client(url: str) -> Any:
    return boto3.client(
        "events",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_boto3_put_events_is_accepted_persisted_and_delivered(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, Any], RecordingEndpoint]:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url + "/hook")
            core = DeliveryCore(config, tmp_path / "db")
            await core.start()
            server = PutEventsServer(core, ENVELOPE, "127.0.0.1", 0)
            await server.start()
            entries = [
                {"Source": "test", "DetailType": "t", "Detail": json.dumps({"n": 1})},
                {"Source": "test", "DetailType": "t", "Detail": "not json"},
                {"Source": "elsewhere", "DetailType": "t", "Detail": "{}"},
            ]
            client = _boto3_client(server.url)
            response = await asyncio.to_thread(client.put_events, Entries=entries)
            await asyncio.wait_for(core.wait_idle(), 5)
            await server.stop()
            await core.stop()
        return response, endpoint

    response, endpoint = run(scenario())
    assert response["FailedEntryCount"] == 1
    first, bad, unmatched = response["Entries"]
    assert bad == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert "EventId" in unmatched  # accepted; no rule matches it
    (seen,) = endpoint.requests
    assert seen.path == "/hook"
    assert seen.json["id"] == first["EventId"]
    assert seen.json["detail"] == {"n": 1} and seen.json["account"] == ENVELOPE.account
    store = Store(tmp_path / "db")
    assert store.counts()["events"] == 2 and store.counts()["delivered"] == 1
    store.close()


@pytest.mark.parametrize(
    ("headers", "body", "kind"),
    [
        ({"X-Amz-Target": "AWSEvents.ListRules"}, {"Entries": []}, "UnknownOperationException"),
        ({"X-Amz-Target": "AWSEvents.PutEvents"}, {"Entries": []}, "ValidationException"),
        (
            {"X-Amz-Target": "AWSEvents.PutEvents"},
            {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11},
            "ValidationException",
        ),
    ],
)
def test_requests_put_events_refuses_are_answered_with_aws_errors(
    tmp_path: Path, headers: dict[str, str], body: dict[str, Any], kind: str
) -> None:
    async def scenario() -> tuple[int, dict[str, Any], int]:
        core = DeliveryCore(core_config("http://127.0.0.1:9/"), tmp_path / "db")
        await core.start()
        server = PutEventsServer(core, ENVELOPE, "127.0.0.1", 0)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                headers["Content-Type"] = "application/x-amz-json-1.1"
                async with session.post(server.url, json=body, headers=headers) as response:
                    return response.status, await response.json(content_type=None), core.live
        finally:
            await server.stop()
            await core.stop()

    status, answer, live = run(scenario())
    assert status == 400 and answer["__type"] == kind and live == 0
