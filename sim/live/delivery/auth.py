"""Connection authorization (S11): BASIC, API_KEY and OAuth client credentials, with state.

Each connection gets one `ConnectionAuth` for the life of the core. `headers()` gives the
authorization headers for the next request; `rejected()` is told about a 401/407 response.
BASIC and API_KEY connections become `DEAUTHORIZED` on 401/407. An OAuth connection caches
its token, fetches a new one when the cached one expires within 60 s or was rejected, and
becomes `DEAUTHORIZED` when a fetch fails. A deauthorized connection raises `Deauthorized`
instead of giving headers; `on_deauthorize` is told (the core persists the state, so a
restart keeps it), and `restore` puts a connection back in the state a previous run left it
in. Credentials never appear in messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from sim.live.config.resources import Connection, ConnectionHttpParameters
from sim.live.delivery.request import ACCEPT_ENCODING, HttpRequest
from sim.live.delivery.transport import Response

AUTHORIZED = "AUTHORIZED"
DEAUTHORIZED = "DEAUTHORIZED"
REFRESH_MARGIN_S = 60.0
RECENT_TOKENS = 16
"""Tokens an OAuth connection keeps scrubbing from messages after dropping them (a 401
answer may echo the token that was just rejected)."""
UNAUTHORIZED_STATUSES = (401, 407)

Send = Callable[[HttpRequest], Awaitable[Response]]
Clock = Callable[[], float]


class Deauthorized(Exception):
    """The connection is deauthorized; requests through it are not sent."""

    error_code = "CONNECTION_DEAUTHORIZED"


class ConnectionAuth:
    """Authorization state of one connection; subclasses say how headers are made."""

    def __init__(self, connection: Connection) -> None:
        self.name = connection.Name
        self.state = AUTHORIZED
        self.reason = ""
        self.on_deauthorize: Callable[[str, str], None] | None = None
        """Called with (connection name, reason) when the connection becomes DEAUTHORIZED."""

    async def headers(self) -> dict[str, str]:
        """Authorization headers for the next request; raises Deauthorized."""
        self._check()
        return self._static_headers()

    def rejected(self, status: int, used: Mapping[str, str]) -> None:
        """A request sent with headers `used` got `status`; 401/407 deauthorizes."""
        if status in UNAUTHORIZED_STATUSES:
            self.deauthorize(f"the endpoint answered {status}")

    def secrets(self) -> set[str]:
        """Credentials this connection sends right now (for scrubbing messages)."""
        return set()

    def deauthorize(self, reason: str) -> None:
        """Move to DEAUTHORIZED (it stays there until the connection's credentials change)."""
        if self.state == DEAUTHORIZED:
            return
        self.state, self.reason = DEAUTHORIZED, reason
        if self.on_deauthorize is not None:
            self.on_deauthorize(self.name, reason)

    def restore(self, reason: str) -> None:
        """DEAUTHORIZED as a previous run left it (nobody is told: it is already stored)."""
        self.state, self.reason = DEAUTHORIZED, reason

    def _check(self) -> None:
        if self.state == DEAUTHORIZED:
            raise Deauthorized(f"connection {self.name} is DEAUTHORIZED: {self.reason}")

    def _static_headers(self) -> dict[str, str]:
        raise NotImplementedError


class BasicAuth(ConnectionAuth):
    """`Authorization: Basic base64(user:password)`."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        params = connection.AuthParameters.BasicAuthParameters
        assert params is not None
        self._value = basic_credentials(params.Username, params.Password.get_secret_value())

    def _static_headers(self) -> dict[str, str]:
        return {"Authorization": self._value}

    def secrets(self) -> set[str]:
        return {self._value, self._value.removeprefix("Basic ")}


class ApiKeyAuth(ConnectionAuth):
    """Header `ApiKeyName: ApiKeyValue`."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        params = connection.AuthParameters.ApiKeyAuthParameters
        assert params is not None
        self._header = {params.ApiKeyName: params.ApiKeyValue.get_secret_value()}

    def _static_headers(self) -> dict[str, str]:
        return dict(self._header)

    def secrets(self) -> set[str]:
        return set(self._header.values())


class OAuthClientCredentials(ConnectionAuth):
    """OAuth 2 client-credentials grant against `AuthorizationEndpoint`; Bearer token cached.

    The token request carries the client ID and secret as HTTP Basic credentials and the
    connection's OAuthHttpParameters (headers, query string, form-encoded body), with
    `grant_type=client_credentials` unless the parameters set a grant type.
    """

    def __init__(self, connection: Connection, send: Send, clock: Clock) -> None:
        super().__init__(connection)
        params = connection.AuthParameters.OAuthParameters
        assert params is not None
        self._params = params
        self._send = send
        self._clock = clock
        self._token: str | None = None
        self._recent_tokens: deque[str] = deque(maxlen=RECENT_TOKENS)  # still scrubbed when dropped
        self._expires_at = math.inf
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            self._check()
            if self._token is None or self._expires_at - self._clock() <= REFRESH_MARGIN_S:
                await self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def secrets(self) -> set[str]:
        client = self._params.ClientParameters
        basic = basic_credentials(client.ClientID, client.ClientSecret.get_secret_value())
        return {basic, basic.removeprefix("Basic ")} | set(self._recent_tokens)

    def rejected(self, status: int, used: Mapping[str, str]) -> None:
        """Drop the cached token if the rejected request used it; the next request refreshes."""
        if status in UNAUTHORIZED_STATUSES and used.get("Authorization") == f"Bearer {self._token}":
            self._token = None

    async def _fetch(self) -> None:
        self.fetches += 1
        self._token = None
        response = await self._send(self.token_request())
        token, expires_in = _parse_token(response)
        if token is None:
            problem = response.message if not 200 <= response.status < 300 else "no access_token"
            self.deauthorize(f"the OAuth token request failed ({problem})")
            self._check()
        self._token = token
        if token is not None:
            self._recent_tokens.append(token)
        self._expires_at = self._clock() + expires_in if expires_in is not None else math.inf

    def token_request(self) -> HttpRequest:
        """The token request this connection sends to its authorization endpoint."""
        params = self._params
        extra: ConnectionHttpParameters = params.OAuthHttpParameters
        query = [(p.Key, p.Value.get_secret_value()) for p in extra.QueryStringParameters]
        form = [(p.Key, p.Value.get_secret_value()) for p in extra.BodyParameters]
        if not any(key == "grant_type" for key, _ in query + form):
            form.append(("grant_type", "client_credentials"))
        method = params.HttpMethod
        if method == "GET":
            query, form = query + form, []
        parts = urlsplit(params.AuthorizationEndpoint)
        full_query = "&".join(q for q in (parts.query, urlencode(query, quote_via=quote)) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, full_query, ""))
        client = params.ClientParameters
        secret = client.ClientSecret.get_secret_value()
        headers = [(p.Key, p.Value.get_secret_value()) for p in extra.HeaderParameters]
        headers += [
            ("Authorization", basic_credentials(client.ClientID, secret)),
            ("Accept", "application/json"),
            ("Accept-Encoding", ACCEPT_ENCODING),
        ]
        body = b""
        if method != "GET":
            body = urlencode(form, quote_via=quote).encode("ascii")
            headers += [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", str(len(body))),
            ]
        return HttpRequest(method, url, tuple(headers), body)


