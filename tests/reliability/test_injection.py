"""Injection and destinations (S10, S12, S15, design §9), checked on the wire.

Event-derived header and path values holding CR/LF or other control characters are refused
(DLQ `INVALID_PARAMETER`) and never sent: a raw socket server records every byte the core
sends, and neither the value nor anything it would inject may appear. Endpoints on private,
loopback, link-local or shared addresses — in any spelling — are refused unless the operator
allows them, and CONNECT and TRACE are refused in any case.
"""

from __future__ import annotations

import asyncio
import copy
import socket
from pathlib import Path
from typing import Any

import pytest

from sim.errors import InputError
from sim.live.config.loading import build_config
from sim.live.delivery.core import DeliveryCore
from sim.live.delivery.request import HttpRequest
from sim.live.delivery.store import Store
from sim.live.delivery.transport import STATUS_CONNECTION_ERROR, Transport
from tests.support.processes import RawServer, core_config_data, event, reply

pytestmark = pytest.mark.live

INJECTED = "X-Injected"


async def _ok(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer
) -> None:
    await server.read_request(reader)
    writer.write(reply(b"HTTP/1.1 200 OK"))


def deliver(
    tmp_path: Path, values: list[str], **params: Any
) -> tuple[RawServer, list[dict[str, Any]]]:
    """Send one event per value (detail.v = value) through the core; return wire and DLQ."""

    async def main() -> RawServer:
        async with RawServer(_ok) as server:
            endpoint = server.url + ("/orders/*" if "path_values" in params else "/orders")
            data = core_config_data(endpoint, **params)
            core = DeliveryCore(build_config(data, source="t", environ={}), tmp_path / "core.db")
            await core.start()
            try:
                await core.submit([event(n, v=value) for n, value in enumerate(values)])
                await asyncio.wait_for(core.wait_idle(), 10)
            finally:
                await core.stop()
        return server

    server = asyncio.run(main())
    store = Store(tmp_path / "core.db")
    try:
        dlq = list(store.dead_letters())
    finally:
        store.close()
    return server, dlq


HEADER_VALUES = [
    f"a\r\n{INJECTED}: 1",
    f"a\n{INJECTED}: 1",
    f"a\r{INJECTED}: 1",
    f"a\r\n\r\nGET /smuggled HTTP/1.1\r\n{INJECTED}: 1",
    "a\x00b",
    "a\x1bb",
    "a\x7fb",
    "a\x0bb",
    "a\x0cb",
    "\x08",
]


@pytest.mark.parametrize("value", HEADER_VALUES, ids=[repr(v)[:24] for v in HEADER_VALUES])
def test_header_values_from_the_event_with_control_characters_are_never_sent(
    tmp_path: Path, value: str
) -> None:
    server, dlq = deliver(tmp_path, [value, "fine"], headers={"x-v": "$.detail.v"})
    assert len(server.requests) == 1  # only the clean event reached the socket
    wire = b"".join(server.requests)
    assert b"x-v: fine\r\n" in wire
    assert INJECTED.encode() not in wire and b"smuggled" not in wire
    assert value.encode("utf-8") not in wire
    (record,) = dlq
    assert record["event"]["detail"]["v"] == value
    assert record["attributes"]["ERROR_CODE"] == "INVALID_PARAMETER"


PATH_VALUES = [f"a\r\n{INJECTED}: 1", "a\nb", "a\x00b", "a\x1bb", "..", "."]


@pytest.mark.parametrize("value", PATH_VALUES, ids=[repr(v)[:24] for v in PATH_VALUES])
def test_path_values_from_the_event_with_control_characters_or_dot_segments_are_never_sent(
    tmp_path: Path, value: str
) -> None:
    server, dlq = deliver(tmp_path, [value, "fine"], path_values=["$.detail.v"])
    assert [r.split(b"\r\n")[0] for r in server.requests] == [b"POST /orders/fine HTTP/1.1"]
    wire = b"".join(server.requests)
    assert INJECTED.encode() not in wire and b"%0D%0A" not in wire.upper()
    (record,) = dlq
    assert record["attributes"]["ERROR_CODE"] == "INVALID_PARAMETER"


def test_tab_and_non_ascii_header_values_are_sent_as_they_are(tmp_path: Path) -> None:
    server, dlq = deliver(tmp_path, ["a\tb", "caf\u00e9"], headers={"x-v": "$.detail.v"})
    assert not dlq and len(server.requests) == 2
    wire = b"".join(server.requests)
    assert b"x-v: a\tb\r\n" in wire and "x-v: caf\u00e9\r\n".encode() in wire


def test_query_values_with_cr_lf_are_percent_encoded_on_the_request_line(tmp_path: Path) -> None:
    data = core_config_data("http://x/")
    target = data["Rules"][0]["Targets"][0]
    target["HttpParameters"] = {"QueryStringParameters": {"q": "$.detail.v"}}

    async def main() -> RawServer:
        async with RawServer(_ok) as server:
            data["ApiDestinations"][0]["InvocationEndpoint"] = server.url + "/orders"
            core = DeliveryCore(build_config(data, source="t", environ={}), tmp_path / "core.db")
            await core.start()
            await core.submit([event(1, v=f"a\r\n{INJECTED}: 1")])
            await asyncio.wait_for(core.wait_idle(), 10)
            await core.stop()
        return server

    (request,) = asyncio.run(main()).requests
    request_line, *headers = request.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request_line.startswith(b"POST /orders?q=a%0D%0AX-Injected%3A%201 ")
    assert not any(h.startswith(INJECTED.encode()) for h in headers)


