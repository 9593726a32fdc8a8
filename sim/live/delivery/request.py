"""Pure HTTP request building for one delivery: URL, headers and body per S10-S12.

No I/O here. `build_request` merges a target's HttpParameters with its connection's
InvocationHttpParameters (the connection's values win), fills the endpoint's `*` path
wildcards, resolves JSON-path values from the original event, drops the headers S10 removes
and adds the fixed ones. `with_auth` adds the connection's authorization headers at send
time. A value taken from the event that would put CR/LF or another control character into a
header or a path, or make a path segment `.` or `..`, raises `InvalidParameter` — the event is
dead-lettered with `INVALID_PARAMETER`, never sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from sim.live.config.resources import ApiDestination, ConnectionHttpParameters, TargetHttpParameters
from sim.live.eventbridge.checks import has_control_characters
from sim.live.eventbridge.transform import MISSING, InvalidInputConfig, resolve_path

USER_AGENT = "Amazon/EventBridge/ApiDestinations"
RANGE = "bytes=0-1048575"
ACCEPT_ENCODING = "gzip,deflate"
"""Sent on every request, as AWS does; a target's own Accept-Encoding is dropped (S10)."""
DEFAULT_CONTENT_TYPE = "application/json; charset=utf-8"
BODYLESS_METHODS = frozenset({"GET", "HEAD"})
REMOVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "A-IM", "Accept-Charset", "Accept-Datetime", "Accept-Encoding", "Cache-Control",
        "Connection", "Content-Encoding", "Content-Length", "Content-MD5", "Date", "Expect",
        "Forwarded", "From", "Host", "HTTP2-Settings", "If-Match", "If-Modified-Since",
        "If-None-Match", "If-Range", "If-Unmodified-Since", "Max-Forwards", "Origin", "Pragma",
        "Proxy-Authorization", "Range", "Referer", "TE", "Trailer", "Transfer-Encoding",
        "User-Agent", "Upgrade", "Via", "Warning",
    )
)  # fmt: skip
"""User-supplied headers S10 drops (lower case)."""


class InvalidParameter(ValueError):
    """An event-derived parameter that cannot be sent (DLQ error code `INVALID_PARAMETER`)."""

    error_code = "INVALID_PARAMETER"


@dataclass(frozen=True)
class HttpRequest:
    """One request ready to send: method, full URL (encoded), ordered headers and body bytes."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive), or None."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def with_auth(self, auth_headers: Mapping[str, str]) -> HttpRequest:
        """This request with the connection's authorization headers set (they replace others)."""
        if not auth_headers:
            return self
        names = {k.lower() for k in auth_headers}
        kept = [(k, v) for k, v in self.headers if k.lower() not in names]
        added = [(k, v) for k, v in auth_headers.items() if k.lower() not in REMOVED_HEADERS]
        return replace(self, headers=tuple(added + kept))


def is_json_path(value: str) -> bool:
    """True for a parameter value that is a JSON path into the event (`$.detail.id`)."""
    return value == "$" or value.startswith(("$.", "$["))


def parameter_value(value: str, event: Mapping[str, Any]) -> str | None:
    """A parameter's text: literal, or read from the event by JSON path (None if absent)."""
    if not is_json_path(value):
        return value
    try:
        found = resolve_path(event, value)
    except InvalidInputConfig:
        raise InvalidParameter(f"{value!r} is not a supported JSON path") from None
    if found is MISSING:
        return None
    if isinstance(found, str):
        return found
    return json.dumps(found, separators=(",", ":"), ensure_ascii=False)


def build_request(
    destination: ApiDestination,
    connection: ConnectionHttpParameters,
    target: TargetHttpParameters,
    event: Mapping[str, Any],
    body: str,
) -> HttpRequest:
    """The request for one delivery, without the authorization headers (see `with_auth`)."""
    method = destination.HttpMethod
    url = _url(destination.InvocationEndpoint, connection, target, event)
    headers = _headers(connection, target, event)
    payload = b""
    if method not in BODYLESS_METHODS:
        payload = _body(body, connection).encode("utf-8")
    fixed: list[tuple[str, str]] = [("Host", _host(url))]
    if not any(k.lower() == "content-type" for k, _ in headers):
        fixed.append(("Content-Type", DEFAULT_CONTENT_TYPE))
    fixed += [
        ("User-Agent", USER_AGENT),
        ("Range", RANGE),
        ("Accept-Encoding", ACCEPT_ENCODING),
        ("Connection", "close"),
    ]
    if method not in BODYLESS_METHODS:
        fixed.append(("Content-Length", str(len(payload))))
    return HttpRequest(method, url, tuple(headers + fixed), payload)


def _url(
    endpoint: str,
    connection: ConnectionHttpParameters,
    target: TargetHttpParameters,
    event: Mapping[str, Any],
) -> str:
    """Endpoint with `*` wildcards filled in order (S12) and the merged query string appended."""
    parts = urlsplit(endpoint)
    path = parts.path
    for value in target.PathParameterValues:
        text = parameter_value(value, event)
        if text is None:
            raise InvalidParameter(f"path parameter {value} matched nothing in the event")
        if is_json_path(value) and (has_control_characters(text) or text in (".", "..")):
            raise InvalidParameter(
                f"path parameter {value}: the value from the event contains control "
                "characters or is a dot segment"
            )
        path = path.replace("*", quote(text, safe=""), 1)
    query: dict[str, str] = {}
    for name, value in target.QueryStringParameters.items():
        text = parameter_value(value, event)
        if text is not None:
            query[name] = text
    for param in connection.QueryStringParameters:  # the connection's values win (S11)
        query[param.Key] = param.Value.get_secret_value()
    extra = urlencode(query, quote_via=quote)
    full_query = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, full_query, ""))


def _headers(
    connection: ConnectionHttpParameters, target: TargetHttpParameters, event: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Target headers overridden by connection headers (case-insensitive), minus S10's list."""
    merged: dict[str, tuple[str, str]] = {}
    for name, value in target.HeaderParameters.items():
        text = parameter_value(value, event)
        if text is None:
            continue
        if has_control_characters(text):
            raise InvalidParameter(f"header {name}: the value from the event contains CR/LF")
        merged[name.lower()] = (name, text)
    for param in connection.HeaderParameters:
        merged[param.Key.lower()] = (param.Key, param.Value.get_secret_value())
    return [pair for lower, pair in merged.items() if lower not in REMOVED_HEADERS]


def _body(body: str, connection: ConnectionHttpParameters) -> str:
    """The body, with the connection's BodyParameters added when it is a JSON object."""
    if not connection.BodyParameters:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    for param in connection.BodyParameters:
        data[param.Key] = param.Value.get_secret_value()
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1]
