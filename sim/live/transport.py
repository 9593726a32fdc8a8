"""Sending one HttpRequest over a plain socket and reducing whatever happens to a `Response`.

One connection per request (S10's `Connection: close`), opened with `asyncio.open_connection`
(TLS with the default context for https) and spoken with h11, a sans-I/O HTTP/1.1 parser.
Connecting must succeed within the client timeout (S4) of the attempt's start; the response
(status line, headers and the body) must then arrive within the client timeout of the moment
the request is written, so time the core itself spends before the request leaves (a busy
event loop) is never counted against the endpoint. At most 1 MiB of a body is read, then the
connection is closed; redirects are not followed. Faults never escape: a timeout becomes
status `STATUS_TIMEOUT`, anything else that yields no HTTP status (refused, reset, DNS,
malformed response) `STATUS_CONNECTION_ERROR`. Error messages never contain the URL (a query
string may hold a connection's secret). Unless private endpoints are allowed, host names
resolving only to private addresses fail (S15).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11

from sim.live.config_checks import is_private_address
from sim.live.request import HttpRequest
from sim.policy import STATUS_CONNECTION_ERROR, STATUS_TIMEOUT

MAX_BODY_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 << 10
"""Largest response head (status line and headers) read; a longer one is malformed."""
DNS_CACHE_S = 10.0
"""How long a host name's addresses are reused (as aiohttp's connector did)."""
_READ_BYTES = 64 << 10
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
        addresses = _literal(host)
        if addresses is None:
            cached = self._cache.get((host, port))
            if cached is not None and cached[0] > time.monotonic():
                addresses = cached[1]
            else:
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                self._cache[(host, port)] = (time.monotonic() + self.ttl_s, addresses)
        if not self.allow_private:
            addresses = [address for address in addresses if not is_private_address(address)]
            if not addresses:
                raise OSError(f"{host} resolves only to private addresses")
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
        http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        head = h11.Request(method=request.method, target=target, headers=_headers(request, url))
        wire = http.send(head) or b""
        if request.body:
            wire += http.send(h11.Data(data=request.body)) or b""
        wire += http.send(h11.EndOfMessage()) or b""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s) as deadline:
            reader, writer = await self._connect(host, port, tls)
            try:
                writer.write(wire)
                # The response has the whole timeout from the moment the request leaves.
                deadline.reschedule(loop.time() + self.timeout_s)
                await writer.drain()
                response = await _receive(reader, http)
            except BaseException:
                writer.transport.abort()
                raise
            writer.close()
            return response

    async def _connect(
        self, host: str, port: int, tls: ssl.SSLContext | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the first address of `host` that accepts one."""
        try:
            addresses = await self.resolver.resolve(host, port)
        except OSError as err:
            raise _CannotConnect(_os_reason(err)) from None
        problem = "no address"
        for address in addresses:
            try:
                return await asyncio.open_connection(
                    address, port, ssl=tls, server_hostname=host if tls else None
                )
            except OSError as err:
                problem = _os_reason(err)
        raise _CannotConnect(problem)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


async def _receive(reader: asyncio.StreamReader, http: h11.Connection) -> Response:
    """The response: status, Retry-After and at most `MAX_BODY_BYTES` of its body."""
    received = 0
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_BYTES)
            if not data and not received:
                raise _Disconnected
            received += len(data)
            http.receive_data(data)
        elif not isinstance(event, h11.InformationalResponse):  # 1xx is interim in HTTP/1.1
            break
    # h11 checks its limit only while it needs data; a head that came in whole is checked here.
    if received - len(http.trailing_data[0]) > MAX_HEAD_BYTES:
        raise h11.RemoteProtocolError("response head too long")
    if not isinstance(event, h11.Response):
        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
    if not 100 <= event.status_code <= 599:
        return Response(STATUS_CONNECTION_ERROR, message="malformed response (bad status)")
    retry_after = next((v for k, v in event.headers if k == b"retry-after"), None)
    try:
        body = await _read_body(reader, http, MAX_BODY_BYTES)
    except h11.RemoteProtocolError:
        raise _MalformedBody from None
    reason = event.reason.decode("utf-8", "replace")
    return Response(
        event.status_code,
        retry_after=retry_after.decode("latin-1") if retry_after is not None else None,
        body=body,
        message=f"HTTP {event.status_code} {reason}".strip(),
    )


async def _read_body(reader: asyncio.StreamReader, http: h11.Connection, limit: int) -> bytes:
    """Up to `limit` bytes of a body; the rest is never read (the connection is closed)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        event = await _next_event(reader, http)
        if isinstance(event, h11.Data):
            chunks.append(event.data)
            size += len(event.data)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    return b"".join(chunks)[:limit]


async def _next_event(reader: asyncio.StreamReader, http: h11.Connection) -> object:
    """The next h11 event, reading from the socket as needed (b"" at end of stream)."""
    while True:
        event = http.next_event()
        if event is not h11.NEED_DATA:
            return event
        http.receive_data(await reader.read(_READ_BYTES))


def _headers(request: HttpRequest, url: SplitResult) -> list[tuple[bytes, bytes]]:
    """The request's headers as bytes, plus Host, Connection and Content-Length when absent."""
    headers = [(k.encode("ascii"), v.encode("utf-8")) for k, v in request.headers]
    present = {k.lower() for k, _ in headers}
    if b"host" not in present:
        headers.append((b"Host", url.netloc.rsplit("@", 1)[-1].encode("ascii")))
    if b"connection" not in present:
        headers.append((b"Connection", b"close"))
    if request.body and not present & {b"content-length", b"transfer-encoding"}:
        headers.append((b"Content-Length", str(len(request.body)).encode("ascii")))
    return headers


def _literal(host: str) -> list[str] | None:
    """[host] if it is an IP address literal, else None."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return [host]


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__
