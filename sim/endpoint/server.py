"""The local endpoint: a real HTTP server that behaves as a scenario's `endpoint` says (S9a).

Each request draws a status, a hang and a service time from the scenario's `EndpointModel`
at its arrival time (seconds since time zero). With `capacity` it goes through an M/G/c/K
queue: FIFO, `concurrency` servers, `queue` waiting places, overload answered at once with
`overload_status`. Admission is decided on arrival exactly as the model's server does it
(earliest-free server, fixed start and leave times), so a request the client abandons keeps
its place until its service ends. A hang holds its place for the client timeout
(`destination.timeout`), then the connection is closed without a response.

Every request is logged (`RequestLog`); an optional OAuth client-credentials token endpoint
(`POST /oauth/token`) protects every other path with Bearer tokens that expire or can be revoked.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hmac
import json
import math
import re
import secrets
import signal
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import numpy as np
from aiohttp import web

from sim.endpoint.access_log import AccessLog
from sim.endpoint.model import EndpointModel, service_quantile
from sim.endpoint.queue import ServerQueue
from sim.rng import generator
from sim.scenario.model import Scenario

__all__ = [
    "REDACTED",
    "TOKEN_PATH",
    "EndpointServer",
    "OAuthSettings",
    "RequestLog",
    "RequestRecord",
    "describe",
    "header_seconds",
    "serve",
]

TOKEN_PATH = "/oauth/token"
REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"auth|key|token|secret|passw|cookie|signature|credential|session", re.I)


@dataclass(frozen=True)
class OAuthSettings:
    """Client credentials the token endpoint accepts, and the lifetime of the tokens it issues."""

    client_id: str
    client_secret: str
    token_lifetime_s: float = 3600.0


@dataclass(slots=True)
class RequestRecord:
    """One request the endpoint received; `*_at` are seconds since the endpoint's time zero."""

    arrival_at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_bytes: int = 0
    status: int | None = None  # None: a hang (closed without a response)
    retry_after_s: int | None = None  # the Retry-After header sent, if any
    queue_wait_s: float = 0.0
    service_s: float = 0.0  # time in service (a hang: the time it was held)
    completed_at: float | None = None  # None: the server stopped before answering
    overload: bool = False
    hang: bool = False
    unauthorized: bool = False
    client_gone: bool = False  # the client had disconnected when the answer was due
    regime: int | None = None  # index of the endpoint model's time segment
    incidents: tuple[int, ...] = ()  # indices of the scenario's incidents in force


