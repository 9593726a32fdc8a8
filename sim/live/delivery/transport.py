"""Sending one HttpRequest over a plain socket and reducing whatever happens to a `Response`.

One connection per request (S10's `Connection: close`), opened with the event loop's
`create_connection` (TLS with the default context for https) and driven by a small protocol:
the request's bytes are written as the connection opens, and the response is parsed by h11, a
sans-I/O HTTP/1.1 parser. Connecting must succeed within the client timeout (S4) of the
attempt's start; the response (status line, headers and the body) must then arrive within the
client timeout of the moment the request is written, so time the core itself spends before
the request leaves (a busy event loop) is never counted against the endpoint. At most 1 MiB
of a body is read as it comes over the wire, then the connection is closed; a gzip or
deflate body (requests say `Accept-Encoding: gzip,deflate`) is then decoded, to at most
1 MiB as well. Redirects are not followed. Faults never
escape: a timeout becomes status `STATUS_TIMEOUT`, anything else that yields no HTTP status
(refused, reset, DNS, malformed response) `STATUS_CONNECTION_ERROR`. Error messages never
contain the URL (a query string may hold a connection's secret). Unless private endpoints
are allowed, host names resolving only to private addresses fail (S15).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import cast
from urllib.parse import SplitResult, urlsplit

import h11

from sim.live.delivery.request import HttpRequest
from sim.live.eventbridge.checks import (
    check_header_name,
    has_control_characters,
    is_private_address,
)
from sim.policy import STATUS_CONNECTION_ERROR, STATUS_TIMEOUT

MAX_BODY_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 << 10
"""Largest response head (status line and headers) read; a longer one is malformed."""
DNS_CACHE_S = 10.0
"""How long a host name's addresses are reused (as aiohttp's connector did)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Response:
    """What an attempt got: HTTP status or pseudo status, Retry-After, body prefix, message."""

    status: int
    retry_after: str | None = None
    body: bytes = b""
    message: str = ""


class PublicResolver:
    """Host name resolution with a short cache, refusing private/loopback addresses (S15).

    IP literals are not looked up. Unless `allow_private`, only public addresses are
    returned, and a name resolving only to private ones raises OSError.
    """

    def __init__(self, allow_private: bool = False, ttl_s: float = DNS_CACHE_S) -> None:
        self.allow_private = allow_private
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def resolve(self, host: str, port: int = 0) -> list[str]:
        """The addresses to try for `host`, in resolver order; raises OSError."""
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        addresses, expires_at = _literal(host), math.inf
        if addresses is None:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            expires_at = time.monotonic() + self.ttl_s
        if not self.allow_private:
            addresses = [address for address in addresses if not is_private_address(address)]
            if not addresses:
                raise OSError(f"{host} resolves only to private addresses")
        self._cache[(host, port)] = (expires_at, addresses)
        return addresses

    async def close(self) -> None:
        """Forget cached addresses."""
        self._cache.clear()


class _CannotConnect(Exception):
    """No connection could be opened: refused, unreachable, DNS, TLS handshake or S15."""


class _Disconnected(Exception):
    """The server closed the connection before sending a response."""


class _MalformedBody(Exception):
    """The response head was fine, its body was not (bad framing, cut short)."""


