"""Secrets never leak (design §5, §9): plant known credentials, grep every artifact for them.

One config holds all four kinds of secret — an API key, a BASIC password, an OAuth client
secret (each through `${env:NAME}`) and the OAuth access tokens the token endpoints issue —
plus a secret header and query parameter. `sim core run -v` (a real subprocess) delivers
events to a hostile endpoint that echoes every credential back in its status reason and body,
and to the local endpoint (`EndpointServer` with OAuth, request log on disk). Then stdout and
stderr, the `-v` log, the attempt records, `sim core dlq`, the SQLite files and the endpoint's
request log are searched for each secret, raw and base64-encoded as sent. The endpoints must
really have received them, so the search is not vacuous.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sim.endpoint.server import EndpointServer, OAuthSettings, RequestLog
from sim.scenario.loading import build_scenario
from tests.support.processes import LoopThread, assert_one_error_line, run_sim, write_yaml

pytestmark = pytest.mark.live

API_KEY = "apikey-Zq81-" + secrets.token_hex(4)
PASSWORD = "passw0rd-Kx4-" + secrets.token_hex(4)
CLIENT_SECRET = "clientsecret-Wv2-" + secrets.token_hex(4)
HEADER_SECRET = "hdrsecret-Jn7-" + secrets.token_hex(4)
HOSTILE_TOKEN = "token-Pm5-" + secrets.token_hex(8)
ENV = {
    "SIM_T_API_KEY": API_KEY,
    "SIM_T_PASSWORD": PASSWORD,
    "SIM_T_CLIENT_SECRET": CLIENT_SECRET,
    "SIM_T_HEADER_SECRET": HEADER_SECRET,
}


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class Hostile:
    """An endpoint that issues OAuth tokens and echoes the credentials of every request back:
    in the status reason (which becomes ERROR_MESSAGE) and in the body. Answers by detail.n:
    0 -> 200, 1 -> 503 (retried), 2 -> 400, 3 -> 401."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        expected = "Basic " + _basic("client", CLIENT_SECRET)
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": HOSTILE_TOKEN, "expires_in": 3600})

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        echo = " ".join(f"{k}={v}" for k, v in request.headers.items()) + f" {request.query_string}"
        self.seen.append({**request.headers, "query": request.query_string})
        status = {0: 200, 1: 503, 2: 400, 3: 401}[body["detail"]["n"] % 4]
        reason = f"Echo {echo}"[:4000].replace("\r", " ").replace("\n", " ")
        return web.Response(status=status, reason=reason, text=echo)


def _config(hostile: str, local: str) -> dict[str, Any]:
    secret_params = {
        "HeaderParameters": [{"Key": "x-extra", "Value": "${env:SIM_T_HEADER_SECRET}"}],
        "QueryStringParameters": [{"Key": "sig", "Value": "${env:SIM_T_HEADER_SECRET}"}],
    }

    def oauth(name: str, url: str) -> dict[str, Any]:
        return {
            "Name": name,
            "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
            "AuthParameters": {
                "OAuthParameters": {
                    "AuthorizationEndpoint": url,
                    "HttpMethod": "POST",
                    "ClientParameters": {
                        "ClientID": "client",
                        "ClientSecret": "${env:SIM_T_CLIENT_SECRET}",
                    },
                }
            },
        }

    connections = [
        {
            "Name": "key",
            "AuthorizationType": "API_KEY",
            "AuthParameters": {
                "ApiKeyAuthParameters": {
                    "ApiKeyName": "x-api-key",
                    "ApiKeyValue": "${env:SIM_T_API_KEY}",
                },
                "InvocationHttpParameters": secret_params,
            },
        },
        {
            "Name": "basic",
            "AuthorizationType": "BASIC",
            "AuthParameters": {
                "BasicAuthParameters": {"Username": "user", "Password": "${env:SIM_T_PASSWORD}"}
            },
        },
        oauth("oauth-hostile", f"{hostile}/token"),
        oauth("oauth-local", f"{local}/oauth/token"),
    ]
    destinations = [
        {"Name": name, "ConnectionArn": name, "InvocationEndpoint": f"{url}/hook/{name}",
         "HttpMethod": "POST", "InvocationRateLimitPerSecond": 100}
        for name, url in (("key", hostile), ("basic", hostile), ("oauth-hostile", hostile),
                          ("oauth-local", local))
    ]  # fmt: skip
    targets = [
        {"Id": name, "Arn": name, "RetryPolicy": {"MaximumRetryAttempts": 1},
         **({"DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"}}
            if name != "basic" else {})}  # basic: failures are dropped, and logged with -v
        for name in ("key", "basic", "oauth-hostile", "oauth-local")
    ]  # fmt: skip
    return {
        "Connections": connections,
        "ApiDestinations": destinations,
        "Rules": [{"Name": "all", "EventPattern": {"source": ["test"]}, "Targets": targets}],
        "sim": {
            "allow_private_endpoints": True,
            "timeout": "2s",
            "backoff": {"base": "10ms", "cap": "20ms"},
            "seed": 1,
        },
    }