class RequestLog:
    """Every request received, in arrival order in memory; optionally streamed to JSONL or CSV.

    The file gets one row per request when it completes (sort by `arrival_at` for arrival
    order). Secret-looking headers and query values are redacted in files, not in memory.
    """

    def __init__(
        self, path: str | Path | None = None, *, keep: bool = True, redact: Iterable[str] = ()
    ) -> None:
        self.records: list[RequestRecord] = []
        self.keep = keep
        self._redact = {name.lower() for name in redact}
        self._file: IO[str] | None = None
        self._csv: csv.DictWriter[str] | None = None
        if path is not None:
            self._file = Path(path).open("w", encoding="utf-8", newline="")
            if Path(path).suffix.lower() == ".csv":
                self._csv = _csv_writer(self._file)

    def open(self, record: RequestRecord) -> None:
        """Register a request on arrival."""
        if self.keep:
            self.records.append(record)

    def close_record(self, record: RequestRecord) -> None:
        """A request is finished: stream it to the file, if any."""
        if self._file is not None:
            self._write_row(record)
            self._file.flush()

    def _write_row(self, record: RequestRecord) -> None:
        assert self._file is not None
        row = self.row(record)
        if self._csv is not None:
            self._csv.writerow(_flat(row))
        else:
            self._file.write(json.dumps(row) + "\n")

    def row(self, record: RequestRecord) -> dict[str, Any]:
        """The record as plain data with secrets redacted (what files contain)."""
        row = asdict(record)
        row["headers"] = {k: self._hide(k, v) for k, v in record.headers.items()}
        row["query"] = {k: self._hide(k, v) for k, v in record.query.items()}
        row["incidents"] = list(record.incidents)
        return row

    def _hide(self, name: str, value: str) -> str:
        lowered = name.lower()
        return REDACTED if lowered in self._redact or _SECRET_NAME.search(lowered) else value

    def write(self, path: str | Path) -> None:
        """Write the records kept in memory to a `.csv` file, or JSONL for any other suffix."""
        with Path(path).open("w", encoding="utf-8", newline="") as out:
            writer = _csv_writer(out) if Path(path).suffix.lower() == ".csv" else None
            for record in self.records:
                row = self.row(record)
                if writer is not None:
                    writer.writerow(_flat(row))
                else:
                    out.write(json.dumps(row) + "\n")

    def close(self) -> None:
        """Close the streaming file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_writer(out: IO[str]) -> csv.DictWriter[str]:
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(RequestRecord)])
    writer.writeheader()
    return writer


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def header_seconds(seconds: float) -> int:
    """Retry-After seconds as the integer sent: away from zero, so a negative stays negative."""
    return math.floor(seconds) if seconds < 0 else math.ceil(seconds)


class EndpointServer:
    """Serves one scenario's endpoint over HTTP; time zero is `start()` unless `t0` is given.

    For a bus scenario, `destination` names the destination whose endpoint it serves (one
    server per destination); its client timeout is that destination's.
    Randomness comes from `generator(seed, replication, "endpoint")` (a bus's destination N > 0:
    source `"N-endpoint"`, a stream of its own): three uniforms per request (status, hang,
    latency) in arrival order; `seed` defaults to the scenario's.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        replication: int = 0,
        hang_s: float | None = None,
        oauth: OAuthSettings | None = None,
        log: RequestLog | None = None,
        shutdown_timeout_s: float = 1.0,
        access_log: AccessLog | None = None,
        destination: str | None = None,
    ) -> None:
        self.scenario = scenario
        if destination is None:
            scenario.require_single()  # a bus: name the destination to serve
            destination = scenario.bus.destinations[0].name
        names = [d.name for d in scenario.bus.destinations]
        if destination not in names:
            raise ValueError(f"no destination named {destination!r} (destinations: {names})")
        index = names.index(destination)
        served = scenario.bus.destinations[index]
        self.destination = served
        self.endpoint = served.endpoint
        self.model = EndpointModel(self.endpoint)
        self.hang_s = served.timeout if hang_s is None else hang_s
        self.oauth = oauth
        self.log = log if log is not None else RequestLog()
        self.access_log = access_log  # an nginx "timed combined" log, for `sim fit endpoint`
        self.n_tokens_issued = 0
        self.t0 = 0.0
        self.base_url = ""
        source = "endpoint" if index == 0 else f"{index}-endpoint"
        self._rng = generator(scenario.seed if seed is None else seed, replication, source)
        self._servers = ServerQueue()
        self._tokens: dict[str, float] = {}  # token -> expiry instant (time.monotonic)
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None

    @property
    def records(self) -> list[RequestRecord]:
        """The requests received so far, in arrival order."""
        return self.log.records

    def now(self) -> float:
        """Seconds since time zero."""
        return time.monotonic() - self.t0

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, t0: float | None = None
    ) -> str:
        """Listen on host:port (0 = any free port) and return the base URL, e.g. `http://127.0.0.1:8080`.

        `t0` is a `time.monotonic()` instant (the clock of asyncio's `loop.time()`) taken as
        time zero for incidents and the log; by default, the moment the server is listening.
        """
        for regime in self.model.regimes:  # load SciPy's quantile functions (~0.3 s) before the
            service_quantile(regime.latency, np.array([0.5]))  # first request, not during it
        app = web.Application()
        if self.oauth is not None:
            app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=False,  # an abandoned request keeps its place (S9a)
            shutdown_timeout=self._shutdown_timeout_s,
        )
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
        self._runner = runner
        self.t0 = time.monotonic() if t0 is None else t0
        bound_host, bound_port = runner.addresses[0][:2]
        self.base_url = f"http://{_url_host(bound_host)}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; requests still being served are dropped after the shutdown timeout."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EndpointServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def revoke_tokens(self) -> None:
        """Revoke every issued token: protected paths answer 401 until a new token is fetched."""
        self._tokens.clear()

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires_at = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires_at is not None and time.monotonic() < expires_at

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        t = arrived - self.t0
        segment = int(self.model.segment(max(t, 0.0)))
        record = _record(request, t, segment, self._incidents(max(t, 0.0)))
        self.log.open(record)
        try:
            if self.oauth is not None and not self._authorized(request):
                record.unauthorized, record.status = True, 401
                record.body_bytes = await _drain(request)
                headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                return self._answer(request, record, web.Response(status=401, headers=headers))
            hold_s = self._decide(record, t)
            record.body_bytes = await _drain(request)
            await asyncio.sleep(max(0.0, arrived + record.queue_wait_s + hold_s - time.monotonic()))
            if record.hang:  # never answered: close the connection
                response = self._answer(request, record, web.Response())
                if request.transport is not None:
                    request.transport.close()
                return response
            headers = {}
            if record.retry_after_s is not None:
                headers["Retry-After"] = str(record.retry_after_s)
            assert record.status is not None
            return self._answer(
                request, record, web.Response(status=record.status, headers=headers)
            )
        finally:
            self.log.close_record(record)
            if self.access_log is not None:
                self._log_access(request, record)

    def _log_access(self, request: web.Request, record: RequestRecord) -> None:
        assert self.access_log is not None
        self.access_log.write(
            remote=request.remote,
            method=record.method,
            path=record.path,
            status=record.status,
            client_gone=record.client_gone,
            request_time_s=(record.completed_at or self.now()) - record.arrival_at,
            user_agent=record.headers.get("User-Agent", ""),
        )

    def _answer(
        self, request: web.Request, record: RequestRecord, response: web.Response
    ) -> web.Response:
        record.completed_at = self.now()
        record.client_gone = _gone(request)
        return response

    def _decide(self, record: RequestRecord, t: float) -> float:
        """Draw status, hang and service, apply capacity; fill the record; return seconds held."""
        u = self._rng.random(3)  # status, hang, latency
        status, service, hang = self.model.draw(np.array([max(t, 0.0)]), u[0:1], u[1:2], u[2:3])
        record.status, record.hang = int(status[0]), bool(hang[0])
        hold_s = self.hang_s if record.hang else float(service[0])
        capacity = self.model.regimes[record.regime or 0].capacity
        if capacity is not None:
            start = self._servers.admit(t, capacity, hold_s)
            if start is None:
                record.status, record.hang, record.overload = capacity.overload_status, False, True
                hold_s = 0.0
            else:
                record.queue_wait_s = start - t
        record.service_s = hold_s
        if record.hang:
            record.status = None
        else:
            at = np.array([max(t, 0.0)])
            retry_after = float(self.model.retry_after_s(np.array([record.status]), at)[0])
            record.retry_after_s = None if math.isnan(retry_after) else header_seconds(retry_after)
        return hold_s

    def _incidents(self, t: float) -> tuple[int, ...]:
        incidents = enumerate(self.endpoint.incidents)
        return tuple(i for i, incident in incidents if incident.start <= t < incident.end)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        t = time.monotonic() - self.t0
        record = _record(request, t, None, ())
        self.log.open(record)
        try:
            params: dict[str, str] = dict(request.query)
            body = await request.read()
            record.body_bytes = len(body)
            params.update(_form_or_json(body, request.content_type))
            client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
            basic = _basic(request)
            if basic is not None:
                client_id, secret = basic
            assert self.oauth is not None
            if not (
                hmac.compare_digest(client_id.encode(), self.oauth.client_id.encode())
                and hmac.compare_digest(secret.encode(), self.oauth.client_secret.encode())
            ):
                record.status = 401
                error = web.json_response({"error": "invalid_client"}, status=401)
                return self._answer(request, record, error)
            if params.get("grant_type") != "client_credentials":
                record.status = 400
                error = web.json_response({"error": "unsupported_grant_type"}, status=400)
                return self._answer(request, record, error)
            token = secrets.token_urlsafe(24)
            self._tokens[token] = time.monotonic() + self.oauth.token_lifetime_s
            self.n_tokens_issued += 1
            record.status = 200
            lifetime = math.ceil(self.oauth.token_lifetime_s)
            grant = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
            return self._answer(request, record, web.json_response(grant))
        finally:
            self.log.close_record(record)


