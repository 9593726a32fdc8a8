"""The HTTP client of the core (`sim.live.delivery.transport`) against raw sockets on 127.0.0.1.

Each server is a bare asyncio socket server (`RawServer`) that answers with exactly the bytes
written here, so the tests pin what goes over the wire and how each answer is read: the status
line, Retry-After, the 1 MiB body cap, timeouts, refused connections and redirects. Every
case is bounded by a client timeout of at most a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sim.live.delivery.request import HttpRequest
from sim.live.delivery.transport import MAX_BODY_BYTES, Response, Transport
from sim.policy import STATUS_CONNECTION_ERROR, STATUS_TIMEOUT
from tests.support.processes import RawServer, reply, unused_port

pytestmark = pytest.mark.live

TIMEOUT_S = 0.4

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, RawServer], Awaitable[None]]


def answers(data: bytes, delay_s: float = 0.0) -> Handler:
    """A server that reads the request, waits `delay_s`, writes `data` and closes."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await server.read_request(reader)
        await asyncio.sleep(delay_s)
        writer.write(data)
        await writer.drain()

    return handler


def post(url: str, body: bytes = b"{}", headers: tuple[tuple[str, str], ...] = ()) -> HttpRequest:
    host = url.split("/")[2]
    fixed = (("Host", host), ("Connection", "close"), ("Content-Length", str(len(body))))
    return HttpRequest("POST", url, headers + fixed, body)


def exchange(
    handler: Handler | None, request: Callable[[str], HttpRequest] = post, **kw: Any
) -> tuple[Response, RawServer | None, float]:
    """Send one request to a server running `handler` (None: nothing listens)."""

    async def main() -> tuple[Response, RawServer | None, float]:
        transport = Transport(kw.pop("timeout_s", TIMEOUT_S), allow_private=True)
        started = time.monotonic()
        try:
            if handler is None:
                response = await transport.send(request(f"http://127.0.0.1:{unused_port()}/"))
                return response, None, time.monotonic() - started
            async with RawServer(handler) as server:
                response = await transport.send(request(server.url + "/hook?a=1"))
            return response, server, time.monotonic() - started
        finally:
            await transport.close()

    return asyncio.run(main())


def test_the_request_goes_out_as_built() -> None:
    headers = (("X-Name", "héllo"), ("x-lower", "v"))
    response, server, _ = exchange(
        answers(reply(b"HTTP/1.1 201 Created")), lambda url: post(url, b'{"a":1}', headers)
    )
    assert response == Response(201, None, b"", "HTTP 201 Created")
    assert server is not None
    (raw,) = server.requests
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?a=1 HTTP/1.1"
    assert lines[1:] == [
        f"Host: 127.0.0.1:{server.port}".encode(),  # first, as RFC 9110 asks
        "X-Name: héllo".encode(),
        b"x-lower: v",
        b"Connection: close",
        b"Content-Length: 7",
    ]
    assert body == b'{"a":1}'


def test_host_and_connection_close_are_added_when_missing() -> None:
    def bare(url: str) -> HttpRequest:
        return HttpRequest("GET", url, (("Accept", "application/json"),), b"")

    response, server, _ = exchange(answers(reply(b"HTTP/1.1 200 OK")), bare)
    assert response.status == 200 and server is not None
    head = server.requests[0].split(b"\r\n")
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"Connection: close" in head


@pytest.mark.parametrize(
    ("status_line", "status", "message"),
    [
        (b"HTTP/1.1 200 OK", 200, "HTTP 200 OK"),
        (b"HTTP/1.1 429 Too Many Requests", 429, "HTTP 429 Too Many Requests"),
        (b"HTTP/1.1 503 ", 503, "HTTP 503"),
        (b"HTTP/1.0 404 Not Found", 404, "HTTP 404 Not Found"),
        (b"HTTP/1.1 600 Odd", STATUS_CONNECTION_ERROR, "malformed response (bad status)"),
        (b"HTTP/1.1 20 Short", STATUS_CONNECTION_ERROR, "malformed response"),
        (b"HTTP/2 200 OK", STATUS_CONNECTION_ERROR, "malformed response"),
    ],
)
def test_the_status_line_is_parsed(status_line: bytes, status: int, message: str) -> None:
    response, _, _ = exchange(answers(reply(status_line)))
    assert (response.status, response.message) == (status, message)


def test_interim_1xx_responses_are_skipped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"HTTP/1.1 202 Accepted", body=b"ok")
    response, _, _ = exchange(answers(data))
    assert (response.status, response.body) == (202, b"ok")