@pytest.mark.parametrize(
    ("where", "value"),
    [("header", "a\r\nb"), ("header", "a\x00b"), ("name", "X Bad"), ("name", "X:Bad")],
)
def test_connection_and_target_headers_with_control_characters_are_refused_in_config(
    where: str, value: str
) -> None:
    data = core_config_data("http://127.0.0.1/")
    params = data["Connections"][0]["AuthParameters"]
    header = (
        {"Key": "x-fixed", "Value": value} if where == "header" else {"Key": value, "Value": "v"}
    )
    params["InvocationHttpParameters"] = {"HeaderParameters": [header]}
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ={})
    assert caught.value.key is not None
    assert caught.value.key.startswith("Connections.0.AuthParameters.InvocationHttpParameters")


# --- destinations (S15) ---------------------------------------------------------------------

PRIVATE_ENDPOINTS = [
    "https://127.0.0.1/",
    "https://127.255.255.254/",
    "https://10.1.2.3/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata, link-local
    "https://100.64.0.1/",  # shared address space (carrier-grade NAT)
    "https://0.0.0.0/",
    "https://[::1]/",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::]/",
    "https://localhost/",
    "https://LOCALHOST./",
    "https://api.localhost/",
    "https://printer.local/",
    "https://metadata.google.internal/",
    "https://2130706433/",  # 127.0.0.1 as one decimal number
    "https://127.1/",  # short dotted form
    "https://0x7f.0.0.1/",  # hexadecimal
    "https://0177.0.0.1/",  # octal
    "https://0/",
]


@pytest.mark.parametrize("url", PRIVATE_ENDPOINTS)
def test_private_endpoints_are_refused_unless_allowed(url: str) -> None:
    data = core_config_data(url, sim={"allow_private_endpoints": False})
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ={})
    assert caught.value.key == "ApiDestinations.0.InvocationEndpoint"
    assert "private" in caught.value.problem

    oauth = copy.deepcopy(data)
    oauth["ApiDestinations"][0]["InvocationEndpoint"] = "https://partner.example.com/"
    oauth["Connections"][0] = {
        "Name": "conn",
        "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
        "AuthParameters": {
            "OAuthParameters": {
                "AuthorizationEndpoint": url,
                "HttpMethod": "POST",
                "ClientParameters": {"ClientID": "id", "ClientSecret": "s"},
            }
        },
    }
    with pytest.raises(InputError) as caught:
        build_config(oauth, source="core.yaml", environ={})
    assert caught.value.key == "Connections.0.AuthParameters.OAuthParameters.AuthorizationEndpoint"

    allowed = core_config_data(url, sim={"allow_private_endpoints": True})
    build_config(allowed, source="core.yaml", environ={})  # the operator's explicit choice


@pytest.mark.parametrize(
    "url",
    ["https://partner.example.com/hook", "https://93.184.216.34/", "https://[2606:4700::1111]/"],
)
def test_public_https_endpoints_are_accepted(url: str) -> None:
    build_config(
        core_config_data(url, sim={"allow_private_endpoints": False}), source="c", environ={}
    )


def test_plain_http_is_refused_unless_private_endpoints_are_allowed() -> None:
    data = core_config_data("http://partner.example.com/", sim={"allow_private_endpoints": False})
    with pytest.raises(InputError, match="https"):
        build_config(data, source="core.yaml", environ={})


def test_names_resolving_to_private_addresses_are_refused_before_connecting() -> None:
    """At send time, a host name that resolves only to private addresses is never connected."""

    async def main() -> tuple[list[int], int]:
        async with RawServer(_ok) as server:
            transport = Transport(2.0, allow_private=False)
            names = ["localhost", socket.gethostname()]
            statuses = []
            for name in names:
                request = HttpRequest(
                    "POST", f"http://{name}:{server.port}/", (("Host", name),), b""
                )
                statuses.append((await transport.send(request)).status)
            await transport.close()
        return statuses, server.connections

    if not _resolves_privately(socket.gethostname()):
        pytest.skip("this machine's host name does not resolve to a private address")
    statuses, connections = asyncio.run(main())
    assert statuses == [STATUS_CONNECTION_ERROR, STATUS_CONNECTION_ERROR]
    assert connections == 0


def _resolves_privately(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    from sim.live.eventbridge.checks import is_private_address

    return bool(infos) and all(is_private_address(str(info[4][0])) for info in infos)


@pytest.mark.parametrize("method", ["CONNECT", "TRACE", "connect", "Trace", " TRACE "])
def test_connect_and_trace_are_refused(method: str) -> None:
    data = core_config_data("http://127.0.0.1/")
    data["ApiDestinations"][0]["HttpMethod"] = method
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ={})
    assert caught.value.key == "ApiDestinations.0.HttpMethod"
    assert "not allowed" in caught.value.problem


@pytest.mark.parametrize("method", ["CONNECT", "TRACE"])
def test_connect_and_trace_are_refused_for_oauth_token_requests(method: str) -> None:
    data = core_config_data("http://127.0.0.1/")
    data["Connections"][0] = {
        "Name": "conn",
        "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
        "AuthParameters": {
            "OAuthParameters": {
                "AuthorizationEndpoint": "http://127.0.0.1/token",
                "HttpMethod": method,
                "ClientParameters": {"ClientID": "id", "ClientSecret": "s"},
            }
        },
    }
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ={})
    assert caught.value.key == "Connections.0.AuthParameters.OAuthParameters.HttpMethod"
