"""The deviations a black-box test of `sim core run` found (issue 15), checked the same way: the
real command as a subprocess, a server this project did not write (`http.server` in a thread),
the SQLite database, the records CSV and stderr.

Accept-Encoding and gzip/deflate bodies, control characters in credentials, TARGET_ARN with
its UUID, empty CSV status for timeouts and connection failures, AWS key order of events,
`-v` logging of DLQ writes, and DEAUTHORIZED kept across restarts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml
from botocore.config import Config

from sim.live.delivery.request import HttpRequest
from sim.live.delivery.transport import MAX_BODY_BYTES, Transport, decode_body
from sim.live.ingest import EVENT_KEYS

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


class Seen:
    def __init__(self, path: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.path, self.headers, self.body = path, headers, body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


Answer = Callable[[Seen], tuple[int, str, dict[str, str], bytes]]


class Endpoint:
    """`http.server` on 127.0.0.1 in a thread: records requests, answers with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.path, list(self.headers.items()), self.rfile.read(length))
                outer.seen.append(seen)
                status, reason, headers, body = answer(seen)
                if status == 0:  # hang past the client timeout, then close
                    threading.Event().wait(2)
                    return
                self.send_response(status, reason or None)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _any  # noqa: N815 (http.server's naming)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[Callable[[Answer], Endpoint]]:
    started: list[Endpoint] = []

    def start(answer: Answer) -> Endpoint:
        started.append(Endpoint(answer))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.close()


def ok(seen: Seen) -> tuple[int, str, dict[str, str], bytes]:
    return 200, "", {}, b""


