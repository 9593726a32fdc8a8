"""Connection authorization over loopback HTTP (S11): BASIC, API_KEY, OAuth client credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sim.live.config.loading import CoreConfig
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.store import Store
from sim.records import to_frame
from tests.support.live import ListSink, RecordingEndpoint, Seen, core_config, event, run

pytestmark = pytest.mark.live

CLIENT_SECRET = "client-secret-0451"
PASSWORD = "pa55-w0rd-9187"
API_KEY = "api-key-7731"


async def one_by_one(config: CoreConfig, db: Path, n: int) -> tuple[ListSink, list[dict[str, Any]]]:
    """Deliver n events one after another (each ends before the next is submitted)."""
    sink = ListSink()
    core = DeliveryCore(config, db, sink)
    await core.start()
    try:
        for i in range(n):
            await core.submit([event(i)])
            await asyncio.wait_for(core.wait_idle(), 10)
    finally:
        await core.stop()
    store = Store(db)
    try:
        return sink, list(store.dead_letters())
    finally:
        store.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BASIC = {
    "AuthorizationType": "BASIC",
    "AuthParameters": {"BasicAuthParameters": {"Username": "user", "Password": PASSWORD}},
}
API_KEY_AUTH = {
    "AuthorizationType": "API_KEY",
    "AuthParameters": {
        "ApiKeyAuthParameters": {"ApiKeyName": "X-Partner-Key", "ApiKeyValue": API_KEY}
    },
}


@pytest.mark.parametrize(
    ("auth", "header", "value", "status"),
    [
        (BASIC, "Authorization", _basic("user", PASSWORD), 401),
        (API_KEY_AUTH, "X-Partner-Key", API_KEY, 407),
    ],
    ids=["basic-401", "api-key-407"],
)
def test_static_auth_is_sent_and_401_or_407_deauthorizes_the_connection(
    tmp_path: Path, auth: dict[str, Any], header: str, value: str, status: int
) -> None:
    def respond(seen: Seen) -> web.Response:
        return web.Response(status=200 if seen.json["detail"]["n"] == 0 else status)

    async def scenario() -> tuple[ListSink, list[dict[str, Any]], RecordingEndpoint]:
        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url, auth=auth)
            sink, dlq = await one_by_one(config, tmp_path / "db", 3)
        return sink, dlq, endpoint

    sink, dlq, endpoint = run(scenario())
    assert [seen.headers[header] for seen in endpoint.requests] == [value, value]
    assert [seen.json["detail"]["n"] for seen in endpoint.requests] == [0, 1]  # 2 never sent
    assert [record["event"]["detail"]["n"] for record in dlq] == [1, 2]
    assert dlq[0]["attributes"]["ERROR_CODE"] == "ERROR_FROM_TARGET"
    assert dlq[1]["attributes"]["ERROR_CODE"] == "CONNECTION_DEAUTHORIZED"
    rows = to_frame(sink.chunks)
    assert list(rows["outcome"]) == ["delivered", "failed", "not_sent"]
    assert rows["dispatch_at"].isna().tolist() == [False, False, True]


class OAuthServer:
    """Token endpoint (`/token`) and API (`/hook`) answering per the test's rules."""

    def __init__(self, expires_in: float | None = 3600, token_status: int = 200) -> None:
        self.expires_in = expires_in
        self.token_status = token_status
        self.token_requests: list[dict[str, Any]] = []
        self.rejected_tokens: set[str] = set()

    def respond(self, seen: Seen) -> web.Response:
        if seen.path == "/token":
            self.token_requests.append(
                {"method": seen.method, "headers": seen.headers, "query": seen.query,
                 "body": seen.body.decode()}
            )  # fmt: skip
            if self.token_status != 200:
                return web.Response(status=self.token_status)
            token: dict[str, Any] = {"access_token": f"tok-{len(self.token_requests)}"}
            if self.expires_in is not None:
                token["expires_in"] = self.expires_in
            return web.json_response(token)
        bearer = seen.headers.get("Authorization", "")
        return web.Response(
            status=401 if bearer.removeprefix("Bearer ") in self.rejected_tokens else 200
        )


def _oauth(url: str) -> dict[str, Any]:
    return {
        "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
        "AuthParameters": {
            "OAuthParameters": {
                "AuthorizationEndpoint": f"{url}/token",
                "HttpMethod": "POST",
                "ClientParameters": {"ClientID": "client-1", "ClientSecret": CLIENT_SECRET},
                "OAuthHttpParameters": {
                    "HeaderParameters": [{"Key": "X-Extra", "Value": "e", "IsValueSecret": False}],
                    "QueryStringParameters": [{"Key": "audience", "Value": "api"}],
                    "BodyParameters": [{"Key": "scope", "Value": "events:write"}],
                },
            }
        },
    }


def _oauth_run(tmp_path: Path, server: OAuthServer, n: int, **options: Any) -> Any:
    async def scenario() -> tuple[ListSink, list[dict[str, Any]], RecordingEndpoint]:
        async with RecordingEndpoint(server.respond) as endpoint:
            config = core_config(endpoint.url + "/hook", auth=_oauth(endpoint.url), **options)
            sink, dlq = await one_by_one(config, tmp_path / "db", n)
        return sink, dlq, endpoint

    return run(scenario())