class Transport:
    """Sends API-destination requests, one connection each (see the module docstring)."""

    def __init__(self, timeout_s: float, allow_private: bool) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.resolver = PublicResolver(allow_private)
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to open ahead: every request opens (and closes) its own connection."""

    async def close(self) -> None:
        """Forget cached DNS results (requests in flight close their own connections)."""
        await self.resolver.close()

    async def send(self, request: HttpRequest) -> Response:
        """Send the request; return its status (or pseudo status), never raise for I/O faults."""
        try:
            return await self._exchange(request)
        except TimeoutError:  # before OSError: the client timeout, not a socket's ETIMEDOUT
            return Response(STATUS_TIMEOUT, message=f"no response within {self.timeout_s:g} s")
        except _CannotConnect as err:
            return Response(STATUS_CONNECTION_ERROR, message=f"cannot connect: {err}")
        except _Disconnected:
            return Response(STATUS_CONNECTION_ERROR, message="server disconnected")
        except h11.RemoteProtocolError:
            return Response(STATUS_CONNECTION_ERROR, message="malformed response")
        except _MalformedBody:
            return Response(STATUS_CONNECTION_ERROR, message="malformed response body")
        except OSError as err:
            message = f"connection failed: {_os_reason(err)}"
            return Response(STATUS_CONNECTION_ERROR, message=message)
        except (h11.LocalProtocolError, ValueError) as err:
            message = f"request failed: {type(err).__name__}"
            return Response(STATUS_CONNECTION_ERROR, message=message)

    async def _exchange(self, request: HttpRequest) -> Response:
        url = urlsplit(request.url)
        host, port = url.hostname or "", url.port or _DEFAULT_PORTS.get(url.scheme, 80)
        tls = self._tls_context() if url.scheme == "https" else None
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        wire, host_header = _wire(request, target, url)
        loop = asyncio.get_running_loop()
        exchange = _Exchange(_parser(request.method, target, host_header), wire, loop)
        async with asyncio.timeout(self.timeout_s) as deadline:
            try:
                transport = await self._connect(exchange, host, port, tls)
            except BaseException:
                exchange.done.cancel()  # a late connection_lost must not set an unread error
                raise
            try:
                # The response has the whole timeout from the moment the request left.
                deadline.reschedule(exchange.written_at + self.timeout_s)
                response = await exchange.done
            except BaseException:
                transport.abort()
                raise
            transport.close()
            return response

    async def _connect(
        self, exchange: _Exchange, host: str, port: int, tls: ssl.SSLContext | None
    ) -> asyncio.Transport:
        """A connection running `exchange`, to the first address of `host` that accepts one."""
        try:
            addresses = await self.resolver.resolve(host, port)
        except OSError as err:
            raise _CannotConnect(_os_reason(err)) from None
        loop = asyncio.get_running_loop()
        problem = "no address"
        for address in addresses:
            try:
                transport, _ = await loop.create_connection(
                    lambda: exchange, address, port, ssl=tls, server_hostname=host if tls else None
                )
                return cast(asyncio.Transport, transport)
            except OSError as err:
                problem = _os_reason(err)
        raise _CannotConnect(problem)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


class _Exchange(asyncio.Protocol):
    """One request and its response on one connection, driven by the loop's callbacks.

    `done` gets the `Response` (status, Retry-After, at most `MAX_BODY_BYTES` of body) or the
    exception that ended the exchange.
    """

    def __init__(self, http: h11.Connection, wire: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.http = http
        self.wire = wire
        self.loop = loop
        self.done: asyncio.Future[Response] = loop.create_future()
        self.written_at = loop.time()
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.head: h11.Response | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.wire)
        self.written_at = self.loop.time()

    def data_received(self, data: bytes) -> None:
        if not self.done.done():
            self.received += len(data)
            self.http.receive_data(data)
            self._pump()

    def eof_received(self) -> None:
        if self.done.done():
            return
        if not self.received:
            self._end(error=_Disconnected())
            return
        self.http.receive_data(b"")
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(error=exc if exc is not None else _Disconnected())

    def _pump(self) -> None:
        try:
            while not self.done.done():
                event = self.http.next_event()
                if event is h11.NEED_DATA:
                    return
                self._handle(event)
        except h11.RemoteProtocolError as err:
            self._end(error=err if self.head is None else _MalformedBody())

    def _handle(self, event: object) -> None:
        if self.head is None:
            if isinstance(event, h11.InformationalResponse):  # 1xx is interim in HTTP/1.1
                return
            if not isinstance(event, h11.Response):
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
            # h11 checks its limit only while it needs more data: a head that came whole is
            # checked here.
            if self.received - len(self.http.trailing_data[0]) > MAX_HEAD_BYTES:
                raise h11.RemoteProtocolError("response head too long")
            if not 100 <= event.status_code <= 599:
                message = "malformed response (bad status)"
                self._end(Response(STATUS_CONNECTION_ERROR, message=message))
                return
            self.head = event
        elif isinstance(event, h11.Data):
            self.chunks.append(event.data)
            self.size += len(event.data)
            if self.size >= MAX_BODY_BYTES:
                self._end(self._response())  # the rest is never read: the connection closes
        else:  # EndOfMessage, or ConnectionClosed after a body delimited by the close
            self._end(self._response())

    def _response(self) -> Response:
        head = self.head
        assert head is not None
        retry_after = next((v for k, v in head.headers if k == b"retry-after"), None)
        codings = b",".join(v for k, v in head.headers if k == b"content-encoding")
        reason = head.reason.decode("utf-8", "replace")
        return Response(
            head.status_code,
            retry_after=retry_after.decode("latin-1") if retry_after is not None else None,
            body=decode_body(b"".join(self.chunks)[:MAX_BODY_BYTES], codings.decode("latin-1")),
            message=f"HTTP {head.status_code} {reason}".strip(),
        )

    def _end(self, response: Response | None = None, error: BaseException | None = None) -> None:
        if self.done.done():
            return
        if self.transport is not None:
            self.transport.pause_reading()
        if error is not None:
            self.done.set_exception(error)
        else:
            assert response is not None
            self.done.set_result(response)


def decode_body(body: bytes, content_encoding: str) -> bytes:
    """A body as sent, decoded per its Content-Encoding (gzip, deflate, in the order applied)
    to at most `MAX_BODY_BYTES`. A coding this does not know, or data that do not decode,
    leave the body as it came (the status still decides the attempt); a body cut off at the
    read limit decodes as far as it goes."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoded = body
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            attempts: tuple[int, ...] = (zlib.MAX_WBITS | 16,)
        elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            attempts = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
        else:
            return body
        for wbits in attempts:
            try:
                decoded = zlib.decompressobj(wbits).decompress(decoded, MAX_BODY_BYTES)
                break
            except zlib.error:
                continue
        else:
            return body
    return decoded


