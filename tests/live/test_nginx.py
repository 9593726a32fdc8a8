"""`sim core run` against a real nginx (issue 15): a server the project did not write, in the
role of a partner's webhook and OAuth token endpoint.

nginx runs on a free loopback port with a generated config. Its access log records, for every
request, the Accept-Encoding, User-Agent, Range and Authorization it received, and whether
it gzip-compressed its answer. The token endpoint's JSON is gzipped (nginx does so because
the core asks for it), so a delivery authorized with the token proves the core decoded it.
The test is skipped only when no nginx binary is installed; CI installs one (`.ci/run`) and
sets SIM_REQUIRE_NGINX=1, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "nginx-issued-token"


def _nginx_binary() -> str | None:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None and os.environ.get("SIM_REQUIRE_NGINX") == "1":
        pytest.fail("SIM_REQUIRE_NGINX=1 but no nginx binary is installed")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(folder: Path, port: int) -> str:
    user = "user root;" if os.geteuid() == 0 else ""  # as root, workers would drop to nobody
    temp = " ".join(
        f"{kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
{user}
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
events {{ worker_connections 64; }}
http {{
    {temp}
    log_format probe escape=json '{{"uri":"$request_uri","accept_encoding":"$http_accept_encoding",'
        '"user_agent":"$http_user_agent","range":"$http_range",'
        '"authorization":"$http_authorization","status":"$status","gzip_ratio":"$gzip_ratio"}}';
    access_log {folder / "access.log"} probe;
    server {{
        listen 127.0.0.1:{port};
        location = /oauth/token {{
            default_type application/json;
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
            return 200 '{{"access_token":"{TOKEN}","expires_in":3600}}';
        }}
        location /orders {{
            if ($http_authorization != "Bearer {TOKEN}") {{ return 401; }}
            return 200 'ok';
        }}
        location /audit {{
            if ($http_x_api_key != "audit-key") {{ return 401; }}
            return 202;
        }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = _nginx_binary()
    if binary is None:
        pytest.skip("no nginx binary (apt-get install nginx); .ci/run installs it")
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = _free_port()
    conf = folder / "nginx.conf"
    conf.write_text(_config(folder, port))
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                error_log = (
                    (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
                )
                pytest.fail(
                    f"nginx did not start: {process.stderr.read() if process.stderr else ''} {error_log}"
                )
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", folder / "access.log"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: the access log is complete
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_nginx_sees_accept_encoding_on_every_request_and_the_core_reads_its_gzip(
    tmp_path: Path, nginx: tuple[str, Path]
) -> None:
    url, access_log = nginx
    config = {
        "Connections": [
            {
                "Name": "partner-oauth",
                "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
                "AuthParameters": {
                    "OAuthParameters": {
                        "AuthorizationEndpoint": f"{url}/oauth/token",
                        "HttpMethod": "POST",
                        "ClientParameters": {
                            "ClientID": "client",
                            "ClientSecret": "${env:SIM_TEST_CLIENT_SECRET}",
                        },
                    }
                },
            },
            {
                "Name": "audit-key",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {
                    "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "audit-key"}
                },
            },
        ],
        "ApiDestinations": [
            {
                "Name": "orders",
                "ConnectionArn": "partner-oauth",
                "InvocationEndpoint": f"{url}/orders/*",
                "HttpMethod": "POST",
            },
            {
                "Name": "audit",
                "ConnectionArn": "audit-key",
                "InvocationEndpoint": f"{url}/audit",
                "HttpMethod": "PUT",
            },
        ],
        "Rules": [
            {
                "Name": "orders",
                "EventPattern": {"source": ["shop"]},
                "Targets": [
                    {
                        "Id": "orders",
                        "Arn": "orders",
                        "HttpParameters": {
                            "PathParameterValues": ["$.detail.id"],
                            "HeaderParameters": {"Accept-Encoding": "br"},  # dropped (S10)
                        },
                    },
                    {"Id": "audit", "Arn": "audit"},
                ],
            }
        ],
        "sim": {"allow_private_endpoints": True},
    }
    config_file = tmp_path / "core.yaml"
    config_file.write_text(yaml.safe_dump(config))
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"source": "shop", "detail-type": "Order", "detail": {"id": f"o-{n}"}})
            + "\n"
            for n in range(20)
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "sim", "core", "run", str(config_file), "--db", str(tmp_path / "core.db"),
         "--events", str(events), "--until-idle"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SIM_TEST_CLIENT_SECRET": "client-secret"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "40 delivered, 0 dead-lettered" in result.stderr

    deadline = time.monotonic() + 10  # nginx writes its log as each request ends
    while len(access_log.read_text().splitlines()) < 41 and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = [json.loads(line) for line in access_log.read_text().splitlines()]
    tokens = [e for e in entries if e["uri"] == "/oauth/token"]
    orders = [e for e in entries if e["uri"].startswith("/orders/")]
    audits = [e for e in entries if e["uri"] == "/audit"]
    assert (len(tokens), len(orders), len(audits)) == (1, 20, 20)
    assert {e["accept_encoding"] for e in entries} == {"gzip,deflate"}
    assert {e["user_agent"] for e in orders + audits} == {"Amazon/EventBridge/ApiDestinations"}
    assert {e["range"] for e in orders + audits} == {"bytes=0-1048575"}
    assert tokens[0]["gzip_ratio"] not in ("", "-")  # nginx really sent the token gzipped
    assert {e["authorization"] for e in orders} == {f"Bearer {TOKEN}"}
    assert {e["status"] for e in orders} == {"200"} and {e["status"] for e in audits} == {"202"}
    assert sorted(e["uri"] for e in orders) == sorted(f"/orders/o-{n}" for n in range(20))