def _parse_token(response: Response) -> tuple[str | None, float | None]:
    """(access_token, expires_in seconds) from a token response, (None, None) if unusable."""
    if not 200 <= response.status < 300:
        return None, None
    try:
        data = json.loads(response.body)
    except ValueError:
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        return None, None
    token = data["access_token"]
    if not token or any(c in token for c in "\r\n"):
        return None, None
    expires_in = data.get("expires_in")
    try:
        seconds = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        seconds = None
    return token, seconds


def credentials_of(connection: Connection) -> bytes:
    """The connection's authorization settings with their secrets revealed, as canonical JSON
    (what the store hashes to notice when an operator changes the credentials)."""
    settings = {
        "AuthorizationType": connection.AuthorizationType,
        "AuthParameters": connection.AuthParameters.model_dump(),
    }
    return json.dumps(settings, sort_keys=True, default=_reveal).encode("utf-8")


def _reveal(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(type(value).__name__)


def basic_credentials(user: str, password: str) -> str:
    """The value of an `Authorization: Basic ...` header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def auth_for(connection: Connection, send: Send, clock: Clock) -> ConnectionAuth:
    """The authorization object for a connection's AuthorizationType."""
    if connection.AuthorizationType == "BASIC":
        return BasicAuth(connection)
    if connection.AuthorizationType == "API_KEY":
        return ApiKeyAuth(connection)
    return OAuthClientCredentials(connection, send, clock)
