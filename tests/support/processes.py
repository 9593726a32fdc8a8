"""Helpers for tests that run `sim` as a process, misbehaving raw servers, fuzz settings, configs.

Everything listens on 127.0.0.1 only. `RawServer` is a bare asyncio socket server that hands
each connection to a handler and records the raw request bytes, so tests see exactly what went
over the wire and can misbehave in ways no HTTP framework would.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from hypothesis import HealthCheck, settings

from tests.support import ROOT

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ_SCALE = float(os.environ.get("SIM_FUZZ_SCALE", "1"))
"""Multiplies every fuzzer's example count (CI: 1; a thorough local run: e.g. 10)."""


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings for a fuzzer: bounded examples (scaled), no deadline."""
    return settings(
        max_examples=max(1, round(max_examples * FUZZ_SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- the command line ---------------------------------------------------------------------


def all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a nested document."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


def sim_process(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[Any]:
    """Start `python -m sim ARGS` as a real subprocess (stdin closed unless given)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, "-m", "sim", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        **kw,
    )


def run_sim(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run `python -m sim ARGS` to the end: (exit code, stdout, stderr)."""
    process = sim_process(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


def no_live_runs(monkeypatch: Any, why: str) -> Any:
    """A CliRunner for `sim validate` with any attempt at a new live run failing the test."""
    from typer.testing import CliRunner

    from sim.validation import pipeline

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(why)

    monkeypatch.setattr(pipeline, "run_live", never)
    return CliRunner()


def reusing_live(monkeypatch: Any, live: Any) -> Any:
    """A CliRunner for `sim validate` whose live run is `live` (a LiveRun made once per module)."""
    from typer.testing import CliRunner

    from sim.validation import pipeline

    def reuse(scenario: Any, **_: Any) -> Any:
        assert scenario == live.scenario
        return live

    monkeypatch.setattr(pipeline, "run_live", reuse)
    return CliRunner()


def one_error_line(result: Any) -> str:
    """A CLI result (typer's CliRunner) that exited 2 with exactly one `error: ` line and no
    traceback; returns that line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def assert_one_error_line(stderr: str, source: str | None, key: str | None = None) -> str:
    """stderr is exactly `error: SOURCE: [KEY: ]problem` on one line, with no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{stderr[:2000]}"
    line = lines[0]
    assert "Traceback" not in line
    prefix = "error: " + (f"{source}: " if source else "")
    assert line.startswith(prefix), line
    if key is not None:
        assert line.startswith(f"{prefix}{key}: "), line
    assert len(line) > len(prefix), line
    return line


# --- leak probes ----------------------------------------------------------------------------


def open_fds() -> set[str]:
    """Descriptions of this process's open file descriptors (sockets, files, pipes)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.add(f"{name}->{os.readlink(f'/proc/self/fd/{name}')}")
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# --- a raw socket server --------------------------------------------------------------------


class RawServer:
    """An asyncio socket server on 127.0.0.1 calling `handler(reader, writer, server)` per
    connection. `requests` holds the raw bytes each connection sent before the handler's
    `read_request`; connections and handler tasks are closed and cancelled on exit."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.bytes_written: list[int] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the test is over: closing, not a failure
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request (head and Content-Length body) and record it."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def reply(status_line: bytes, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    lines = [status_line]
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def unused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a core config ----------------------------------------------------------------------------

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:dlq"


def core_config_data(
    endpoint: str,
    *,
    rate: float | None = 100.0,
    retries: int = 1,
    path_values: list[str] | None = None,
    headers: dict[str, str] | None = None,
    sim: dict[str, Any] | None = None,
    connection: dict[str, Any] | None = None,
    source: str = "test",
) -> dict[str, Any]:
    """A one-rule, one-destination core config (API_KEY connection, DLQ) as plain data; its rule
    matches events of `source`."""
    http: dict[str, Any] = {}
    if path_values:
        http["PathParameterValues"] = path_values
    if headers:
        http["HeaderParameters"] = headers
    target = {
        "Id": "t1",
        "Arn": "dest",
        "RetryPolicy": {"MaximumRetryAttempts": retries},
        "DeadLetterConfig": {"Arn": DLQ_ARN},
        "HttpParameters": http,
    }
    settings = {
        "allow_private_endpoints": True,
        "backoff": {"base": "10ms", "multiplier": 2, "cap": "50ms", "jitter": "full"},
        "seed": 1,
    }
    settings.update(sim or {})
    return {
        "Connections": [
            connection
            or {
                "Name": "conn",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {
                    "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k-1"}
                },
            }
        ],
        "ApiDestinations": [
            {
                "Name": "dest",
                "ConnectionArn": (connection or {}).get("Name", "conn"),
                "InvocationEndpoint": endpoint,
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": rate,
            }
        ],
        "Rules": [{"Name": "rule", "EventPattern": {"source": [source]}, "Targets": [target]}],
        "sim": settings,
    }


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def event(n: int, **detail: Any) -> dict[str, Any]:
    """A test event matching `core_config_data`'s rule."""
    return {"source": "test", "detail-type": "t", "detail": {"n": n, **detail}}


class LoopThread:
    """An asyncio event loop running in a daemon thread, for servers the test process hosts
    while it drives subprocesses; `run(coro)` executes a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def run(self, coro: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]