def test_oauth_token_is_fetched_with_client_credentials_and_cached(tmp_path: Path) -> None:
    server = OAuthServer(expires_in=3600)
    _, dlq, endpoint = _oauth_run(tmp_path, server, 3)
    assert dlq == []
    (fetch,) = server.token_requests
    assert fetch["method"] == "POST"
    assert fetch["headers"]["Authorization"] == _basic("client-1", CLIENT_SECRET)
    assert fetch["headers"]["X-Extra"] == "e"
    assert fetch["query"] == {"audience": "api"}
    assert fetch["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert fetch["body"] == "scope=events%3Awrite&grant_type=client_credentials"
    hooks = [seen for seen in endpoint.requests if seen.path == "/hook"]
    assert [seen.headers["Authorization"] for seen in hooks] == ["Bearer tok-1"] * 3


def test_oauth_token_expiring_within_60_s_is_refreshed_before_use(tmp_path: Path) -> None:
    server = OAuthServer(expires_in=59)
    _, dlq, endpoint = _oauth_run(tmp_path, server, 3)
    assert dlq == []
    assert len(server.token_requests) == 3
    hooks = [seen.headers["Authorization"] for seen in endpoint.requests if seen.path == "/hook"]
    assert hooks == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]


def test_oauth_token_is_refreshed_after_a_401_and_the_retry_succeeds(tmp_path: Path) -> None:
    server = OAuthServer()
    server.rejected_tokens.add("tok-1")
    sink, dlq, endpoint = _oauth_run(
        tmp_path, server, 1, sim={"retry_statuses": [401, 409, 429, "5xx"]}
    )
    assert dlq == []
    hooks = [seen.headers["Authorization"] for seen in endpoint.requests if seen.path == "/hook"]
    assert hooks == ["Bearer tok-1", "Bearer tok-2"]
    rows = to_frame(sink.chunks)
    assert list(rows["status"]) == [401, 200]
    assert list(rows["final"].astype(object).fillna("-")) == ["-", "delivered"]


def test_oauth_401_without_retry_still_refreshes_for_the_next_event(tmp_path: Path) -> None:
    server = OAuthServer()
    server.rejected_tokens.add("tok-1")
    _, dlq, _ = _oauth_run(tmp_path, server, 2)
    assert [record["event"]["detail"]["n"] for record in dlq] == [0]  # 401 is not retryable
    assert len(server.token_requests) == 2  # not deauthorized: the token was refreshed


def test_failed_oauth_refresh_deauthorizes_the_connection(tmp_path: Path) -> None:
    server = OAuthServer(token_status=500)
    sink, dlq, endpoint = _oauth_run(tmp_path, server, 2)
    assert [seen.path for seen in endpoint.requests] == ["/token"]  # no retry of the fetch
    assert [record["attributes"]["ERROR_CODE"] for record in dlq] == ["CONNECTION_DEAUTHORIZED"] * 2
    assert "DEAUTHORIZED" in dlq[0]["attributes"]["ERROR_MESSAGE"]
    assert list(to_frame(sink.chunks)["outcome"]) == ["not_sent", "not_sent"]


def test_secrets_never_reach_logs_records_or_the_dlq(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_header = "hdr-secret-5521"
    auth = {
        "AuthorizationType": "BASIC",
        "AuthParameters": {
            "BasicAuthParameters": {"Username": "u", "Password": "${env:SIM_TEST_PASSWORD}"},
            "InvocationHttpParameters": {
                "HeaderParameters": [{"Key": "X-Secret", "Value": secret_header}],
                "QueryStringParameters": [{"Key": "token", "Value": secret_header}],
            },
        },
    }

    def respond(seen: Seen) -> web.Response:  # echoes the credentials back, like a bad server
        echo = f"{seen.headers.get('Authorization')} {seen.query}"
        return web.Response(status=401, reason=f"Unauthorized {echo}", text=echo)

    async def scenario() -> tuple[ListSink, list[dict[str, Any]], RecordingEndpoint]:
        async with RecordingEndpoint(respond) as endpoint:
            config = core_config(endpoint.url, auth=auth, environ={"SIM_TEST_PASSWORD": PASSWORD})
            assert PASSWORD not in repr(config) and secret_header not in repr(config)
            sink, dlq = await one_by_one(config, tmp_path / "db", 2)
        return sink, dlq, endpoint

    with caplog.at_level(logging.DEBUG):
        sink, dlq, endpoint = run(scenario())
    assert endpoint.requests[0].query == {"token": secret_header}  # it really was sent
    encoded = _basic("u", PASSWORD).split()[1]
    database = b"".join(path.read_bytes() for path in tmp_path.glob("db*"))  # db, -wal, -shm
    stored = database + json.dumps(dlq).encode()
    for secret in (PASSWORD, secret_header, encoded):
        assert secret not in caplog.text
        assert secret.encode() not in stored
        assert secret not in to_frame(sink.chunks).to_csv()
