"""The local endpoint over real HTTP on 127.0.0.1: status mix, latency, hangs, Retry-After,
M/G/c/K capacity, abandoned requests, incidents, time zero, OAuth, the request log and the CLI.

Latencies are tens of milliseconds and request counts a few hundred at most. Statistical checks
use fixed seeds and state their tolerance (binomial: 4 standard deviations; KS: alpha = 0.001).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
import pytest
from scipy import stats

from sim.endpoint.server import (
    REDACTED,
    EndpointServer,
    OAuthSettings,
    RequestLog,
    header_seconds,
)
from sim.scenario.loading import build_scenario
from sim.scenario.model import Scenario

pytestmark = pytest.mark.live

T = TypeVar("T")
STATUS_TOLERANCE_SD = 4.0
KS_ALPHA = 0.001


def scenario(endpoint: dict[str, Any], *, timeout: str = "5s", seed: int = 11) -> Scenario:
    data = {
        "name": "endpoint-test",
        "horizon": "1h",
        "seed": seed,
        "arrivals": [{"kind": "constant", "rate_per_second": 1}],
        "destination": {"timeout": timeout},
        "endpoint": endpoint,
    }
    return build_scenario(data, source="test")


def run(scenario_: Scenario, body: Callable[[EndpointServer, str], Awaitable[T]], **kw: Any) -> T:
    """Start an endpoint, run `body(server, base_url)`, stop it."""
    start_kw = {k: kw.pop(k) for k in ("t0",) if k in kw}

    async def main() -> T:
        server = EndpointServer(scenario_, **kw)
        url = await server.start("127.0.0.1", 0, **start_kw)
        try:
            return await body(server, url)
        finally:
            await server.stop()

    return asyncio.run(main())


def session() -> aiohttp.ClientSession:
    # one connection per request, like the delivery core (Connection: close)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))


async def timed_get(
    client: aiohttp.ClientSession, url: str, timeout_s: float = 5.0
) -> tuple[int | None, float, dict[str, str]]:
    """(status or None on client timeout, elapsed seconds, headers)."""
    started = time.monotonic()
    try:
        async with client.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            await response.read()
            return response.status, time.monotonic() - started, dict(response.headers)
    except TimeoutError:
        return None, time.monotonic() - started, {}


def basic_auth(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= STATUS_TOLERANCE_SD * math.sqrt(n * p * (1 - p))


# --- responses, latency, hangs, Retry-After --------------------------------------------------


def test_status_mix_frequencies_match_the_response_mix() -> None:
    mix = {200: 0.6, 429: 0.25, 503: 0.15}
    endpoint = {"latency": {"kind": "constant", "value": 0}, "responses": mix}

    async def body(server: EndpointServer, url: str) -> list[int | None]:
        async with session() as client:
            results = []
            for _ in range(8):
                batch = [timed_get(client, f"{url}/hook") for _ in range(50)]
                results += [status for status, _, _ in await asyncio.gather(*batch)]
        assert Counter(r.status for r in server.records) == Counter(results)
        return results

    statuses = run(scenario(endpoint), body)
    counts = Counter(statuses)
    assert set(counts) == set(mix)
    for status, p in mix.items():
        assert within_binomial(counts[status], len(statuses), p), (status, counts)


def test_same_seed_same_responses_other_seed_different() -> None:
    endpoint = {"latency": {"kind": "constant", "value": 0}, "responses": {200: 0.5, 500: 0.5}}

    async def sequence(server: EndpointServer, url: str) -> list[int | None]:
        async with session() as client:
            return [(await timed_get(client, f"{url}/x"))[0] for _ in range(30)]

    first = run(scenario(endpoint), sequence)
    assert run(scenario(endpoint), sequence) == first
    assert run(scenario(endpoint), sequence, seed=12) != first


def test_lognormal_latency_passes_ks_test() -> None:
    median, p99 = 0.1, 0.3
    endpoint = {"latency": {"kind": "lognormal", "median": median, "p99": p99}}
    sigma = math.log(p99 / median) / stats.norm.ppf(0.99)

    async def body(server: EndpointServer, url: str) -> tuple[list[float], list[float]]:
        # open-loop sends 4 ms apart: client and server share one event loop, so a burst would
        # queue on the loop and add its own delay to what the client measures
        async with session() as client:
            sends = []
            for _ in range(200):
                sends.append(asyncio.create_task(timed_get(client, f"{url}/h")))
                await asyncio.sleep(0.004)
            batch = await asyncio.gather(*sends)
        return [seconds for _, seconds, _ in batch], [r.service_s for r in server.records]

    elapsed, service = run(scenario(endpoint), body)
    reference = stats.lognorm(s=sigma, scale=median)
    assert stats.kstest(service, reference.cdf).pvalue > KS_ALPHA  # the drawn service times
    assert stats.kstest(elapsed, reference.cdf).pvalue > KS_ALPHA  # as the client saw them
    # the same test rejects a clearly different latency (median 1.3 times higher)
    assert stats.kstest(elapsed, stats.lognorm(s=sigma, scale=median * 1.3).cdf).pvalue < KS_ALPHA


def test_constant_latency_is_served_at_least_that_long() -> None:
    def endpoint(value: str) -> dict[str, Any]:
        return {"latency": {"kind": "constant", "value": value}}

    async def body(server: EndpointServer, url: str) -> list[float]:
        async with session() as client:
            batch = await asyncio.gather(*(timed_get(client, url) for _ in range(20)))
        assert {(r.service_s, r.queue_wait_s) for r in server.records} in ({(0.05, 0)}, {(0, 0)})
        return [seconds for _, seconds, _ in batch]

    elapsed = np.array(run(scenario(endpoint("50ms")), body))
    loopback = np.array(run(scenario(endpoint("0s")), body))  # the same requests, no latency
    assert elapsed.min() >= 0.05
    # beyond the loopback round trip measured in the same run, only the 50 ms (± scheduling)
    assert np.median(elapsed) - np.median(loopback) < 0.05 + 0.03


def test_hangs_hold_the_request_for_the_client_timeout_then_close() -> None:
    endpoint = {"latency": {"kind": "constant", "value": 0}, "timeout_probability": 0.3}

    async def body(server: EndpointServer, url: str) -> list[int | None]:
        async with session() as client:  # the client gives up after 1 s, a hang lasts 1.5 s
            batch = await asyncio.gather(*(timed_get(client, url, 1.0) for _ in range(60)))
        await asyncio.sleep(1.6)  # every hang has ended on the server
        assert len(server.records) == 60
        statuses = [status for status, _, _ in batch]
        assert statuses.count(None) == sum(r.hang for r in server.records)
        assert all(status in (None, 200) for status in statuses)
        assert all(r.status is None and r.service_s == 1.5 for r in server.records if r.hang)
        assert all(r.client_gone for r in server.records if r.hang)
        return statuses

    statuses = run(scenario(endpoint, timeout="1500ms"), body)
    assert within_binomial(statuses.count(None), len(statuses), 0.3)


def test_a_hang_is_closed_without_a_response_after_the_client_timeout() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": 0},
        "incidents": [{"start": 0, "duration": "1h", "timeout_probability": 1.0}],
    }

    async def body(server: EndpointServer, url: str) -> float:
        started = time.monotonic()
        async with session() as client:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await client.get(url, timeout=aiohttp.ClientTimeout(total=2))
        return time.monotonic() - started

    assert run(scenario(endpoint, timeout="200ms"), body) >= 0.2


def test_retry_after_header_per_status_as_integer_seconds() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": 0},
        "responses": {200: 0.25, 429: 0.25, 503: 0.25, 502: 0.25},
        "retry_after": {429: "30s", 503: "-1s", 502: "2s"},
    }
    expected = {200: None, 429: "30", 503: "-1", 502: "2"}

    async def body(server: EndpointServer, url: str) -> set[int | None]:
        async with session() as client:
            batch = await asyncio.gather(*(timed_get(client, url) for _ in range(40)))
        for status, _, headers in batch:
            assert status is not None
            assert headers.get("Retry-After") == expected[status], (status, headers)
        return {status for status, _, _ in batch}

    assert run(scenario(endpoint), body) == set(expected)


def test_header_seconds_rounds_away_from_zero() -> None:
    assert [header_seconds(s) for s in (30.0, 1.5, 0.0, -0.5, -2.0)] == [30, 2, 0, -1, -2]


# --- capacity (M/G/c/K) ------------------------------------------------------------------------


def test_capacity_serves_concurrency_queues_fifo_and_overloads_the_rest() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": "100ms"},
        "capacity": {"concurrency": 2, "queue": 3, "overload_status": 429},
        "retry_after": {429: "7s"},
    }

    async def body(server: EndpointServer, url: str) -> list[tuple[int | None, float, str | None]]:
        async with session() as client:
            batch = await asyncio.gather(*(timed_get(client, url) for _ in range(10)))
        records = server.records
        in_service = [(r.arrival_at + r.queue_wait_s, r.service_s) for r in records]
        for start, _ in in_service:  # never more than `concurrency` in service at once
            assert sum(s <= start + 1e-9 < s + d for s, d in in_service if d > 0) <= 2
        assert sorted(round(r.queue_wait_s, 1) for r in records if not r.overload) == [
            0.0, 0.0, 0.1, 0.1, 0.2
        ]  # fmt: skip
        return [(status, seconds, headers.get("Retry-After")) for status, seconds, headers in batch]

    results = run(scenario(endpoint), body)
    served = sorted(seconds for status, seconds, _ in results if status == 200)
    overloaded = [(seconds, retry) for status, seconds, retry in results if status == 429]
    assert len(served) == 5 and len(overloaded) == 5
    assert all(retry == "7" and seconds < 0.1 for seconds, retry in overloaded)
    for got, want in zip(served, [0.1, 0.1, 0.2, 0.2, 0.3], strict=True):
        assert want <= got < want + 0.05


def test_an_abandoned_request_keeps_its_place_until_its_service_ends() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": "300ms"},
        "capacity": {"concurrency": 1, "queue": 1, "overload_status": 503},
    }

    async def body(server: EndpointServer, url: str) -> None:
        async with session() as client:
            abandoned = asyncio.create_task(timed_get(client, url, timeout_s=0.05))
            assert (await abandoned)[0] is None  # the client gave up at 50 ms
            await asyncio.sleep(0.05)  # t ≈ 0.1 s: the first request is still in service
            queued = asyncio.create_task(timed_get(client, url))
            await asyncio.sleep(0.05)
            overloaded = await timed_get(client, url)  # server busy, queue place taken
            status, elapsed, _ = await queued
        assert overloaded[0] == 503
        assert status == 200 and elapsed >= 0.45  # waited ≈ 0.2 s for the abandoned one
        first, second, _ = server.records
        assert second.queue_wait_s == pytest.approx(0.3 - (second.arrival_at - first.arrival_at))
        await asyncio.sleep(0.3)
        assert first.client_gone and first.status == 200 and first.completed_at is not None

    run(scenario(endpoint), body)


# --- incidents and time zero -----------------------------------------------------------------


def test_incident_replaces_behaviour_inside_its_window() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": 0},
        "incidents": [
            {"start": "400ms", "duration": "400ms", "responses": {503: 1.0},
             "retry_after": {503: "9s"}}
        ],
    }  # fmt: skip

    async def body(server: EndpointServer, url: str) -> list[tuple[int | None, str | None]]:
        results = []
        async with session() as client:
            for at in (0.15, 0.6, 1.05):
                await asyncio.sleep(max(0.0, at - server.now()))
                status, _, headers = await timed_get(client, url)
                results.append((status, headers.get("Retry-After")))
        assert [r.incidents for r in server.records] == [(), (0,), ()]
        assert [r.regime for r in server.records] == [0, 1, 2]
        return results

    assert run(scenario(endpoint), body) == [(200, None), (503, "9"), (200, None)]


def test_time_zero_can_be_given_by_the_caller() -> None:
    endpoint = {
        "latency": {"kind": "constant", "value": 0},
        "incidents": [{"start": "10s", "duration": "1h", "responses": {500: 1.0}}],
    }

    async def body(server: EndpointServer, url: str) -> tuple[int | None, float]:
        async with session() as client:
            status, _, _ = await timed_get(client, url)
        return status, server.records[0].arrival_at

    status, arrival_at = run(scenario(endpoint), body, t0=time.monotonic() - 10.0)
    assert status == 500 and 10.0 <= arrival_at < 11.0
    status, arrival_at = run(scenario(endpoint), body, t0=time.monotonic() - 8.0)
    assert status == 200 and 8.0 <= arrival_at < 9.0
    status, arrival_at = run(scenario(endpoint), body)  # default: zero when listening
    assert status == 200 and 0.0 <= arrival_at < 1.0


# --- OAuth -----------------------------------------------------------------------------------


def test_oauth_token_endpoint_and_protected_paths() -> None:
    settings = OAuthSettings("client-a", "s3cret-value", token_lifetime_s=0.4)
    endpoint = {"latency": {"kind": "constant", "value": 0}}

    async def body(server: EndpointServer, url: str) -> None:
        async with session() as client:

            async def token(**kw: Any) -> aiohttp.ClientResponse:
                response = await client.post(f"{url}/oauth/token", **kw)
                await response.read()
                return response

            async def call(bearer: str | None) -> int:
                headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                async with client.post(f"{url}/hook", headers=headers, data=b"{}") as response:
                    return response.status

            grant = {"grant_type": "client_credentials"}
            basic = basic_auth("client-a", "s3cret-value")
            first = await token(data=grant, headers=basic)
            assert first.status == 200
            issued = await first.json()
            assert issued["token_type"] == "Bearer" and issued["expires_in"] == 1
            as_form = await token(
                data={**grant, "client_id": "client-a", "client_secret": "s3cret-value"}
            )
            assert as_form.status == 200
            wrong = await token(data=grant, headers=basic_auth("client-a", "nope"))
            assert wrong.status == 401 and (await wrong.json())["error"] == "invalid_client"
            bad_grant = await token(data={"grant_type": "password"}, headers=basic)
            assert bad_grant.status == 400
            assert server.n_tokens_issued == 2

            assert await call(None) == 401
            assert await call("made-up") == 401
            assert await call(issued["access_token"]) == 200
            server.revoke_tokens()
            assert await call(issued["access_token"]) == 401  # revoked: the core must refresh
            fresh = await (await token(data=grant, headers=basic)).json()
            assert await call(fresh["access_token"]) == 200
            await asyncio.sleep(0.45)
            assert await call(fresh["access_token"]) == 401  # expired
            assert server.n_tokens_issued == 3
        unauthorized = [r for r in server.records if r.unauthorized]
        assert len(unauthorized) == 4 and all(r.status == 401 for r in unauthorized)

    run(scenario(endpoint), body, oauth=settings)


# --- request log -----------------------------------------------------------------------------


def test_request_log_records_requests_and_redacts_secrets_on_disk(tmp_path: Path) -> None:
    endpoint = {"latency": {"kind": "constant", "value": "10ms"}}
    streamed = tmp_path / "streamed.jsonl"
    log = RequestLog(streamed, redact=["X-Partner"])

    async def body(server: EndpointServer, url: str) -> None:
        headers = {
            "Authorization": "Basic c2VjcmV0",
            "x-partner-key": "k-123456",
            "X-Partner": "p-999",
            "X-Trace": "visible",
        }
        async with session() as client:
            async with client.put(f"{url}/a/b?id=7&api_key=q-secret", headers=headers,
                                  data=b"x" * 1234) as response:  # fmt: skip
                assert response.status == 200

    run(scenario(endpoint), body, log=log)
    log.close()
    (record,) = log.records
    assert (record.method, record.path, record.body_bytes) == ("PUT", "/a/b", 1234)
    assert record.query == {"id": "7", "api_key": "q-secret"}  # in memory: as received
    assert record.status == 200 and record.service_s == 0.01 and not record.overload
    assert record.completed_at is not None and record.completed_at >= record.arrival_at + 0.01

    log.write(tmp_path / "log.csv")
    log.write(tmp_path / "log.jsonl")
    for path in (streamed, tmp_path / "log.jsonl", tmp_path / "log.csv"):
        text = path.read_text()
        for secret in ("c2VjcmV0", "k-123456", "p-999", "q-secret"):
            assert secret not in text, (path.name, secret)
        assert REDACTED in text and "visible" in text
    (row,) = [json.loads(line) for line in streamed.read_text().splitlines()]
    assert row["headers"]["X-Trace"] == "visible" and row["query"]["id"] == "7"
    (csv_row,) = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert csv_row["status"] == "200" and csv_row["body_bytes"] == "1234"


# --- CLI -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cli_serves_a_scenario_until_terminated(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "name: cli\nhorizon: 1h\narrivals: [{kind: constant, rate_per_second: 1}]\n"
        "endpoint: {latency: {kind: constant, value: 10ms}, responses: {418: 1.0}}\n"
    )
    port, log = free_port(), tmp_path / "requests.jsonl"
    command = [sys.executable, "-m", "sim", "endpoint", str(path), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=5)
        assert answer.value.code == 418
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
    (row,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (row["method"], row["path"], row["status"]) == ("POST", "/hook", 418)


def test_cli_bad_scenario_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nhorizon: 1h\narrivals: [{kind: constant, rate_per_second: 1}]\n"
        "endpoint: {latency: {kind: constant, value: 10ms}, responses: {200: 0.5}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "sim", "endpoint", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: endpoint.responses")
