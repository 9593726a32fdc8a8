"""Shared by the live-core tests: loopback endpoints that record what they receive, core configs,
events, and running a core until idle.

`RecordingEndpoint` is an aiohttp.web app; `ThreadedEndpoint` is the standard library's
`http.server` in a thread (a server this project did not write). Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from aiohttp import web

from sim.live.config.loading import CoreConfig, build_config
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import Store
from sim.records import to_frame
from tests.support.builders import ListSink

TIMEOUT_S = 0.3
FAST_BACKOFF = {"base": 0.01, "multiplier": 2, "cap": 0.02, "jitter": "none"}


@dataclass
class Seen:
    """One request as the endpoint received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes
    at: float
    raw_path: str = ""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Respond = Callable[[Seen], web.StreamResponse | Awaitable[web.StreamResponse]]


@dataclass
class RecordingEndpoint:
    """An aiohttp.web server on 127.0.0.1 that records every request and answers via `respond`."""

    respond: Respond = field(default=lambda seen: web.Response(status=200))
    requests: list[Seen] = field(default_factory=list)
    url: str = ""

    async def __aenter__(self) -> RecordingEndpoint:
        async def handle(request: web.Request) -> web.StreamResponse:
            seen = Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
                await request.read(),
                time.monotonic(),
                request.raw_path,
            )
            self.requests.append(seen)
            answer = self.respond(seen)
            return await answer if asyncio.iscoroutine(answer) else answer  # type: ignore[return-value]

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def core_config(
    url: str,
    *,
    rate: float | None = 100.0,
    retries: int = 2,
    max_age: float = 86400,
    dlq: bool = True,
    auth: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    sim: dict[str, Any] | None = None,
    method: str = "POST",
    rules: list[dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> CoreConfig:
    """A one-destination config pointed at `url`, with a short timeout and fast backoff."""
    target_data: dict[str, Any] = {
        "Id": "t1",
        "Arn": "dest",
        "RetryPolicy": {"MaximumRetryAttempts": retries, "MaximumEventAgeInSeconds": max_age},
    }
    if dlq:
        target_data["DeadLetterConfig"] = {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"}
    target_data.update(target or {})
    settings = {"allow_private_endpoints": True, "timeout": TIMEOUT_S, "backoff": FAST_BACKOFF}
    settings.update(sim or {})
    data = {
        "Connections": [
            {
                "Name": "conn",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {
                    "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k-123"}
                },
            }
            if auth is None
            else {"Name": "conn", **auth}
        ],
        "ApiDestinations": [
            {
                "Name": "dest",
                "ConnectionArn": "conn",
                "InvocationEndpoint": url,
                "HttpMethod": method,
                "InvocationRateLimitPerSecond": rate,
            }
        ],
        "Rules": rules
        or [{"Name": "rule", "EventPattern": {"source": ["test"]}, "Targets": [target_data]}],
        "sim": settings,
    }
    return build_config(data, source="test-config", environ=environ or {})


def event(n: int, **detail: Any) -> dict[str, Any]:
    return {"source": "test", "detail-type": "t", "detail": {"n": n, **detail}}


@dataclass
class Outcome:
    records: pd.DataFrame
    dlq: list[dict[str, Any]]
    counts: dict[str, int]
    chunks: list[dict[str, np.ndarray]]


async def deliver(
    config: CoreConfig, db: Path, events: list[dict[str, Any]], *, limit_s: float = 10.0
) -> Outcome:
    """Run a core until idle on the given events; return its records, DLQ and counts."""
    sink = ListSink()
    core = DeliveryCore(config, db, sink)
    await core.start()
    try:
        if events:
            await core.submit(events)
        await asyncio.wait_for(core.wait_idle(), limit_s)
    finally:
        await core.stop()
    store = Store(db)
    try:
        result = Outcome(
            to_frame(sink.chunks).sort_values(["event_id", "attempt"], ignore_index=True),
            list(store.dead_letters()),
            store.counts(),
            sink.chunks,
        )
    finally:
        store.close()
    return result


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class ThreadedEndpoint:
    """`http.server` on 127.0.0.1: answers 400 when detail.n is a multiple of `fail_every`."""

    def __init__(self, delay_s: float = 0.0, fail_every: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(delay_s)
                n = body["detail"]["n"]
                status = 400 if fail_every and n % fail_every == 0 else 200
                with lock:
                    outer.received.append(
                        {"n": n, "status": status, "ua": self.headers["User-Agent"]}
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadedEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_config(path: Path, url: str, *, rate: float = 200, password: str = "pw") -> Path:
    data = {
        "Connections": [
            {
                "Name": "conn",
                "AuthorizationType": "BASIC",
                "AuthParameters": {"BasicAuthParameters": {"Username": "u", "Password": password}},
            }
        ],
        "ApiDestinations": [
            {
                "Name": "dest",
                "ConnectionArn": "conn",
                "InvocationEndpoint": url,
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": rate,
            }
        ],
        "Rules": [
            {
                "Name": "rule",
                "EventPattern": {"source": ["test"]},
                "Targets": [
                    {
                        "Id": "t1",
                        "Arn": "dest",
                        "RetryPolicy": {"MaximumRetryAttempts": 2},
                        "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
                    }
                ],
            }
        ],
        "sim": {
            "allow_private_endpoints": True,
            "timeout": 0.5,
            "burst_capacity": 1,
            "backoff": {"base": 0.01, "cap": 0.02},
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


def write_events(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"source": "test", "detail-type": "t", "detail": {"n": i}}) for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
