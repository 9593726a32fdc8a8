"""The PutEvents endpoint (issue 15): SigV4 with an unmodified boto3 client, the body limit,
and `sim core run --listen` as a real process.

The core runs on its own event loop in a thread with `sim.ingest_credentials` from the
config (the secret through `${env:NAME}`); boto3 sends PutEvents to it with the right key,
a wrong secret, an unknown key, no signature at all, a clock 6 minutes off, a body changed
after signing and a forged payload hash. Every refusal must carry AWS's error code and
status, and the SQLite database must hold none of the refused events. Oversized bodies go
over a raw socket; the CLI runs as a subprocess, with and without credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
import yaml
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from sim.errors import InputError
from sim.live.config.loading import build_config
from sim.live.config.resources import CoreConfig
from sim.live.delivery.core import DeliveryCore
from sim.live.ingest import Envelope
from sim.live.put_events import MAX_REQUEST_BYTES, PutEventsServer, is_loopback, listen_socket
from tests.support.processes import core_config_data

pytestmark = pytest.mark.live

KEY_ID, SECRET = "AKIDSIMTEST0000001", "s3cr3t/key+for-the-test"
OTHER_KEY_ID, OTHER_SECRET = "AKIDSIMTEST0000002", "another-secret"
REGION = "eu-west-1"
UNREACHABLE = "http://127.0.0.1:9/"  # the rule never matches: nothing is sent


def config(credentials: bool = True) -> CoreConfig:
    """A core with one rule (never matched by these events: nothing is sent anywhere)."""
    data = core_config_data(UNREACHABLE, source="nobody", sim={"region": REGION})
    if credentials:
        data["sim"]["ingest_credentials"] = [
            {"access_key_id": KEY_ID, "secret_access_key": "${env:SIM_TEST_INGEST_SECRET}"},
            {"access_key_id": OTHER_KEY_ID, "secret_access_key": OTHER_SECRET},
        ]
    return build_config(data, source="core.yaml", environ={"SIM_TEST_INGEST_SECRET": SECRET})


class LiveCore:
    """A DeliveryCore and its PutEvents endpoint on an event loop in a thread."""

    def __init__(self, core_config: CoreConfig, db: Path) -> None:
        self.config, self.db = core_config, db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveCore:
        self.thread.start()
        self.url = self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> str:
        self.core = DeliveryCore(self.config, self.db)
        await self.core.start()
        self.server = PutEventsServer(self.core, Envelope(region=REGION), "127.0.0.1", 0)
        await self.server.start()
        return self.server.url

    async def _stop(self) -> None:
        await self.server.stop()
        await self.core.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveCore]:
    with LiveCore(config(), tmp_path / "core.db") as running:
        yield running


def client(url: str, key: str = KEY_ID, secret: str = SECRET, **kw: Any) -> Any:
    return boto3.client(
        "events",
        endpoint_url=url,
        region_name=kw.pop("region", REGION),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, **kw),
    )


def entry(marker: str) -> dict[str, str]:
    return {"Source": "shop", "DetailType": "t", "Detail": json.dumps({"marker": marker})}


def stored_markers(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        bodies = [row[0] for row in connection.execute("SELECT body FROM events")]
    return [json.loads(body)["detail"]["marker"] for body in bodies]


def refused(call: Any) -> tuple[str, int, str, dict[str, str]]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    meta = response["ResponseMetadata"]
    return (
        response["Error"]["Code"],
        meta["HTTPStatusCode"],
        response["Error"]["Message"],
        meta["HTTPHeaders"],
    )


def test_the_configured_keys_are_accepted_and_the_events_persisted(live: LiveCore) -> None:
    first = client(live.url).put_events(Entries=[entry("right-1"), entry("right-2")])
    second = client(live.url, OTHER_KEY_ID, OTHER_SECRET).put_events(Entries=[entry("other")])
    assert first["FailedEntryCount"] == 0 and second["FailedEntryCount"] == 0
    assert sorted(stored_markers(live.db)) == ["other", "right-1", "right-2"]


def test_wrong_unknown_missing_and_skewed_signatures_are_refused_and_nothing_stored(
    live: LiveCore,
) -> None:
    good = client(live.url)
    wrong_secret = refused(
        lambda: client(live.url, KEY_ID, "not-the-secret").put_events(Entries=[entry("wrong")])
    )
    unknown_key = refused(
        lambda: client(live.url, "AKIDUNKNOWN", SECRET).put_events(Entries=[entry("unknown")])
    )
    unsigned = refused(
        lambda: client(live.url, signature_version=UNSIGNED).put_events(Entries=[entry("unsigned")])
    )
    other_region = refused(
        lambda: client(live.url, region="us-east-1").put_events(Entries=[entry("region")])
    )
    now = datetime.now(UTC)
    with mock.patch("botocore.auth.get_current_datetime", lambda: now - timedelta(minutes=6)):
        late = refused(lambda: good.put_events(Entries=[entry("late")]))
    with mock.patch("botocore.auth.get_current_datetime", lambda: now + timedelta(minutes=6)):
        early = refused(lambda: good.put_events(Entries=[entry("early")]))
    with mock.patch("botocore.auth.get_current_datetime", lambda: now - timedelta(minutes=4)):
        assert good.put_events(Entries=[entry("skew-4min")])["FailedEntryCount"] == 0

    assert wrong_secret[:2] == ("InvalidSignatureException", 400)
    assert "does not match the signature you provided" in wrong_secret[2]
    assert unknown_key[:3] == (
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    )
    assert unsigned[:3] == (
        "MissingAuthenticationTokenException",
        403,
        "Missing Authentication Token",
    )
    assert other_region[:2] == ("InvalidSignatureException", 400) and "region" in other_region[2]
    assert late[:2] == ("InvalidSignatureException", 400)
    assert late[2].startswith("Signature expired:") and "- 5 min.)" in late[2]
    assert early[:2] == ("InvalidSignatureException", 400)
    assert early[2].startswith("Signature not yet current:")
    for code, _, _, headers in (wrong_secret, unknown_key, unsigned, other_region, late, early):
        assert headers["x-amzn-errortype"] == code
        assert headers["content-type"] == "application/x-amz-json-1.1"
    assert stored_markers(live.db) == ["skew-4min"]  # none of the refused events
    assert SECRET not in " ".join(str(r) for r in (wrong_secret, unknown_key, late))


def test_a_body_changed_after_signing_is_refused(live: LiveCore) -> None:
    events = client(live.url)

    def tamper(request: Any, **_: Any) -> None:
        request.body = request.body.replace(b"original", b"tampered")

    events.meta.events.register_last("before-send.events.PutEvents", tamper)
    code, status, _, _ = refused(lambda: events.put_events(Entries=[entry("original")]))
    assert (code, status) == ("InvalidSignatureException", 400)
    assert stored_markers(live.db) == []


def test_a_signed_payload_hash_that_is_not_the_body_s_is_refused(live: LiveCore) -> None:
    """botocore signs a given X-Amz-Content-SHA256 instead of hashing the body; the
    endpoint must not trust it either."""
    events = client(live.url)

    def forge(request: Any, **_: Any) -> None:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"something else").hexdigest()

    events.meta.events.register("before-sign.events.PutEvents", forge)
    code, status, message, _ = refused(lambda: events.put_events(Entries=[entry("forged")]))
    assert (code, status) == (
        "InvalidSignatureException",
        400,
    ) and "x-amz-content-sha256" in message
    assert stored_markers(live.db) == []

    honest = client(live.url)

    def declare(request: Any, **_: Any) -> None:  # the real hash, signed: accepted
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(request.body).hexdigest()

    honest.meta.events.register("before-sign.events.PutEvents", declare)
    assert honest.put_events(Entries=[entry("declared")])["FailedEntryCount"] == 0
    assert stored_markers(live.db) == ["declared"]


def test_without_credentials_nothing_is_checked_and_only_loopback_is_served(tmp_path: Path) -> None:
    with LiveCore(config(credentials=False), tmp_path / "open.db") as running:
        response = client(running.url, "any", "thing").put_events(Entries=[entry("open")])
        assert response["FailedEntryCount"] == 0
        assert stored_markers(running.db) == ["open"]
    with pytest.raises(InputError) as caught:
        listen_socket("0.0.0.0", 0, authenticated=False)
    assert caught.value.key == "listen" and "not a loopback address" in caught.value.problem
    for address in ("127.0.0.1", "127.8.9.10", "::1", "localhost", "::ffff:127.0.0.1", "[::1]"):
        assert is_loopback(address), address
    for address in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.1", "example.com", ""):
        assert not is_loopback(address), address


def test_secret_access_keys_never_appear_in_errors_or_repr() -> None:
    core_config = config()
    assert SECRET not in repr(core_config) and OTHER_SECRET not in str(core_config)
    assert {SECRET, OTHER_SECRET} <= core_config.secrets
    bad = {"sim": {"ingest_credentials": [{"access_key_id": "A B", "secret_access_key": SECRET}]}}
    with pytest.raises(InputError) as caught:
        build_config(bad, source="core.yaml")
    assert caught.value.key == "sim.ingest_credentials.0.access_key_id"
    assert SECRET not in str(caught.value)
    twice = [{"access_key_id": "AK", "secret_access_key": s} for s in ("one-secret", "two-secret")]
    with pytest.raises(InputError, match="once") as caught:
        build_config({"sim": {"ingest_credentials": twice}}, source="core.yaml")
    assert "one-secret" not in str(caught.value) and "two-secret" not in str(caught.value)


def test_event_ids_are_uuids(live: LiveCore) -> None:
    response = client(live.url).put_events(Entries=[entry("id")])
    assert uuid.UUID(response["Entries"][0]["EventId"])


# --- the body limit and the command line --------------------------------------------------


ROOT = Path(__file__).resolve().parents[2]
HEAD = (
    "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AWSEvents.PutEvents\r\n"
    "Content-Type: application/x-amz-json-1.1\r\n"
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_a_body_whose_length_is_over_the_limit_is_refused_before_it_is_sent(
    tmp_path: Path,
) -> None:
    with LiveCore(config(), tmp_path / "core.db") as live:
        with socket.create_connection(("127.0.0.1", _port(live.url)), timeout=10) as conn:
            length = MAX_REQUEST_BYTES + 1
            conn.sendall(f"{HEAD}Content-Length: {length}\r\n\r\n".encode() + b'{"Entries"')
            answer = conn.recv(65536)  # a server waiting for the body would time out here
        assert _status(answer) == 413
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["__type"] == "RequestEntityTooLargeException"
        assert b"x-amzn-ErrorType: RequestEntityTooLargeException" in answer
        assert b"connection: close" in answer.split(b"\r\n\r\n", 1)[0].lower()


def test_a_request_refused_before_its_body_is_read_is_told_the_connection_closes(
    live: LiveCore,
) -> None:
    """The signature is checked on the headers first; the body is then left unread and the
    connection closed, which the answer must say, or a client keeping it alive (boto3 does)
    sends its next request into a closed socket. The body is held back here so that it is
    certainly unread when the answer goes out."""
    with socket.create_connection(("127.0.0.1", _port(live.url)), timeout=10) as conn:
        conn.sendall(f"{HEAD}Content-Length: 40\r\n\r\n".encode())  # no Authorization
        answer = conn.recv(65536)
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert _status(answer) == 403
        assert b"connection: close" in head
        try:
            conn.sendall(b"x" * 40)
            after = conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):  # closed with bytes unread: a reset
            after = b""
        assert after == b""  # closed, as announced


def test_an_endless_chunked_body_is_cut_off_once_it_passes_the_limit(tmp_path: Path) -> None:
    """No Content-Length: the endpoint stops reading at the limit; a server reading the whole
    body would take every byte sent (64 MiB here) without answering."""
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    with LiveCore(config(credentials=False), tmp_path / "core.db") as live:
        conn = socket.create_connection(("127.0.0.1", _port(live.url)), timeout=10)
        conn.sendall(f"{HEAD}Transfer-Encoding: chunked\r\n\r\n".encode())
        conn.setblocking(False)
        sent, answer, ended = 0, b"", False
        deadline = time.monotonic() + 30
        while sent < 64 * MAX_REQUEST_BYTES and time.monotonic() < deadline and not ended:
            readable, writable, _ = select.select([conn], [conn], [], 1)
            try:
                if readable:
                    data = conn.recv(65536)
                    answer += data
                    ended = not data or b"\r\n\r\n" in answer
                elif writable:
                    sent += conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                ended = True
        conn.close()
        assert ended, f"the endpoint kept reading: {sent:,} bytes sent"
        if answer:  # the answer may be lost to the reset that closing an unread socket sends
            assert _status(answer) == 413
        assert sent < 64 * MAX_REQUEST_BYTES


def _write_config(path: Path, credentials: bool) -> Path:
    data = core_config_data(UNREACHABLE, source="nobody")
    if credentials:
        data["sim"]["ingest_credentials"] = [
            {"access_key_id": "AKIDCLI", "secret_access_key": "${env:SIM_TEST_PUT_EVENTS_SECRET}"}
        ]
    path.write_text(yaml.safe_dump(data))
    return path


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sim", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if line.startswith("listening for PutEvents on "):
            return process, line.split()[-1], seen
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no URL announced: {seen}")


def _client(url: str, secret: str) -> Any:
    return boto3.client(
        "events", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDCLI",
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


@pytest.mark.slow
def test_core_run_listen_with_credentials_accepts_only_signed_requests(tmp_path: Path) -> None:
    secret = "cli-secret-value"
    config_path = _write_config(tmp_path / "core.yaml", credentials=True)
    db = tmp_path / "core.db"
    args = ["core", "run", str(config_path), "--db", str(db), "--listen", "127.0.0.1:0", "-v"]
    process, url, _ = _start(args, {"SIM_TEST_PUT_EVENTS_SECRET": secret})
    try:
        entry = {"Source": "shop", "DetailType": "t", "Detail": '{"m": "signed"}'}
        assert _client(url, secret).put_events(Entries=[entry])["FailedEntryCount"] == 0
        wrong = {**entry, "Detail": '{"m": "wrong"}'}
        with pytest.raises(ClientError) as caught:
            _client(url, "not-it").put_events(Entries=[wrong])
        assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "not authenticated" not in err and secret not in err
    assert "refused: InvalidSignatureException" in err  # -v logs the refusal, not the key
    with sqlite3.connect(db) as connection:
        bodies = [json.loads(row[0]) for row in connection.execute("SELECT body FROM events")]
    assert [body["detail"]["m"] for body in bodies] == ["signed"]


@pytest.mark.slow
def test_core_run_listen_without_credentials_says_so_and_stays_on_loopback(
    tmp_path: Path,
) -> None:
    config_path = _write_config(tmp_path / "core.yaml", credentials=False)
    db = tmp_path / "core.db"
    process, url, announced = _start(
        ["core", "run", str(config_path), "--db", str(db), "--listen", "127.0.0.1:0"], {}
    )
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert url.startswith("http://127.0.0.1:")
    assert "not authenticated" in announced and "loopback only" in announced
    other = tmp_path / "other.db"
    refused = subprocess.run(
        [sys.executable, "-m", "sim", "core", "run", str(config_path), "--db", str(other),
         "--listen", "0.0.0.0:0"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --listen: 0.0.0.0:0 is not a loopback")
    assert not other.exists() and "Traceback" not in refused.stderr
