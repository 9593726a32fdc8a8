"""Getting events into the core: PutEvents entries and JSONL lines, checked and submitted.

Both forms of event are accepted: a PutEvents entry (`Source`, `DetailType`, `Detail` as a
JSON string, optional `Resources`, `Time`, `EventBusName`) is turned into the event
EventBridge would build; a full event (`source`, `detail-type`, `detail`, ...) has its
missing envelope fields filled in. Either way the event's keys come in the order AWS writes
them (`EVENT_KEYS`). The HTTP endpoint that speaks PutEvents is `sim.live.put_events`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sim.errors import InputError
from sim.live.delivery.core import DeliveryCore

MAX_ENTRIES = 10
MAX_ENTRY_BYTES = 256 * 1024
BATCH_LINES = 500
EVENT_KEYS = (
    "version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"
)  # fmt: skip
"""The keys of an EventBridge event, in the order AWS writes them."""


class EntryError(ValueError):
    """A PutEvents entry EventBridge would refuse: `code` and message as in its response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Envelope:
    """Account and region stamped on events built here."""

    account: str = "123456789012"
    region: str = "us-east-1"


def loads(text: str | bytes) -> Any:
    """Parse standard JSON: NaN and Infinity are refused, too deep a nesting is a ValueError."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_sendable(event: Mapping[str, Any]) -> None:
    """An event the core can store and send: valid Unicode, at most 256 KiB as JSON."""
    try:
        size = len(json.dumps(event, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("the event holds text that is not valid Unicode") from None
    if size > MAX_ENTRY_BYTES:
        raise ValueError("the event is larger than 256 KB")


def bus_name(value: Any) -> str:
    """An event bus name from a name or an ARN (`...:event-bus/NAME`); default `default`."""
    if not value:
        return "default"
    text = str(value)
    return text.rsplit("event-bus/", 1)[-1] if text.startswith("arn:") else text


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_from_entry(entry: Mapping[str, Any], envelope: Envelope) -> tuple[str, dict[str, Any]]:
    """(bus, event) for a PutEvents entry, or EntryError as PutEvents reports per entry."""
    for key in ("Source", "DetailType"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise EntryError("InvalidArgument", f"Parameter {key} is not valid.")
    detail_text = entry.get("Detail")
    try:
        detail = loads(detail_text) if isinstance(detail_text, str) else None
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        raise EntryError("MalformedDetail", "Detail is malformed.")
    resources = entry.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise EntryError("InvalidArgument", "Parameter Resources is not valid.")
    if len(json.dumps(entry)) > MAX_ENTRY_BYTES:
        raise EntryError("InvalidArgument", "Entry is larger than 256 KB.")
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": envelope.account,
        "time": _entry_time(entry.get("Time")),
        "region": envelope.region,
        "resources": resources,
        "detail": detail,
    }
    try:
        check_sendable(event)
    except ValueError as err:
        raise EntryError("InvalidArgument", f"{err}.") from None
    return bus_name(entry.get("EventBusName")), event


def _entry_time(value: Any) -> str:
    """An entry's `Time` (epoch seconds, as SDKs send it, or ISO 8601), else now."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _utc(datetime.fromtimestamp(value, UTC))
        except (OverflowError, OSError, ValueError):
            raise EntryError("InvalidArgument", "Parameter Time is not valid.") from None
    if isinstance(value, str) and value:
        try:
            return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise EntryError("InvalidArgument", "Parameter Time is not valid.") from None
    return _utc(datetime.now(UTC))


def event_from_line(data: Any, envelope: Envelope) -> tuple[str, dict[str, Any]]:
    """(bus, event) for one JSONL value: a PutEvents entry or a full event (filled in)."""
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object (an event or a PutEvents entry)")
    if any(key in data for key in ("Source", "DetailType", "Detail")):
        try:
            return event_from_entry(data, envelope)
        except EntryError as err:
            raise ValueError(str(err)) from None
    for key in ("source", "detail-type"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"the event has no {key!r} string")
    if "detail" in data and not isinstance(data["detail"], dict):
        raise ValueError("'detail' must be a JSON object")
    envelope_fields = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "account": envelope.account,
        "time": _utc(datetime.now(UTC)),
        "region": envelope.region,
        "resources": [],
        "detail": {},
    }
    event = in_aws_order({**envelope_fields, **data})
    check_sendable(event)
    return "default", event


def in_aws_order(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with the keys of `EVENT_KEYS` first, in that order, then any others as given."""
    ordered = {key: event[key] for key in EVENT_KEYS if key in event}
    ordered.update((key, value) for key, value in event.items() if key not in ordered)
    return ordered


def parse_line(text: str, source: str, number: int, envelope: Envelope) -> tuple[str, dict] | None:
    """One JSONL line as (bus, event); None for a blank line; InputError naming the line."""
    if not text.strip():
        return None
    try:
        return event_from_line(loads(text), envelope)
    except ValueError as err:
        problem = f"invalid JSON: {err}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise InputError(source, f"line {number}", problem) from None


def read_event_file(path: Path, envelope: Envelope) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a JSONL file, checked completely before any is accepted."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(str(path), None, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(str(path), None, f"cannot read: {err}") from None
    events = []
    for number, line in enumerate(lines, start=1):
        parsed = parse_line(line, str(path), number, envelope)
        if parsed is not None:
            events.append(parsed)
    return events


async def stream_events(
    stream: TextIO, envelope: Envelope, source: str = "<stdin>"
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events from a text stream (e.g. stdin) as lines arrive; stops at the first bad line."""
    number = 0
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        number += 1
        parsed = parse_line(line, source, number, envelope)
        if parsed is not None:
            yield parsed


async def submit_all(
    core: DeliveryCore, events: AsyncIterator[tuple[str, dict[str, Any]]] | list[Any]
) -> int:
    """Submit events in order, batched per bus; returns how many were accepted.

    A batch is what has arrived so far (at most `BATCH_LINES`, all on one bus), so events
    from a slow stream are accepted as they come instead of waiting for a batch to fill. An
    error from the source (a bad line) is raised after the events before it are submitted.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4 * BATCH_LINES)
    reader = asyncio.create_task(_read_into(events, queue))
    count = 0
    held: Any = None
    try:
        while True:
            item = held if held is not None else await queue.get()
            held = None
            if item is _END:
                return count
            if isinstance(item, BaseException):
                raise item
            bus, event = item
            batch = [event]
            while len(batch) < BATCH_LINES and not queue.empty():
                following = queue.get_nowait()
                if following is _END or isinstance(following, BaseException) or following[0] != bus:
                    held = following
                    break
                batch.append(following[1])
            await core.submit(batch, bus=bus)
            count += len(batch)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


_END = object()


async def _read_into(events: Any, queue: asyncio.Queue[Any]) -> None:
    """Move events from the source to the queue, then the end marker or the source's error."""
    try:
        async for item in _aiter(events):
            await queue.put(item)
    except Exception as err:  # e.g. InputError for a bad line: raised by submit_all, in order
        await queue.put(err)
        return
    await queue.put(_END)


async def _aiter(items: Any) -> AsyncIterator[Any]:
    if isinstance(items, list):
        for item in items:
            yield item
    else:
        async for item in items:
            yield item


def stdin_events(envelope: Envelope) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events from standard input, line by line."""
    return stream_events(sys.stdin, envelope)