def _wire(request: HttpRequest, target: str, url: SplitResult) -> tuple[bytes, bytes]:
    """The request's bytes and its Host value: Host first, then its headers in their order.

    Host, `Connection: close` and Content-Length are added when absent. A header that is not
    a token, or a value holding control characters, is refused (ValueError): it could split
    the request. Values are sent as UTF-8.
    """
    host = None
    lines = []
    present = set()
    for name, value in request.headers:
        check_header_name(name)
        if has_control_characters(value):
            raise ValueError(f"header {name}: control characters in the value")
        lower = name.lower()
        present.add(lower)
        if lower == "host":
            host = host if host is not None else value
            continue
        lines.append(f"{name}: {value}")
    if host is None:
        host = url.netloc.rsplit("@", 1)[-1]
    if "connection" not in present:
        lines.append("Connection: close")
    if request.body and not present & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(request.body)}")
    head = "\r\n".join([f"{request.method} {target} HTTP/1.1", f"Host: {host}", *lines])
    return (head + "\r\n\r\n").encode("utf-8") + request.body, host.encode("utf-8")


def _parser(method: str, target: str, host: bytes) -> h11.Connection:
    """An h11 client connection that has sent this request, ready to parse the response.

    h11 needs the request's method (a HEAD response has no body), its target and that the
    connection closes after it; it also refuses a method or target that would break the
    request line. The bytes it would write are not used: `_wire` makes them.
    """
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    headers = [(b"Host", host), (b"Connection", b"close")]
    http.send(h11.Request(method=method, target=target, headers=headers))
    http.send(h11.EndOfMessage())
    return http


def _literal(host: str) -> list[str] | None:
    """[host] if it is an IP address literal, else None."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return [host]


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__
