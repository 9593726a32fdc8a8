"""Pure request building: S10 header rules, S12 parameters, connection values win, CR/LF refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sim.live.config.loading import CoreConfig, build_config
from sim.live.delivery.request import (
    DEFAULT_CONTENT_TYPE,
    RANGE,
    REMOVED_HEADERS,
    USER_AGENT,
    HttpRequest,
    InvalidParameter,
    build_request,
)
from tests.support.live import RecordingEndpoint, core_config, deliver, run

pytestmark = pytest.mark.live

EVENT = {
    "id": "e-1",
    "source": "shop",
    "detail-type": "OrderPlaced",
    "detail": {"order": "A/1 b", "qty": 3, "tags": ["x"], "status": "new"},
}


def _config(
    target_params: dict[str, Any] | None = None,
    connection_params: dict[str, Any] | None = None,
    endpoint: str = "https://hooks.example.com/orders/*/items",
    method: str = "POST",
    path_values: list[str] | None = None,
) -> CoreConfig:
    params = dict(target_params or {})
    params.setdefault("PathParameterValues", path_values if path_values is not None else ["o1"])
    return build_config(
        {
            "Connections": [
                {
                    "Name": "c",
                    "AuthorizationType": "API_KEY",
                    "AuthParameters": {
                        "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k"},
                        "InvocationHttpParameters": connection_params or {},
                    },
                }
            ],
            "ApiDestinations": [
                {
                    "Name": "d",
                    "ConnectionArn": "c",
                    "InvocationEndpoint": endpoint,
                    "HttpMethod": method,
                }
            ],
            "Rules": [
                {
                    "Name": "r",
                    "EventPattern": {"source": ["shop"]},
                    "Targets": [{"Id": "t", "Arn": "d", "HttpParameters": params}],
                }
            ],
        },
        source="test",
    )


def _build(config: CoreConfig, body: str = '{"a":1}', event: dict[str, Any] = EVENT) -> HttpRequest:
    destination = config.ApiDestinations[0]
    connection = config.Connections[0].AuthParameters.InvocationHttpParameters
    target = config.Rules[0].Targets[0].HttpParameters
    return build_request(destination, connection, target, event, body)


def _names(request: HttpRequest) -> list[str]:
    return [name.lower() for name, _ in request.headers]


def test_fixed_headers_are_added() -> None:
    request = _build(_config())
    assert request.header("User-Agent") == USER_AGENT == "Amazon/EventBridge/ApiDestinations"
    assert request.header("Range") == RANGE == "bytes=0-1048575"
    assert request.header("Content-Type") == DEFAULT_CONTENT_TYPE
    assert request.header("Connection") == "close"
    assert request.header("Content-Length") == "7"
    assert request.header("Host") == "hooks.example.com"
    assert request.body == b'{"a":1}'
    assert len(_names(request)) == len(set(_names(request)))


def test_user_headers_on_the_removal_list_are_dropped_and_fixed_ones_cannot_be_overridden() -> None:
    headers = {
        "User-Agent": "evil",
        "Range": "bytes=0-1",
        "Accept-Encoding": "gzip",
        "Host": "other.example.com",
        "Connection": "keep-alive",
        "X-Custom": "kept",
    }
    connection = {"HeaderParameters": [{"Key": "Via", "Value": "proxy"}]}
    request = _build(_config({"HeaderParameters": headers}, connection))
    assert request.header("User-Agent") == USER_AGENT
    assert request.header("Range") == RANGE
    assert request.header("Host") == "hooks.example.com"
    assert request.header("Connection") == "close"
    assert request.header("Accept-Encoding") == "gzip,deflate"  # AWS's own, not the target's
    assert request.header("Via") is None
    assert request.header("X-Custom") == "kept"
    assert _names(request).count("user-agent") == 1


def test_every_header_of_the_s10_list_is_removed() -> None:
    assert len(REMOVED_HEADERS) == 33
    names = [
        "A-IM", "Accept-Charset", "Accept-Datetime", "Cache-Control", "Content-Encoding",
        "Content-MD5", "Date", "Expect", "Forwarded", "From", "HTTP2-Settings", "If-Match",
        "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Max-Forwards",
        "Origin", "Pragma", "Proxy-Authorization", "Referer", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Warning",
    ]  # fmt: skip
    request = _build(_config({"HeaderParameters": {name: "v" for name in names}}))
    assert all(request.header(name) is None for name in names)


def test_content_type_parameter_replaces_the_default() -> None:
    request = _build(_config({"HeaderParameters": {"content-type": "text/plain"}}))
    assert request.header("Content-Type") == "text/plain"
    assert _names(request).count("content-type") == 1


def test_connection_parameters_win_over_target_parameters() -> None:
    target = {
        "HeaderParameters": {"X-Tenant": "from-target", "X-Only-Target": "t"},
        "QueryStringParameters": {"region": "from-target", "page": "1"},
    }
    connection = {
        "HeaderParameters": [{"Key": "x-tenant", "Value": "from-connection"}],
        "QueryStringParameters": [{"Key": "region", "Value": "eu", "IsValueSecret": False}],
    }
    request = _build(_config(target, connection))
    assert request.header("X-Tenant") == "from-connection"
    assert _names(request).count("x-tenant") == 1
    assert request.header("X-Only-Target") == "t"
    assert sorted(parse_qsl(urlsplit(request.url).query)) == [("page", "1"), ("region", "eu")]


def test_path_wildcards_are_filled_in_order_from_literals_and_json_paths() -> None:
    config = _config(
        endpoint="https://hooks.example.com/a/*/b/*?fixed=1",
        path_values=["$.detail.order", "lit"],
    )
    request = _build(config)
    assert request.url == "https://hooks.example.com/a/A%2F1%20b/b/lit?fixed=1"


def test_json_path_values_are_read_from_the_original_event() -> None:
    target = {
        "HeaderParameters": {"X-Qty": "$.detail.qty", "X-Missing": "$.detail.nope"},
        "QueryStringParameters": {"tags": "$.detail.tags", "src": "$.source"},
    }
    request = _build(_config(target))
    assert request.header("X-Qty") == "3"
    assert request.header("X-Missing") is None  # an absent header value leaves the header out
    assert "tags=%5B%22x%22%5D" in request.url and "src=shop" in request.url


def test_missing_path_parameter_is_an_invalid_parameter() -> None:
    config = _config(path_values=["$.detail.nope"])
    with pytest.raises(InvalidParameter):
        _build(config)


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "nul\x00"])
def test_event_values_with_cr_lf_in_headers_are_refused(value: str) -> None:
    event = {**EVENT, "detail": {**EVENT["detail"], "status": value}}
    config = _config({"HeaderParameters": {"X-Status": "$.detail.status"}})
    with pytest.raises(InvalidParameter) as caught:
        _build(config, event=event)
    assert caught.value.error_code == "INVALID_PARAMETER"


def test_event_values_with_cr_lf_in_query_or_path_are_encoded_not_refused() -> None:
    event = {**EVENT, "detail": {**EVENT["detail"], "status": "a\r\nb"}}
    config = _config({"QueryStringParameters": {"s": "$.detail.status"}}, path_values=["x"])
    request = _build(config, event=event)
    assert request.url.endswith("?s=a%0D%0Ab")


def test_bodyless_methods_send_no_body() -> None:
    request = _build(_config(method="GET"))
    assert request.body == b"" and request.header("Content-Length") is None


def test_connection_body_parameters_are_added_to_a_json_object_body() -> None:
    connection = {"BodyParameters": [{"Key": "tenant", "Value": "acme"}]}
    request = _build(_config(connection_params=connection), body='{"a":1,"tenant":"x"}')
    assert json.loads(request.body) == {"a": 1, "tenant": "acme"}
    assert request.header("Content-Length") == str(len(request.body))
    untouched = _build(_config(connection_params=connection), body='"a string"')
    assert untouched.body == b'"a string"'


def test_auth_headers_are_added_and_replace_user_supplied_ones() -> None:
    request = _build(_config({"HeaderParameters": {"Authorization": "mine"}}))
    authorized = request.with_auth({"Authorization": "Bearer t"})
    assert authorized.header("Authorization") == "Bearer t"
    assert _names(authorized).count("authorization") == 1
    assert request.header("Authorization") == "mine"  # the original is unchanged


def test_on_the_wire_headers_auth_and_body_are_as_specified(tmp_path: Path) -> None:
    """The raw request a real server receives: S10 headers, S11 auth, S12 parameters, S13 body."""
    target = {
        "HttpParameters": {
            "PathParameterValues": ["$.detail.order"],
            "HeaderParameters": {"User-Agent": "mine", "X-Tenant": "t", "Accept-Encoding": "br"},
            "QueryStringParameters": {"q": "$.detail.qty"},
        },
        "InputPath": "$.detail",
    }
    auth = {
        "AuthorizationType": "API_KEY",
        "AuthParameters": {
            "ApiKeyAuthParameters": {"ApiKeyName": "X-Api-Key", "ApiKeyValue": "k-1"},
            "InvocationHttpParameters": {"HeaderParameters": [{"Key": "x-tenant", "Value": "c"}]},
        },
    }

    async def scenario() -> RecordingEndpoint:
        async with RecordingEndpoint() as endpoint:
            config = core_config(endpoint.url + "/orders/*", target=target, auth=auth)
            await deliver(config, tmp_path / "db", [{**EVENT, "source": "test"}])
        return endpoint

    endpoint = run(scenario())
    (seen,) = endpoint.requests
    names = [name.lower() for name, _ in seen.raw_headers]
    assert len(names) == len(set(names))  # no header twice
    headers = {name.lower(): value for name, value in seen.raw_headers}
    body = json.dumps(EVENT["detail"], separators=(",", ":")).encode()
    assert headers == {
        "host": endpoint.url.removeprefix("http://"),
        "x-api-key": "k-1",
        "x-tenant": "c",
        "content-type": "application/json; charset=utf-8",
        "user-agent": "Amazon/EventBridge/ApiDestinations",
        "range": "bytes=0-1048575",
        "accept-encoding": "gzip,deflate",
        "connection": "close",
        "content-length": str(len(body)),
    }
    assert (seen.method, seen.raw_path) == ("POST", "/orders/A%2F1%20b?q=3")
    assert seen.body == body