def _record(
    request: web.Request, t: float, segment: int | None, incidents: tuple[int, ...]
) -> RequestRecord:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return RequestRecord(
        arrival_at=t,
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=headers,
        regime=segment,
        incidents=incidents,
    )


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _drain(request: web.Request) -> int:
    """Read and discard the body (of any size); return its length in bytes."""
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
    except Exception:  # a client that vanishes mid-body must not fail the request's handling
        pass
    return size


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _form_or_json(body: bytes, content_type: str) -> dict[str, str]:
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/json":
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(text))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(
    server: EndpointServer,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run,
) -> None:
    """Run the endpoint until SIGINT or SIGTERM, announcing its base URL once it listens.

    `run` runs the server's coroutine on an event loop (the CLI passes its uvloop runner).
    """

    async def main() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopped.set)
        url = await server.start(host, port)
        announce(url)
        try:
            await stopped.wait()
        finally:
            await server.stop()

    try:
        run(main())
    finally:
        server.log.close()
        if server.access_log is not None:
            server.access_log.close()


def describe(scenario: Scenario) -> str:
    """One line summarizing the endpoint being served (for the CLI banner)."""
    endpoint = scenario.endpoint
    line = f"{scenario.name}: responses {dict(endpoint.responses)}"
    if endpoint.capacity is not None:
        line += f", capacity {endpoint.capacity.concurrency} + queue {endpoint.capacity.queue}"
    if endpoint.incidents:
        line += f", {len(endpoint.incidents)} incident(s)"
    return line