def test_retry_after_is_the_first_such_header() -> None:
    data = b"HTTP/1.1 429 Slow\r\nretry-after: 7\r\nRetry-After: 9\r\nContent-Length: 0\r\n\r\n"
    response, _, _ = exchange(answers(data))
    assert (response.status, response.retry_after) == (429, "7")
    response, _, _ = exchange(answers(reply(b"HTTP/1.1 429 Slow")))
    assert response.retry_after is None


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    ],
    ids=["content-length", "until-close"],
)
def test_at_most_one_mebibyte_of_the_body_is_read(head: bytes) -> None:
    response, _, _ = exchange(answers(head + b"x" * (2 << 20)))
    assert response.status == 200
    assert response.body == b"x" * MAX_BODY_BYTES


def test_a_chunked_body_is_decoded() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    response, _, _ = exchange(answers(data))
    assert (response.status, response.body) == (200, b"abcde")


def test_a_head_response_has_no_body_to_wait_for() -> None:
    def head(url: str) -> HttpRequest:
        return HttpRequest("HEAD", url, (("Host", url.split("/")[2]),), b"")

    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"

    async def stalls(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
    ) -> None:
        await answers(data)(reader, writer, server)
        await asyncio.sleep(3600)

    response, _, elapsed = exchange(stalls, head)
    assert (response.status, response.body) == (200, b"")
    assert elapsed < TIMEOUT_S


def test_slow_headers_are_a_timeout() -> None:
    response, _, elapsed = exchange(answers(reply(b"HTTP/1.1 200 OK"), delay_s=5.0))
    assert response.status == STATUS_TIMEOUT
    assert response.message == f"no response within {TIMEOUT_S:g} s"
    assert TIMEOUT_S - 0.01 < elapsed < TIMEOUT_S + 1.0


def test_the_response_has_the_whole_timeout_from_when_the_request_is_written() -> None:
    """Time spent before the request leaves (resolving here) is not counted against it."""
    timeout_s = 1.0

    async def main(resolve_s: float, answer_s: float) -> Response:
        transport = Transport(timeout_s, allow_private=True)
        resolve = transport.resolver.resolve

        async def slow_resolve(host: str, port: int = 0) -> list[str]:
            await asyncio.sleep(resolve_s)
            return await resolve(host, port)

        transport.resolver.resolve = slow_resolve  # type: ignore[method-assign]
        async with RawServer(answers(reply(b"HTTP/1.1 200 OK"), answer_s)) as server:
            return await transport.send(post(server.url + "/"))

    # 0.8 s + 0.4 s is over the timeout, but the answer came 0.4 s after the request left.
    late_but_in_time = asyncio.run(main(resolve_s=0.8 * timeout_s, answer_s=0.4 * timeout_s))
    assert late_but_in_time.status == 200
    never_connected = asyncio.run(main(resolve_s=1.5 * timeout_s, answer_s=0.0))
    assert never_connected.status == STATUS_TIMEOUT


def test_a_refused_connection_is_a_connection_error() -> None:
    response, _, elapsed = exchange(None)
    assert response.status == STATUS_CONNECTION_ERROR
    assert response.message.startswith("cannot connect: ")
    assert elapsed < TIMEOUT_S


def test_a_close_before_the_response_is_a_connection_error() -> None:
    response, _, _ = exchange(answers(b""))
    assert (response.status, response.message) == (STATUS_CONNECTION_ERROR, "server disconnected")


def test_a_body_cut_short_is_a_connection_error() -> None:
    response, _, _ = exchange(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    assert response.status == STATUS_CONNECTION_ERROR
    assert response.message == "malformed response body"


def test_a_redirect_is_returned_not_followed() -> None:
    async def main() -> tuple[Response, int]:
        transport = Transport(TIMEOUT_S, allow_private=True)
        async with RawServer(answers(reply(b"HTTP/1.1 200 OK"))) as elsewhere:
            location = {"Location": elsewhere.url + "/moved"}
            async with RawServer(answers(reply(b"HTTP/1.1 302 Found", location))) as server:
                response = await transport.send(post(server.url + "/"))
        return response, elsewhere.connections

    response, visited = asyncio.run(main())
    assert (response.status, response.message, visited) == (302, "HTTP 302 Found", 0)


def test_private_addresses_are_refused_unless_allowed() -> None:
    async def main() -> Response:
        transport = Transport(TIMEOUT_S, allow_private=False)
        async with RawServer(answers(reply(b"HTTP/1.1 200 OK"))) as server:
            response = await transport.send(post(server.url + "/"))
        assert server.connections == 0
        return response

    response = asyncio.run(main())
    assert response.status == STATUS_CONNECTION_ERROR
    assert response.message == "cannot connect: 127.0.0.1 resolves only to private addresses"
