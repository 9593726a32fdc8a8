"""The PutEvents endpoint: EventBridge's API (AWS JSON 1.1) over HTTP, for unmodified AWS SDKs.

An SDK pointed at it with `endpoint_url` sends `X-Amz-Target: AWSEvents.PutEvents`; the
endpoint answers only after the accepted events are persisted. With access keys configured
(`sim.ingest_credentials`) every request must carry a valid AWS Signature Version 4 for
service `events` in `sim.region` (`sim.live.sigv4`); unsigned, wrongly signed, unknown-key
and expired requests get AWS's error shapes and nothing is accepted. Without credentials no
signature is checked, so the endpoint listens on loopback addresses only.

A body over `MAX_REQUEST_BYTES` is refused before it is read in full: at once when its
Content-Length says so, else as soon as that many bytes have arrived. The signature is
checked before the body is read, as far as it can be without it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sim.errors import InputError
from sim.live import sigv4
from sim.live.delivery.core import DeliveryCore
from sim.live.ingest import (
    MAX_ENTRIES,
    MAX_ENTRY_BYTES,
    EntryError,
    Envelope,
    event_from_entry,
    loads,
)

log = logging.getLogger("sim.live")

JSON_11 = "application/x-amz-json-1.1"
MAX_REQUEST_BYTES = MAX_ENTRIES * 3 * MAX_ENTRY_BYTES + 64 * 1024
"""Largest request body read: 10 entries of 256 KiB, each at most 3 times as long once
JSON-escaped (a non-ASCII character written as \\uXXXX), plus 64 KiB for the rest."""
READ_CHUNK = 64 * 1024
LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def put_events_app(
    core: DeliveryCore, envelope: Envelope, credentials: Mapping[str, str] | None = None
) -> web.Application:
    """An aiohttp application answering `PutEvents`; `credentials` (access key id -> secret
    access key) make it check every request's SigV4 signature (region: `envelope.region`)."""

    async def handle(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return _unread(_too_large())
        signed = None
        if credentials:
            try:
                signed = sigv4.check_headers(
                    request.headers, credentials, envelope.region, datetime.now(UTC)
                )
            except sigv4.AuthFailure as failure:
                return _unread(_refused(request, failure))
        body = await _read_capped(request)
        if body is None:
            return _unread(_too_large())
        if signed is not None:
            url = f"{request.scheme}://{request.host}{request.raw_path}"
            try:
                headers = list(request.headers.items())
                sigv4.verify(signed, envelope.region, request.method, url, headers, body)
            except sigv4.AuthFailure as failure:
                return _refused(request, failure)
        target = request.headers.get("X-Amz-Target", "")
        if target != "AWSEvents.PutEvents":
            return _error(
                400, "UnknownOperationException", f"Operation {target!r} is not supported"
            )
        return await _put_events(core, envelope, body)

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/", handle)
    app.router.add_post("/{tail:.*}", handle)
    return app


async def _read_capped(request: web.Request) -> bytes | None:
    """The whole body, or None as soon as it is longer than `MAX_REQUEST_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _put_events(core: DeliveryCore, envelope: Envelope, body: bytes) -> web.Response:
    try:
        data = loads(body)
    except ValueError:
        return _error(400, "SerializationException", "The request body is not valid JSON")
    entries = data.get("Entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
        message = f"Entries must be a list of 1 to {MAX_ENTRIES} entries"
        return _error(400, "ValidationException", message)
    results: list[dict[str, str]] = []
    by_bus: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, entry in enumerate(entries):
        try:
            bus, event = event_from_entry(entry if isinstance(entry, dict) else {}, envelope)
        except EntryError as err:
            results.append({"ErrorCode": err.code, "ErrorMessage": str(err)})
            continue
        results.append({})
        by_bus.setdefault(bus, []).append((index, event))
    try:
        for bus, items in by_bus.items():
            ids = await core.submit([event for _, event in items], bus=bus)
            for (index, _), event_id in zip(items, ids, strict=True):
                results[index] = {"EventId": event_id}
    except Exception:  # nothing is acknowledged unless it was persisted
        return _error(500, "InternalException", "The events could not be persisted")
    failed = sum(1 for r in results if "ErrorCode" in r)
    return _json(200, {"FailedEntryCount": failed, "Entries": results})


def _json(
    status: int, data: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode("utf-8"),
        headers={"Content-Type": JSON_11, "x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})},
    )


def _error(status: int, kind: str, message: str) -> web.Response:
    """An AWS JSON 1.1 error: `{"__type", "message"}` and the `x-amzn-ErrorType` header."""
    return _json(status, {"__type": kind, "message": message}, {"x-amzn-ErrorType": kind})


def _refused(request: web.Request, failure: sigv4.AuthFailure) -> web.Response:
    log.info("PutEvents request from %s refused: %s", request.remote, failure.code)
    return _error(failure.status, failure.code, str(failure))


def _unread(response: web.Response) -> web.Response:
    """An answer given before the request's body was read through: the connection closes after
    it (the unread rest cannot be told from the next request), so it says so — else a client
    keeping the connection alive would send its next request into a closed socket."""
    response.force_close()
    return response


def _too_large() -> web.Response:
    message = f"Request must be at most {MAX_REQUEST_BYTES} bytes"
    return _error(413, "RequestEntityTooLargeException", message)


# --- listening -------------------------------------------------------------------------------


def is_loopback(address: str) -> bool:
    """True for a loopback IP address (127.0.0.0/8, ::1, also IPv4-mapped) or name."""
    text = address.strip("[]").split("%")[0].rstrip(".").lower()
    if text in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listen_socket(host: str, port: int, *, authenticated: bool) -> socket.socket:
    """A listening socket on HOST:PORT, or InputError (key `listen`) saying why not.

    Resolves the host, refuses a non-loopback address unless requests are `authenticated`,
    and binds (port 0: any free port). Nothing else is created, so a caller can check the
    address before it creates its database.
    """
    where = f"{host}:{port}"
    if not 0 <= port <= 65535:
        raise InputError(None, "listen", f"{where}: the port must be 0-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise InputError(None, "listen", f"{where}: unknown host ({err.strerror})") from None
    except (UnicodeError, ValueError) as err:
        raise InputError(None, "listen", f"{where}: not a host name ({err})") from None
    family, kind, proto, _, address = infos[0]
    if not authenticated and not is_loopback(str(address[0])):
        raise InputError(
            None,
            "listen",
            f"{where} is not a loopback address; PutEvents requests are not authenticated "
            "without sim.ingest_credentials in the config (listen on 127.0.0.1, or configure "
            "credentials)",
        )
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        problem = err.strerror or type(err).__name__
        raise InputError(None, "listen", f"cannot listen on {where}: {problem}") from None
    return sock


class PutEventsServer:
    """The PutEvents endpoint on HOST:PORT (port 0 picks a free one; see `port`), or on a
    socket from `listen_socket`. Checks signatures when the core's config has
    `sim.ingest_credentials`; without them, refuses to listen beyond loopback (InputError)."""

    def __init__(
        self,
        core: DeliveryCore,
        envelope: Envelope,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sock: socket.socket | None = None,
    ) -> None:
        credentials = core.config.sim.ingest_secrets()
        self.authenticated = bool(credentials)
        app = put_events_app(core, envelope, credentials)
        # lingering_time=0: a refused request's unread body is not read on; the connection closes
        self._runner = web.AppRunner(app, access_log=None, lingering_time=0)
        self._sock = sock
        self.host, self.port = host, port
        if sock is not None:
            self.host, self.port = sock.getsockname()[:2]

    async def start(self) -> None:
        if self._sock is None:
            self._sock = listen_socket(self.host, self.port, authenticated=self.authenticated)
        elif not self.authenticated and not is_loopback(self.host):
            raise InputError(None, "listen", f"{self.host} is not a loopback address")
        self.port = self._sock.getsockname()[1]
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self._sock is not None:
            self._sock.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