def _local_endpoint(log: Path) -> EndpointServer:
    scenario = build_scenario(
        {
            "name": "secrets",
            "horizon": "1h",
            "arrivals": [{"kind": "constant", "rate_per_second": 1}],
            "endpoint": {
                "latency": {"kind": "constant", "value": "1ms"},
                "responses": {200: 0.5, 503: 0.25, 400: 0.25},
            },
        },
        source="secrets",
    )
    oauth = OAuthSettings("client", CLIENT_SECRET, 3600.0)
    return EndpointServer(scenario, seed=3, oauth=oauth, log=RequestLog(log))


def test_planted_secrets_appear_in_no_artifact(tmp_path: Path) -> None:
    hostile, local = Hostile(), _local_endpoint(tmp_path / "endpoint-requests.jsonl")
    db, records = tmp_path / "core.db", tmp_path / "attempts.csv"
    events = tmp_path / "events.jsonl"
    lines = [
        json.dumps({"source": "test", "detail-type": "t", "detail": {"n": n}}) for n in range(8)
    ]
    events.write_text("\n".join(lines) + "\n")
    with LoopThread() as thread:
        thread.run(hostile.start())
        local_url = thread.run(local.start("127.0.0.1", 0))
        try:
            config = write_yaml(tmp_path / "core.yaml", _config(hostile.url, local_url))
            run = ["core", "run", str(config), "--db", str(db), "--events", str(events)]
            code, out, err = run_sim(*run, "--until-idle", "--records", str(records), "-v", env=ENV)
            dlq_code, dlq_out, dlq_err = run_sim("core", "dlq", "--db", str(db))
            local_tokens = set(local._tokens)
        finally:
            thread.run(hostile.stop())
            thread.run(local.stop())
            local.log.close()

    assert code == 0, err
    assert dlq_code == 0 and dlq_out.count("\n") >= 6, dlq_err  # failures really dead-lettered
    assert "dropped" in err  # the -v log has content to search

    # The secrets were really sent, so not finding them below means something.
    sent = json.dumps(hostile.seen)
    for value in (API_KEY, HEADER_SECRET, _basic("user", PASSWORD), HOSTILE_TOKEN):
        assert value in sent, value
    assert local.n_tokens_issued >= 1 and local_tokens
    local_requests = [r for r in local.records if r.path.startswith("/hook")]
    assert local_requests and all(
        r.headers["Authorization"].removeprefix("Bearer ") in local_tokens for r in local_requests
    )

    planted = {
        "api key": API_KEY,
        "password": PASSWORD,
        "basic credentials": _basic("user", PASSWORD),
        "client secret": CLIENT_SECRET,
        "client credentials": _basic("client", CLIENT_SECRET),
        "secret header/query value": HEADER_SECRET,
        "hostile oauth token": HOSTILE_TOKEN,
        **{f"local oauth token {i}": token for i, token in enumerate(sorted(local_tokens))},
    }
    database = b"".join(p.read_bytes() for p in tmp_path.glob("core.db*"))
    artifacts = {
        "stdout": out.encode(),
        "stderr and -v log": err.encode(),
        "attempt records": records.read_bytes(),
        "sim core dlq": (dlq_out + dlq_err).encode(),
        "SQLite files": database,
        "endpoint request log": (tmp_path / "endpoint-requests.jsonl").read_bytes(),
    }
    leaks = [
        f"{what} in {where}"
        for what, secret in planted.items()
        for where, data in artifacts.items()
        if secret.encode() in data
    ]
    assert not leaks, leaks
    assert b"HTTP 503" in artifacts["sim core dlq"] or b"HTTP 400" in artifacts["sim core dlq"]


def test_a_missing_environment_variable_is_one_clear_line_without_other_secrets(
    tmp_path: Path,
) -> None:
    config = write_yaml(tmp_path / "core.yaml", _config("http://127.0.0.1:9", "http://127.0.0.1:9"))
    env = {k: v for k, v in ENV.items() if k != "SIM_T_PASSWORD"}
    code, out, err = run_sim("core", "run", str(config), "--db", str(tmp_path / "db"), env=env)
    assert code == 2 and out == ""
    line = assert_one_error_line(
        err, str(config), "Connections.1.AuthParameters.BasicAuthParameters.Password"
    )
    assert line.endswith("environment variable SIM_T_PASSWORD is not set")
    assert not any(secret in err for secret in ENV.values())
    assert not (tmp_path / "db").exists()
