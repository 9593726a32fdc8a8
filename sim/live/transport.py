"""Sending one HttpRequest over aiohttp and reducing whatever happens to a `Response` (S4, S10).

The client timeout covers connecting, sending, the response headers and reading the body;
at most 1 MiB of a body is read; redirects are not followed; every connection is closed after
its request. Faults never escape: a timeout becomes status `STATUS_TIMEOUT`, anything else
that yields no HTTP status (refused, reset, DNS, malformed response) `STATUS_CONNECTION_ERROR`.
Error messages never contain the URL (a query string may hold a connection's secret).
Unless private endpoints are allowed, host names resolving only to private addresses fail.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from sim.live.config_checks import is_private_address
from sim.live.request import HttpRequest
from sim.policy import STATUS_CONNECTION_ERROR, STATUS_TIMEOUT

MAX_BODY_BYTES = 1 << 20
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@dataclass(frozen=True)
class Response:
    """What an attempt got: HTTP status or pseudo status, Retry-After, body prefix, message."""

    status: int
    retry_after: str | None = None
    body: bytes = b""
    message: str = ""


class PublicResolver(AbstractResolver):
    """DNS resolution that refuses names resolving only to private/loopback addresses (S15)."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        public = [info for info in infos if not is_private_address(info["host"])]
        if not public:
            raise OSError(f"{host} resolves only to private addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class Transport:
    """An aiohttp client session configured for API-destination requests."""

    def __init__(self, timeout_s: float, allow_private: bool) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the client session (idempotent)."""
        if self._session is None:
            resolver = None if self.allow_private else PublicResolver()
            connector = aiohttp.TCPConnector(force_close=True, limit=0, resolver=resolver)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: HttpRequest) -> Response:
        """Send the request; return its status (or pseudo status), never raise for I/O faults."""
        await self.start()
        assert self._session is not None
        try:
            return await self._exchange(self._session, request)
        except TimeoutError:
            return Response(STATUS_TIMEOUT, message=f"no response within {self.timeout_s:g} s")
        except aiohttp.ClientConnectorError as err:
            reason = err.os_error.strerror or type(err.os_error).__name__
            return Response(STATUS_CONNECTION_ERROR, message=f"cannot connect: {reason}")
        except aiohttp.ServerDisconnectedError:
            return Response(STATUS_CONNECTION_ERROR, message="server disconnected")
        except aiohttp.ClientResponseError:
            return Response(STATUS_CONNECTION_ERROR, message="malformed response")
        except aiohttp.ClientPayloadError:
            return Response(STATUS_CONNECTION_ERROR, message="malformed response body")
        except OSError as err:
            message = f"connection failed: {_os_reason(err)}"
            return Response(STATUS_CONNECTION_ERROR, message=message)
        except (aiohttp.ClientError, ValueError) as err:
            message = f"request failed: {type(err).__name__}"
            return Response(STATUS_CONNECTION_ERROR, message=message)

    async def _exchange(self, session: aiohttp.ClientSession, request: HttpRequest) -> Response:
        options: dict[str, Any] = {
            "headers": list(request.headers),
            "allow_redirects": False,
            "skip_auto_headers": _SKIP_AUTO_HEADERS,
            "timeout": aiohttp.ClientTimeout(total=self.timeout_s),
        }
        if request.body or request.header("Content-Length") is not None:
            options["data"] = request.body
        url = URL(request.url, encoded=True)
        async with session.request(request.method, url, **options) as response:
            if not 100 <= response.status <= 599:
                return Response(STATUS_CONNECTION_ERROR, message="malformed response (bad status)")
            body = await _read_limited(response.content, MAX_BODY_BYTES)
            return Response(
                response.status,
                retry_after=response.headers.get("Retry-After"),
                body=body,
                message=f"HTTP {response.status} {response.reason or ''}".strip(),
            )


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body; the rest is never read (the connection is closed)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _os_reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__