def write_config(
    path: Path,
    destinations: dict[str, str],
    *,
    auth: dict[str, Any] | None = None,
    retries: int = 0,
    timeout: float = 0.5,
) -> Path:
    """One connection, one destination per name (all behind one catch-all rule), a DLQ."""
    connection = auth or {
        "AuthorizationType": "API_KEY",
        "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k"}},
    }
    data = {
        "Connections": [{"Name": "conn", **connection}],
        "ApiDestinations": [
            {"Name": name, "ConnectionArn": "conn", "InvocationEndpoint": url, "HttpMethod": "POST"}
            for name, url in destinations.items()
        ],
        "Rules": [
            {
                "Name": "rule",
                "EventPattern": {"source": ["test"]},
                "Targets": [
                    {
                        "Id": name,
                        "Arn": name,
                        "RetryPolicy": {"MaximumRetryAttempts": retries},
                        "DeadLetterConfig": {"Arn": DLQ},
                    }
                    for name in destinations
                ],
            }
        ],
        "sim": {"allow_private_endpoints": True, "timeout": timeout, "backoff": {"base": 0.01}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def write_events(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def sim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def deliver(
    tmp_path: Path, config: Path, events: list[dict[str, Any]], *more: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """`sim core run CONFIG --db tmp/core.db --events FILE --until-idle MORE`."""
    events_file = write_events(tmp_path / f"events-{uuid.uuid4().hex[:6]}.jsonl", events)
    db = str(tmp_path / "core.db")
    return sim(
        "core",
        "run",
        str(config),
        "--db",
        db,
        "--events",
        str(events_file),
        "--until-idle",
        *more,
        **kw,
    )


def dlq(db: Path) -> list[dict[str, Any]]:
    result = sim("core", "dlq", "--db", str(db))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def event(n: int) -> dict[str, Any]:
    return {"source": "test", "detail-type": "t", "detail": {"n": n}}


# --- Accept-Encoding and encoded bodies -----------------------------------------------------


def _encode(coding: str, data: bytes) -> tuple[str, bytes]:
    if coding == "gzip":
        return "gzip", gzip.compress(data)
    if coding == "deflate-zlib":
        return "deflate", zlib.compress(data)
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # raw deflate, as some servers send
    return "deflate", compressor.compress(data) + compressor.flush()


@pytest.mark.slow
@pytest.mark.parametrize("coding", ["gzip", "deflate-zlib", "deflate-raw"])
def test_an_encoded_oauth_token_response_is_decoded_and_every_request_asks_for_gzip_deflate(
    tmp_path: Path, endpoints: Callable[[Answer], Endpoint], coding: str
) -> None:
    """The token endpoint compresses its JSON when asked to; the core must decode it to use
    the token, and every request (token and deliveries) carries Accept-Encoding."""

    def token(seen: Seen) -> tuple[int, str, dict[str, str], bytes]:
        body = json.dumps({"access_token": "tok-1", "expires_in": 3600}).encode()
        if "gzip" in (seen.header("Accept-Encoding") or ""):
            name, body = _encode(coding, body)
            return 200, "", {"Content-Type": "application/json", "Content-Encoding": name}, body
        return 200, "", {"Content-Type": "application/json"}, body

    def hook(seen: Seen) -> tuple[int, str, dict[str, str], bytes]:
        return (200 if seen.header("Authorization") == "Bearer tok-1" else 401), "", {}, b""

    tokens, hooks = endpoints(token), endpoints(hook)
    auth = {
        "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
        "AuthParameters": {
            "OAuthParameters": {
                "AuthorizationEndpoint": tokens.url + "/token",
                "HttpMethod": "POST",
                "ClientParameters": {"ClientID": "id", "ClientSecret": "secret"},
            }
        },
    }
    config = write_config(tmp_path / "core.yaml", {"dest": hooks.url + "/hook"}, auth=auth)
    result = deliver(tmp_path, config, [event(1), event(2)])
    assert result.returncode == 0, result.stderr
    assert "2 delivered" in result.stderr
    for seen in tokens.seen + hooks.seen:
        assert seen.header("Accept-Encoding") == "gzip,deflate"
    assert len(tokens.seen) == 1 and len(hooks.seen) == 2


def test_decoding_is_bounded_and_the_read_limit_counts_wire_bytes() -> None:
    bomb = gzip.compress(b"\0" * (64 * MAX_BODY_BYTES))  # 64 MiB from about 64 KiB
    assert len(bomb) < MAX_BODY_BYTES and len(decode_body(bomb, "gzip")) == MAX_BODY_BYTES
    assert decode_body(b"not gzip", "gzip") == b"not gzip"  # left as it came
    assert decode_body(b"abc", "br") == b"abc"  # a coding it does not know
    assert decode_body(zlib.compress(gzip.compress(b"x")), "gzip, deflate") == b"x"

    noise = os.urandom(3 * MAX_BODY_BYTES)  # incompressible: the wire holds 3 MiB
    wire = gzip.compress(noise)
    seen_bytes: list[int] = []

    async def serve() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(wire)}\r\n\r\n"
            )
            writer.write(head.encode() + wire)
            try:
                await writer.drain()
            except ConnectionError:
                pass
            seen_bytes.append(len(wire))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        request = HttpRequest("GET", f"http://127.0.0.1:{port}/", (("Host", "x"),), b"")
        response = await Transport(5.0, allow_private=True).send(request)
        server.close()
        assert response.status == 200
        return response.body

    body = asyncio.run(serve())
    expected = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(wire[:MAX_BODY_BYTES])
    assert body == expected[:MAX_BODY_BYTES]  # what the first 1 MiB on the wire decodes to
    assert len(body) < MAX_BODY_BYTES and noise.startswith(body)


# --- control characters, TARGET_ARN, CSV status, key order ------------------------------------


@pytest.mark.parametrize(
    ("kind", "block", "key"),
    [
        (
            "API_KEY",
            {"ApiKeyName": "x-api-key", "ApiKeyValue": "V"},
            "ApiKeyAuthParameters.ApiKeyValue",
        ),
        ("BASIC", {"Username": "u", "Password": "V"}, "BasicAuthParameters.Password"),
        ("BASIC", {"Username": "V", "Password": "p"}, "BasicAuthParameters.Username"),
        (
            "OAUTH_CLIENT_CREDENTIALS",
            {
                "AuthorizationEndpoint": "https://auth.example.com/token",
                "HttpMethod": "POST",
                "ClientParameters": {"ClientID": "id", "ClientSecret": "V"},
            },
            "OAuthParameters.ClientParameters.ClientSecret",
        ),
    ],
)
def test_every_credential_with_a_control_character_is_refused_at_load(
    kind: str, block: dict[str, Any], key: str
) -> None:
    from sim.errors import InputError
    from sim.live.config.loading import build_config

    names = {"API_KEY": "ApiKeyAuthParameters", "BASIC": "BasicAuthParameters"}
    secret = "s3cret\x1bvalue"
    filled = json.loads(json.dumps(block).replace('"V"', json.dumps(secret)))
    auth = {names.get(kind, "OAuthParameters"): filled}
    data = {"Connections": [{"Name": "c", "AuthorizationType": kind, "AuthParameters": auth}]}
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml")
    assert caught.value.key == f"Connections.0.AuthParameters.{key}"
    assert "s3cret" not in str(caught.value) and "control characters" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value", "via_env"), [("key\x07value", True), ("key\r\nX-Evil: 1", True), ("key\x01", False)]
)
def test_a_control_character_in_an_api_key_is_exit_2_at_load(
    tmp_path: Path, value: str, via_env: bool
) -> None:
    auth = {
        "AuthorizationType": "API_KEY",
        "AuthParameters": {
            "ApiKeyAuthParameters": {
                "ApiKeyName": "x-api-key",
                "ApiKeyValue": "${env:SIM_TEST_API_KEY}" if via_env else value,
            }
        },
    }
    config = write_config(tmp_path / "core.yaml", {"dest": "http://127.0.0.1:9/"}, auth=auth)
    result = deliver(tmp_path, config, [event(1)], env={"SIM_TEST_API_KEY": value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    key = "Connections.0.AuthParameters.ApiKeyAuthParameters.ApiKeyValue"
    assert len(lines) == 1 and f"{config}: {key}: " in lines[0] and "control characters" in lines[0]
    assert "key" not in lines[0].split(key)[1] and "Traceback" not in result.stderr
    assert not (tmp_path / "core.db").exists()


@pytest.mark.slow
def test_dlq_records_name_the_destination_arn_with_a_stable_uuid_and_logs_say_so(
    tmp_path: Path, endpoints: Callable[[Answer], Endpoint]
) -> None:
    secret = "the-api-key-123"

    def refuse(seen: Seen) -> tuple[int, str, dict[str, str], bytes]:  # echoes the key
        return 400, f"Bad key {seen.header('x-api-key')}", {}, f"key={secret}".encode()

    hook = endpoints(refuse)
    auth = {
        "AuthorizationType": "API_KEY",
        "AuthParameters": {
            "ApiKeyAuthParameters": {
                "ApiKeyName": "x-api-key",
                "ApiKeyValue": "${env:SIM_TEST_KEY}",
            }
        },
    }
    arns = []
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        config = write_config(
            folder / "core.yaml", {"hook": hook.url, "other-hook": hook.url}, auth=auth
        )
        result = deliver(folder, config, [event(1)], "-v", env={"SIM_TEST_KEY": secret})
        assert result.returncode == 0, result.stderr
        assert secret not in result.stderr
        logged = [line for line in result.stderr.splitlines() if "dead-lettered to" in line]
        assert len(logged) == 2 and all(
            DLQ in line and "ERROR_FROM_TARGET" in line for line in logged
        )
        assert all(
            "HTTP 400 Bad key ***" in line and "NonRetryableError" in line for line in logged
        )
        arns.append({r["attributes"]["TARGET_ARN"] for r in dlq(folder / "core.db")})
    assert arns[0] == arns[1] and len(arns[0]) == 2  # the same in every run, one per name
    prefix = "arn:aws:events:us-east-1:123456789012:api-destination/"
    for arn in arns[0]:
        name, identifier = arn.removeprefix(prefix).split("/")
        assert arn.startswith(prefix) and name in ("hook", "other-hook")
        assert uuid.UUID(identifier) == uuid.uuid5(uuid.NAMESPACE_URL, prefix + name)


@pytest.mark.slow
def test_records_leave_status_empty_for_timeouts_and_connection_failures(
    tmp_path: Path, endpoints: Callable[[Answer], Endpoint]
) -> None:
    hang = endpoints(lambda seen: (0, "", {}, b""))
    config = write_config(
        tmp_path / "core.yaml", {"slow": hang.url, "closed": "http://127.0.0.1:9/"}, timeout=0.3
    )
    records = tmp_path / "attempts.csv"
    result = deliver(tmp_path, config, [event(1)], "--records", str(records))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(records)
    assert sorted(frame["outcome"]) == ["connection_error", "timeout"]
    assert frame["status"].isna().all()  # design §6: HTTP status or null
    assert sorted(r["attributes"]["ERROR_CODE"] for r in dlq(tmp_path / "core.db")) == [
        "CONNECTION_FAILURE",
        "TIMEOUT",
    ]


def _keys(body: bytes) -> list[str]:
    return [key for key, _ in json.loads(body, object_pairs_hook=lambda pairs: pairs)]


@pytest.mark.slow
def test_events_reach_the_endpoint_with_their_keys_in_aws_order(
    tmp_path: Path, endpoints: Callable[[Answer], Endpoint]
) -> None:
    hook = endpoints(ok)
    config = write_config(tmp_path / "core.yaml", {"dest": hook.url})
    line = {"zzz": 1, "detail": {"n": 1}, "detail-type": "t", "source": "test", "id": "given"}
    result = deliver(tmp_path, config, [line])
    assert result.returncode == 0, result.stderr
    assert _keys(hook.seen[0].body) == [*EVENT_KEYS, "zzz"]

    process = subprocess.Popen(
        [sys.executable, "-m", "sim", "core", "run", str(config), "--db", str(tmp_path / "put.db"),
         "--listen", "127.0.0.1:0"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    url = next(ln.split()[-1] for ln in process.stderr if ln.startswith("listening for PutEvents"))
    events = boto3.client(
        "events", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip
    events.put_events(Entries=[{"Source": "test", "DetailType": "t", "Detail": '{"n": 2}'}])
    deadline = time.monotonic() + 20
    while len(hook.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.terminate()
    process.communicate(timeout=30)
    assert _keys(hook.seen[1].body) == list(EVENT_KEYS)


# --- DEAUTHORIZED across restarts -------------------------------------------------------------


@pytest.mark.slow
def test_deauthorized_survives_a_restart_until_the_credentials_change(
    tmp_path: Path, endpoints: Callable[[Answer], Endpoint]
) -> None:
    accepted = {"new-key"}
    hook = endpoints(
        lambda seen: (200 if seen.header("x-api-key") in accepted else 401, "", {}, b"")
    )
    auth = {
        "AuthorizationType": "API_KEY",
        "AuthParameters": {
            "ApiKeyAuthParameters": {
                "ApiKeyName": "x-api-key",
                "ApiKeyValue": "${env:SIM_TEST_KEY}",
            }
        },
    }
    config = write_config(tmp_path / "core.yaml", {"dest": hook.url}, auth=auth)
    db = tmp_path / "core.db"

    first = deliver(tmp_path, config, [event(1)], env={"SIM_TEST_KEY": "old-key"})
    assert first.returncode == 0 and "connection conn is now DEAUTHORIZED" in first.stderr
    assert len(hook.seen) == 1

    second = deliver(tmp_path, config, [event(2)], env={"SIM_TEST_KEY": "old-key"})
    assert second.returncode == 0, second.stderr
    assert "connection conn is DEAUTHORIZED since" in second.stderr
    assert len(hook.seen) == 1  # nothing sent through a deauthorized connection
    codes = [r["attributes"]["ERROR_CODE"] for r in dlq(db)]
    assert codes == ["ERROR_FROM_TARGET", "CONNECTION_DEAUTHORIZED"]

    third = deliver(tmp_path, config, [event(3)], env={"SIM_TEST_KEY": "new-key"})
    assert third.returncode == 0 and "its credentials changed" in third.stderr
    assert len(hook.seen) == 2 and hook.seen[1].header("x-api-key") == "new-key"
    assert "1 delivered" in third.stderr

    for path in tmp_path.glob("core.db*"):  # the credentials are stored only as a hash
        raw = path.read_bytes()
        assert b"old-key" not in raw and b"new-key" not in raw
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, credentials_hash FROM deauthorized_connections")
        assert list(rows) == []  # re-authorized: the state is gone
    assert re.search(r"DEAUTHORIZED since \d{4}-\d\d-\d\dT", second.stderr)
