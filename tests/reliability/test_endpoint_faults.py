"""Endpoint faults over real sockets on 127.0.0.1, each classified per S4/S5 (design §9).

Every fault is served by a raw asyncio socket server (`RawServer`), so it misbehaves exactly as
written here: refused, reset at each stage of the response, headers slower than the client
timeout, a body that never ends, a 10 MB body, malformed status lines, redirects and invalid
Retry-After values. One event goes through the real `DeliveryCore` with `MaximumRetryAttempts:
1`, so a retryable fault shows as two attempts and a non-retryable one as one. Each case is
bounded in time, and afterwards no socket or file of this process and no asyncio task is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sim.live.config.loading import build_config
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.request import HttpRequest
from sim.live.delivery.store import Store
from sim.live.delivery.transport import MAX_BODY_BYTES, Response
from sim.records import to_frame
from tests.support.processes import (
    RawServer,
    core_config_data,
    event,
    open_fds,
    reply,
    reset,
    unused_port,
)

pytestmark = pytest.mark.live

TIMEOUT_S = 0.5
BACKOFF_CAP_S = 0.05
SLACK_S = 1.0  # scheduling slack on a shared 2-core machine

Fault = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawServer], Awaitable[None]]


class Sink:
    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        pass

    def attempts(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunks.append(chunk)


@dataclass
class Result:
    """What one event met: attempt records, DLQ attributes, responses seen, time, leftovers."""

    records: pd.DataFrame
    dlq: list[dict[str, Any]]
    counts: dict[str, int]
    responses: list[Response]
    elapsed_s: float
    leftover_tasks: list[str]
    server: RawServer | None


async def _deliver(url: str, tmp_path: Path, timeout_s: float | None, retries: int) -> Result:
    sim = {"backoff": {"base": "10ms", "cap": BACKOFF_CAP_S, "jitter": "none"}}
    if timeout_s is not None:
        sim["timeout"] = timeout_s
    data = core_config_data(url + "/hook", retries=retries, sim=sim)
    config = build_config(data, source="faults", environ={})
    sink = Sink()
    core = DeliveryCore(config, tmp_path / "core.db", sink)
    responses: list[Response] = []
    send = core.transport.send

    async def spy(request: HttpRequest) -> Response:
        response = await send(request)
        responses.append(response)
        return response

    core.transport.send = spy  # type: ignore[method-assign]
    await core.start()
    started = time.monotonic()
    try:
        await core.submit([event(1)])
        limit = (retries + 1) * ((timeout_s or 5.0) + BACKOFF_CAP_S) + SLACK_S
        await asyncio.wait_for(core.wait_idle(), limit)
    finally:
        elapsed = time.monotonic() - started
        await core.stop()
    store = Store(tmp_path / "core.db")
    try:
        dlq, counts = [r["attributes"] for r in store.dead_letters()], store.counts()
    finally:
        store.close()
    frame = to_frame(sink.chunks).sort_values("attempt", ignore_index=True)
    return Result(frame, dlq, counts, responses, elapsed, [], None)


def _leftover_tasks() -> list[str]:
    current = asyncio.current_task()
    return [repr(t.get_coro()) for t in asyncio.all_tasks() if t is not current]


def against(
    fault: Fault | None, tmp_path: Path, *, timeout_s: float | None = TIMEOUT_S, retries: int = 1
) -> Result:
    """Deliver one event to a server behaving as `fault` (None: nothing listens); check leaks."""

    async def main() -> Result:
        if fault is None:
            url = f"http://127.0.0.1:{unused_port()}"
            result = await _deliver(url, tmp_path, timeout_s, retries)
        else:
            async with RawServer(fault) as server:
                result = await _deliver(server.url, tmp_path, timeout_s, retries)
            result.server = server
        result.leftover_tasks = _leftover_tasks()
        return result

    before = open_fds()
    result = asyncio.run(main())
    leaked = open_fds() - before
    assert not leaked, f"leaked file descriptors: {leaked}"
    assert not result.leftover_tasks, f"tasks left after stop(): {result.leftover_tasks}"
    return result


def assert_retryable(result: Result, outcome: str, error_code: str) -> None:
    """Two attempts with `outcome` (one retry), then the DLQ with MaximumRetryAttempts."""
    assert list(result.records["outcome"]) == [outcome, outcome]
    assert result.counts["dlq"] == 1 and result.counts["pending"] == 0
    (attributes,) = result.dlq
    assert attributes["ERROR_CODE"] == error_code
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"] == 1


def durations(result: Result) -> pd.Series:
    return result.records["complete_at"] - result.records["dispatch_at"]


# --- faults ---------------------------------------------------------------------------------


def sends_then_resets(data: bytes) -> Fault:
    async def fault(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        if data:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0.05)  # let the bytes arrive before the RST
        reset(writer)

    return fault


def sends_then_closes(data: bytes) -> Fault:
    async def fault(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        writer.write(data)
        await writer.drain()

    return fault


def sends_then_stalls(data: bytes) -> Fault:
    async def fault(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(3600)

    return fault


def trickles(head: bytes, byte: bytes, every_s: float) -> Fault:
    async def fault(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        writer.write(head)
        while True:
            writer.write(byte)
            await writer.drain()
            await asyncio.sleep(every_s)

    return fault


def floods(head: bytes, total: int | None) -> Fault:
    """Sends `head`, then body bytes (forever when `total` is None) until the client closes."""

    async def fault(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        writer.write(head)
        sent, chunk = 0, b"x" * 65536
        try:
            while total is None or sent < total:
                piece = chunk if total is None else chunk[: total - sent]
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
            await asyncio.sleep(3600)  # all sent: wait for the client to hang up
        finally:
            server.bytes_written.append(sent)

    return fault


# --- refused, reset, closed -----------------------------------------------------------------


def test_connection_refused_is_a_retried_connection_failure(tmp_path: Path) -> None:
    result = against(None, tmp_path)
    assert_retryable(result, "connection_error", "CONNECTION_FAILURE")
    assert result.elapsed_s < SLACK_S
    assert "cannot connect" in result.dlq[0]["ERROR_MESSAGE"]


RESETS = {
    "before-status-line": b"",
    "mid-status-line": b"HTTP/1.1 20",
    "mid-headers": b"HTTP/1.1 200 OK\r\nContent-Len",
    "after-headers": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    "mid-body": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10,
    "mid-chunked-body": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
}


@pytest.mark.parametrize("data", RESETS.values(), ids=RESETS.keys())
def test_reset_at_any_stage_of_the_response_is_a_connection_failure(
    tmp_path: Path, data: bytes
) -> None:
    result = against(sends_then_resets(data), tmp_path)
    assert_retryable(result, "connection_error", "CONNECTION_FAILURE")
    assert result.elapsed_s < SLACK_S
    assert result.server is not None and len(result.server.requests) == 2


@pytest.mark.parametrize(
    "data",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["body-shorter-than-content-length", "headers-cut-off"],
)
def test_orderly_close_before_the_response_is_complete_is_a_connection_failure(
    tmp_path: Path, data: bytes
) -> None:
    result = against(sends_then_closes(data), tmp_path)
    assert_retryable(result, "connection_error", "CONNECTION_FAILURE")


# --- slow: headers or body slower than the client timeout -----------------------------------

SLOW = {
    "silent": sends_then_stalls(b""),
    "status-line-only": sends_then_stalls(b"HTTP/1.1 200 OK\r\n"),
    "headers-trickle": trickles(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.05),
    "body-never-ends": trickles(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x", 0.05),
    "chunked-body-never-ends": trickles(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n", 0.05
    ),
    "body-shorter-than-content-length": sends_then_stalls(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx"
    ),
}


@pytest.mark.parametrize("fault", SLOW.values(), ids=SLOW.keys())
def test_a_response_slower_than_the_timeout_is_a_retried_timeout(
    tmp_path: Path, fault: Fault
) -> None:
    result = against(fault, tmp_path)
    assert_retryable(result, "timeout", "TIMEOUT")
    assert ((durations(result) > TIMEOUT_S - 0.01) & (durations(result) < TIMEOUT_S + 0.5)).all()


def test_headers_slower_than_the_real_5_s_timeout(tmp_path: Path) -> None:
    result = against(SLOW["headers-trickle"], tmp_path, timeout_s=None, retries=0)
    assert list(result.records["outcome"]) == ["timeout"]
    (duration,) = durations(result)
    assert 5.0 - 0.01 < duration < 5.0 + 0.6
    assert result.dlq[0]["ERROR_CODE"] == "TIMEOUT"
    assert result.dlq[0]["RETRY_ATTEMPTS"] == 0


# --- big bodies: only 1 MiB is read -----------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "total"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n", 10 << 20),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", None),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 10485760\r\n\r\n", 10 << 20),
    ],
    ids=["10-MB-with-length", "endless-fast-body", "10-MB-error-body"],
)
def test_only_one_mebibyte_of_a_huge_body_is_read(
    tmp_path: Path, head: bytes, total: int | None
) -> None:
    result = against(floods(head, total), tmp_path)
    assert [len(r.body) for r in result.responses] == [MAX_BODY_BYTES] * len(result.responses)
    if b" 200 " in head:
        assert list(result.records["outcome"]) == ["delivered"]
    else:
        assert_retryable(result, "retry", "ERROR_FROM_TARGET")
    assert result.elapsed_s < SLACK_S + 1
    assert result.server is not None
    # The client hung up after 1 MiB: the server could not push the rest (socket buffers only).
    assert all(sent < 8 << 20 for sent in result.server.bytes_written), result.server.bytes_written


# --- malformed responses --------------------------------------------------------------------

MALFORMED = {
    "not-http": b"NOT HTTP AT ALL\r\n\r\n",
    "status-not-a-number": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "status-two-digits": b"HTTP/1.1 99 Odd\r\nContent-Length: 0\r\n\r\n",
    "status-600": b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
    "status-four-digits": b"HTTP/1.1 2000 Odd\r\nContent-Length: 0\r\n\r\n",
    "negative-status": b"HTTP/1.1 -200 Odd\r\nContent-Length: 0\r\n\r\n",
    "bad-version": b"HTTP/9.x 200 OK\r\nContent-Length: 0\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n",
    "content-length-not-a-number": b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    "two-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n",
    "header-line-too-long": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "binary-garbage": bytes(range(256)) * 4,
    "only-100-continue": b"HTTP/1.1 100 Continue\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_response_is_a_retried_connection_failure(tmp_path: Path, data: bytes) -> None:
    result = against(sends_then_closes(data), tmp_path)
    assert_retryable(result, "connection_error", "CONNECTION_FAILURE")
    assert result.elapsed_s < SLACK_S


# --- redirects are not followed ---------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_without_retry_and_is_not_followed(
    tmp_path: Path, status: int
) -> None:
    async def elsewhere(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        writer.write(reply(b"HTTP/1.1 200 OK"))

    async def main() -> tuple[Result, RawServer]:
        async with RawServer(elsewhere) as target:
            location = {"Location": f"{target.url}/moved"}
            redirect = sends_then_closes(reply(f"HTTP/1.1 {status} Moved".encode(), location))
            async with RawServer(redirect) as server:
                result = await _deliver(server.url, tmp_path, TIMEOUT_S, 1)
            result.server = server
        result.leftover_tasks = _leftover_tasks()
        return result, target

    before = open_fds()
    result, target = asyncio.run(main())
    assert open_fds() - before == set() and not result.leftover_tasks
    assert list(result.records["outcome"]) == ["failed"]
    assert list(result.records["status"]) == [status]
    assert target.connections == 0  # the Location was never visited
    (attributes,) = result.dlq
    assert attributes["ERROR_CODE"] == "ERROR_FROM_TARGET"
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes and attributes["RETRY_ATTEMPTS"] == 0


# --- Retry-After that cannot be used ----------------------------------------------------------

INVALID_RETRY_AFTER = [
    "abc",
    "1.5",
    "1e3",
    "",
    "+5",
    "5 6",
    "0x10",
    "Wed, 32 Foo 2025 99:99:99 GMT",
    "Wed, 21 Oct 2015 07:28:00",  # an HTTP-date without its zone
    "\u00e9",
]


@pytest.mark.parametrize("value", INVALID_RETRY_AFTER)
def test_an_invalid_retry_after_is_ignored(tmp_path: Path, value: str) -> None:
    headers = {"Retry-After": value}
    result = against(sends_then_closes(reply(b"HTTP/1.1 503 Busy", headers)), tmp_path)
    assert_retryable(result, "retry", "ERROR_FROM_TARGET")
    assert result.records["retry_after_s"].isna().all()
    first = result.records.iloc[0]
    assert first["next_ready_at"] - first["complete_at"] <= BACKOFF_CAP_S + 1e-9  # backoff only


@pytest.mark.parametrize("digits", [400, 5000], ids=["overflows-a-float", "over-int-digit-limit"])
def test_a_huge_retry_after_never_wedges_a_delivery(tmp_path: Path, digits: int) -> None:
    headers = {"Retry-After": "9" * digits}
    result = against(sends_then_closes(reply(b"HTTP/1.1 503 Busy", headers)), tmp_path)
    assert result.counts["pending"] == 0 and result.counts["dlq"] == 1
    assert result.elapsed_s < SLACK_S


def test_a_huge_retry_after_ends_the_event_at_its_maximum_age(tmp_path: Path) -> None:
    headers = {"Retry-After": "9" * 400}
    result = against(sends_then_closes(reply(b"HTTP/1.1 503 Busy", headers)), tmp_path)
    assert result.dlq[0]["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeInSeconds"
