"""Fuzzing events (JSONL lines, PutEvents entries, PutEvents requests) on their way into the core.

Every line of an events file is either an event the core can store and send — a JSON object
with string `source` and `detail-type`, an object `detail`, valid Unicode, standard JSON (no
NaN), at most 256 KiB — or the whole file is refused with one line naming the file and line.
PutEvents entries are accepted or refused per entry, and a bad entry never makes the endpoint
fail or poisons the database for the events after it. Rule patterns never raise on odd events.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.live.config.loading import build_config
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import NewEvent, Store
from sim.live.eventbridge.patterns import compile_pattern
from sim.live.ingest import (
    MAX_ENTRY_BYTES,
    EntryError,
    Envelope,
    event_from_entry,
    read_event_file,
)
from sim.live.put_events import PutEventsServer
from tests.support.live import RecordingEndpoint
from tests.support.processes import (
    assert_one_error_line,
    core_config_data,
    fuzz_settings,
    write_yaml,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

runner = CliRunner()
ENVELOPE = Envelope()
FUZZ = fuzz_settings(150)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.sampled_from([10**400, -(10**400), 2**63, 1e308, -0.0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
TIMES = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["2025-01-01T00:00:00Z", "yesterday", "", "9999-99-99", "1e400", 1e20]),
)
RAW_LINES = st.sampled_from(
    [
        '{"source": "test", "detail-type": "t", "detail": {"x": NaN}}',
        '{"source": "test", "detail-type": "t", "detail": {"x": Infinity}}',
        '{"source": "test", "detail-type": "t", "detail": {"x": "\\ud800"}}',
        '{"Source": "test", "DetailType": "t", "Detail": "{\\"x\\": \\"\\\\udfff\\"}"}',
        '{"Source": "test", "DetailType": "t", "Detail": "{\\"x\\": NaN}"}',
        '{"Source": "test", "DetailType": "t", "Detail": "{}", "Time": 1e400}',
        '{"source": "test\\ud800", "detail-type": "t"}',
        '{"source": "test", "detail-type": "t", "detail": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"source": "test", "detail-type": "t", "detail": {"a": ' + '{"a":' * 2000 + "1"
        + "}" * 2001 + "}",
        '{"source": "test", "detail-type": "t", "detail": {"big": "' + "x" * 300_000 + '"}}',
        "[" * 100_000,
        "",
        "   ",
        "not json",
        "{}",
        "null",
    ]
)  # fmt: skip


@st.composite
def event_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["event", "entry", "json", "raw"]))
    if kind == "event":
        event: dict[str, Any] = {"source": "test", "detail-type": "t", "detail": {}}
        for key in draw(st.lists(st.sampled_from(list(event) + ["id", "time", "resources"]))):
            if draw(st.booleans()):
                event.pop(key, None)
            else:
                event[key] = draw(JSON)
        return json.dumps(event)
    if kind == "entry":
        entry: dict[str, Any] = {"Source": "test", "DetailType": "t", "Detail": "{}"}
        entry["Time"] = draw(TIMES)
        for key in draw(st.lists(st.sampled_from([*entry, "Resources", "EventBusName"]))):
            entry[key] = draw(JSON | st.just(json.dumps(draw(JSON))))
        return json.dumps(entry)
    if kind == "json":
        return json.dumps(draw(JSON))
    return draw(RAW_LINES)


def assert_sendable(event: dict[str, Any]) -> None:
    """What the core needs of an accepted event: types, standard JSON, UTF-8, 256 KiB."""
    assert isinstance(event["source"], str) and event["source"]
    assert isinstance(event["detail-type"], str) and event["detail-type"]
    assert isinstance(event.get("detail", {}), dict)
    text = json.dumps(event, allow_nan=False, ensure_ascii=False)
    assert len(text.encode("utf-8")) <= MAX_ENTRY_BYTES


def check_events_file(path: Path, folder: Path) -> list[tuple[str, dict[str, Any]]] | InputError:
    try:
        events = read_event_file(path, ENVELOPE)
    except InputError as err:
        assert err.source == str(path)
        assert err.key is None or err.key.startswith("line "), err
        assert "\n" not in err.line()
        return err
    store = Store(folder / "store.db")
    try:
        for bus, event in events:
            assert_sendable(event)
            body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            store.accept(NewEvent(str(event["id"]), bus, body, 0.0, [("rule", "t1")]))
    finally:
        store.close()
    return events


@FUZZ
@given(lines=st.lists(event_lines(), min_size=1, max_size=4))
def test_events_files_are_accepted_whole_or_refused_with_one_line(
    tmp_path: Path, lines: list[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    check_events_file(path, tmp_path)


@FUZZ
@given(entry=st.dictionaries(st.sampled_from(["Source", "DetailType", "Detail", "Time",
       "Resources", "EventBusName"]), JSON | TIMES, max_size=6))  # fmt: skip
def test_put_events_entries_are_accepted_or_refused_per_entry(entry: dict[str, Any]) -> None:
    try:
        bus, event = event_from_entry(entry, ENVELOPE)
    except EntryError as err:
        assert err.code in ("InvalidArgument", "MalformedDetail")
        return
    assert isinstance(bus, str)
    assert_sendable(event)


PATTERNS = [
    {"source": ["test"]},
    {"detail": {"x": [{"prefix": "a"}]}},
    {"detail": {"x": [{"suffix": "a"}]}},
    {"detail": {"x": [{"numeric": [">", 0, "<=", 5]}]}},
    {"detail": {"x": [{"cidr": "10.0.0.0/8"}]}},
    {"detail": {"x": [{"anything-but": ["a", "b"]}]}},
    {"detail": {"x": [{"anything-but": {"prefix": "a"}}]}},
    {"detail": {"x": [{"exists": False}]}},
    {"detail": {"x": [{"equals-ignore-case": "A"}]}},
    {"detail": {"x": [{"wildcard": "a*b"}]}},
    {"resources": [{"prefix": "arn:"}], "time": [{"prefix": "2"}]},
    {"$or": [{"detail": {"x": [1]}}, {"detail": {"y": [None]}}]},
]
COMPILED = [compile_pattern(p) for p in PATTERNS]


@fuzz_settings(300)
@given(
    detail=st.dictionaries(st.sampled_from(["x", "y", "z"]), JSON, max_size=3),
    resources=JSON,
    time=JSON,
)
def test_patterns_never_raise_on_odd_events(
    detail: dict[str, Any], resources: Any, time: Any
) -> None:
    event = {"source": "test", "detail-type": "t", "detail": detail, "resources": resources,
             "time": time}  # fmt: skip
    for pattern in COMPILED:
        assert pattern.matches(event) in (True, False)


def test_bad_lines_through_the_cli_name_file_and_line(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "core.yaml", core_config_data("http://127.0.0.1:9/"))
    good = json.dumps({"source": "test", "detail-type": "t", "detail": {}})
    cases = [
        '{"Source": "test", "DetailType": "t", "Detail": "{}", "Time": 1e300}',
        '{"source": "test", "detail-type": "t", "detail": {"x": "\\ud800"}}',
        '{"source": "test", "detail-type": "t", "detail": {"x": NaN}}',
        '{"source": "test", "detail-type": "t", "detail": ' + "[" * 5000 + "]" * 5000 + "}",
    ]
    for bad in cases:
        events = tmp_path / "events.jsonl"
        events.write_text(f"{good}\n{good}\n{bad}\n", encoding="utf-8")
        db = tmp_path / "core.db"
        result = runner.invoke(
            app,
            ["core", "run", str(config), "--db", str(db), "--events", str(events), "--until-idle"],
        )
        assert result.exit_code == 2, (bad[:80], result.output[-500:])
        assert_one_error_line(result.stderr, str(events), "line 3")
        assert not db.exists()  # checked whole before any line is accepted


NASTY_ENTRIES = [
    {"Source": "test", "DetailType": "t", "Detail": '{"x": "\\ud800"}'},
    {"Source": "test", "DetailType": "t", "Detail": '{"x": NaN}'},
    {"Source": "test", "DetailType": "t", "Detail": "{}", "Time": 1e300},
    {"Source": "test", "DetailType": "t", "Detail": "[" * 5000 + "]" * 5000},
    {"Source": "test\ud800", "DetailType": "t", "Detail": "{}"},
]


@pytest.mark.parametrize("nasty", NASTY_ENTRIES, ids=["surrogate", "nan", "time", "deep", "source"])
def test_a_nasty_put_events_entry_is_refused_alone_and_the_core_keeps_working(
    tmp_path: Path, nasty: dict[str, Any]
) -> None:
    good = {"Source": "test", "DetailType": "t", "Detail": json.dumps({"n": 1})}

    async def scenario() -> tuple[int, dict[str, Any], int, int]:
        async with RecordingEndpoint() as endpoint:
            config = build_config(core_config_data(endpoint.url), source="t", environ={})
            core = DeliveryCore(config, tmp_path / "core.db")
            await core.start()
            server = PutEventsServer(core, ENVELOPE, "127.0.0.1", 0)
            await server.start()
            try:
                body = json.dumps({"Entries": [nasty, good]}, ensure_ascii=True)
                headers = {"X-Amz-Target": "AWSEvents.PutEvents",
                           "Content-Type": "application/x-amz-json-1.1"}  # fmt: skip
                async with aiohttp.ClientSession() as client:
                    async with client.post(server.url, data=body, headers=headers) as response:
                        status, answer = response.status, await response.json(content_type=None)
                await asyncio.wait_for(core.wait_idle(), 10)
            finally:
                await server.stop()
                await core.stop()
            return status, answer, len(endpoint.requests), core.accepted

    status, answer, delivered, accepted = asyncio.run(scenario())
    assert status == 200, answer
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][0]["ErrorCode"] in ("InvalidArgument", "MalformedDetail")
    assert "EventId" in answer["Entries"][1]
    assert accepted == 1 and delivered == 1
