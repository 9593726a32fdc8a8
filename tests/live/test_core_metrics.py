"""`sim core run --metrics`: the run's CloudWatch metrics per rule, in the GetMetricData shape.

The endpoint is the standard library's `http.server` in a thread, answering 400 (not retried)
to events whose `detail.n` is a multiple of 5, so every count is known in advance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.scenario.metric_data import read_metric_data

runner = CliRunner()


class Endpoint:
    """http.server on 127.0.0.1: 400 when detail.n is a multiple of 5, else 200."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(400 if body["detail"]["n"] % 5 == 0 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the core opens one connection per request, 80 at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def config(path: Path, url: str) -> Path:
    """Rule `orders` (shop events, one target, a DLQ); rule `audit` (shop and bank, two targets)."""
    target = {"Arn": "dest", "RetryPolicy": {"MaximumRetryAttempts": 2}}
    data = {
        "Connections": [{"Name": "c", "AuthorizationType": "API_KEY",
                         "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}}}],
        "ApiDestinations": [{"Name": "dest", "ConnectionArn": "c", "InvocationEndpoint": url,
                             "HttpMethod": "POST", "InvocationRateLimitPerSecond": 500}],
        "Rules": [
            {"Name": "orders", "EventPattern": {"source": ["shop"]},
             "Targets": [{**target, "Id": "t1",
                          "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"}}]},
            {"Name": "audit", "EventPattern": {"source": ["shop", "bank"]},
             "Targets": [{**target, "Id": "t1"}, {**target, "Id": "t2"}]},
        ],
        "sim": {"allow_private_endpoints": True, "timeout": 1},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


def events(path: Path) -> Path:
    shop = [{"source": "shop", "detail-type": "o", "detail": {"n": n}} for n in range(20)]
    bank = [{"source": "bank", "detail-type": "r", "detail": {"n": n}} for n in range(100, 110)]
    path.write_text("".join(json.dumps(e) + "\n" for e in shop + bank))
    return path


@pytest.mark.live
def test_the_run_writes_each_rules_metrics(tmp_path: Path, endpoint: Endpoint):
    result = runner.invoke(app, [
        "core", "run", str(config(tmp_path / "core.yaml", endpoint.url)), "--db", str(tmp_path / "core.db"),
        "--events", str(events(tmp_path / "events.jsonl")), "--until-idle",
        "--records", str(tmp_path / "records.csv"), "--metrics", str(tmp_path / "metrics.json"),
        "--metrics-period", "10s",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = read_metric_data(tmp_path / "metrics.json")
    assert data.rules() == ["orders", "audit"]

    def total(metric: str, rule: str) -> float:
        return float(data.select(metric, rule).values.sum())

    # 20 shop events go to orders' one target; 30 events (shop and bank) to audit's two targets
    for rule, matched, created in (("orders", 20, 20), ("audit", 30, 60)):
        assert (total("MatchedEvents", rule), total("InvocationsCreated", rule)) == (
            matched,
            created,
        )
        latency = data.select("IngestionToInvocationSuccessLatency", rule, "p99").values
        assert latency.size and (latency > 0).all()
    # one definition: summed over the rules, the metrics count what the attempt records say
    records = pd.read_csv(tmp_path / "records.csv")
    sent = records["dispatch_at"].notna()
    observed = {
        "InvocationAttempts": sent.sum(),
        "SuccessfulInvocationAttempts": (records["outcome"] == "delivered").sum(),
        "RetryInvocationAttempts": (sent & (records["attempt"] > 1)).sum(),
        "InvocationsSentToDlq": (records["final"] == "dlq").sum(),
        "FailedInvocations": records["final"].isin(["dlq", "dropped"]).sum(),
    }
    for metric, count in observed.items():
        assert total(metric, "orders") + total(metric, "audit") == count, metric
    # 400 (not retried) answers the 4 shop and 2 bank events whose n is a multiple of 5: orders
    # dead-letters its 4, audit (no DLQ) drops its 12 (6 events x 2 targets)
    assert (
        total("InvocationsSentToDlq", "orders") == 4 and total("InvocationsSentToDlq", "audit") == 0
    )
    assert total("FailedInvocations", "orders") >= 4 and total("FailedInvocations", "audit") >= 12
    assert observed["InvocationAttempts"] >= 80
    document = json.loads((tmp_path / "metrics.json").read_text())
    for series in document["MetricDataResults"]:
        assert series["Timestamps"] == sorted(series["Timestamps"], reverse=True)
        assert all(stamp.endswith("0+00:00") for stamp in series["Timestamps"])  # on 10 s marks


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--metrics-period", "0s", "error: --metrics-period: must be between 1s and 1d"),
        ("--metrics-period", "soon", "error: --metrics-period: 'soon' is not a duration"),
        ("--metrics", "missing/metrics.json", "/missing/metrics.json: no such folder"),
    ],
)
def test_bad_metrics_options_are_one_error_line(
    tmp_path: Path, option: str, value: str, message: str
):
    path = config(tmp_path / "core.yaml", "http://127.0.0.1:9/hook")
    args = ["core", "run", str(path), "--db", str(tmp_path / "core.db"), "--until-idle"]
    if option == "--metrics-period":
        args += ["--metrics", str(tmp_path / "m.json")]
    result = runner.invoke(
        app, [*args, option, value if option != "--metrics" else str(tmp_path / value)]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "core.db").exists()  # refused before the core started
