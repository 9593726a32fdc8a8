"""The whole loop from the user's data, end to end, with real processes on 127.0.0.1.

`sim endpoint` serves a known endpoint and writes an nginx-style access log; `sim core run`
delivers a Poisson stream of events (40/s for 20 s from a period boundary, fed on stdin) to
it under a 60/s limit and writes `--metrics` (GetMetricData JSON, 5 s periods). Then, as a user would:
`sim fit endpoint` on the access log and `sim fit arrivals` on the metrics give a scenario,
whose `sim backtest` against the same metrics PASSes; with the rate limit halved (30/s, below
the arrival rate) it FAILs. About 40 s of real time.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()
RATE, SECONDS, LIMIT, PERIOD = 40.0, 20.0, 60, "5s"
TRUTH = {
    "name": "partner",
    "horizon": "1h",
    "seed": 3,
    "arrivals": [{"kind": "constant", "rate_per_second": RATE}],
    "destination": {"invocation_rate_limit_per_second": LIMIT, "timeout": "1s"},
    "endpoint": {
        "latency": {"kind": "lognormal", "median": "20ms", "p99": "120ms"},
        "responses": {200: 0.95, 503: 0.03, 429: 0.02},
        "timeout_probability": 0.01,
    },
}


def sim(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sim", *args], text=True, **kw)  # type: ignore[call-overload]


def first_line(process: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, "the endpoint did not start"
    return process.stdout.readline()


def core_config(url: str) -> dict[str, object]:
    return {
        "Connections": [
            {
                "Name": "partner",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {
                    "ApiKeyAuthParameters": {"ApiKeyName": "x-key", "ApiKeyValue": "k"}
                },
            }
        ],
        "ApiDestinations": [
            {
                "Name": "partner",
                "ConnectionArn": "partner",
                "InvocationEndpoint": f"{url}/hooks",
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": LIMIT,
            }
        ],
        "Rules": [
            {
                "Name": "orders",
                "EventPattern": {"source": ["shop"]},
                "Targets": [{"Id": "t", "Arn": "partner"}],
            },
            {
                "Name": "refunds",
                "EventPattern": {"source": ["bank"]},
                "Targets": [{"Id": "t", "Arn": "partner"}],
            },
        ],
        "sim": {"timeout": "1s", "allow_private_endpoints": True, "seed": 5},
    }


def deliver_live(folder: Path) -> int:
    """Run endpoint and core as processes, feed the events; the number of events sent."""
    (folder / "truth.yaml").write_text(yaml.safe_dump(TRUTH))
    endpoint = sim(
        "endpoint",
        str(folder / "truth.yaml"),
        "--port",
        "0",
        "--access-log",
        str(folder / "access.log"),
        stdout=subprocess.PIPE,
    )
    try:
        url = first_line(endpoint).split()[-1]
        (folder / "core.yaml").write_text(yaml.safe_dump(core_config(url)))
        core = sim(
            "core",
            "run",
            str(folder / "core.yaml"),
            "--db",
            str(folder / "core.db"),
            "--events",
            "-",
            "--until-idle",
            "--metrics",
            str(folder / "metrics.json"),
            "--metrics-period",
            PERIOD,
            stdin=subprocess.PIPE,
        )
        assert core.stdin is not None
        deadline = time.monotonic() + 60
        while not (folder / "core.db").exists():  # the core has started: it reads stdin now
            assert time.monotonic() < deadline and core.poll() is None, "the core did not start"
            time.sleep(0.05)
        rng = np.random.default_rng(17)
        times = np.cumsum(rng.exponential(1 / RATE, int(RATE * SECONDS * 1.3)))
        times = times[times < SECONDS]
        # Start (and so end) on a period boundary, as the model's arrivals, which spread each
        # period's count over the whole period: traffic stopping mid-period would put its last
        # retries where the model puts none (see docs/from-data.md, "What the model assumes").
        period = float(PERIOD.removesuffix("s"))
        time.sleep(0.5 + period - (time.time() + 0.5) % period)
        start = time.monotonic()
        for n, at in enumerate(times):
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            core.stdin.write(
                json.dumps({"source": "shop", "detail-type": "Order", "detail": {"n": n}}) + "\n"
            )
            core.stdin.flush()
        core.stdin.close()
        assert core.wait(timeout=120) == 0
    finally:
        endpoint.send_signal(signal.SIGTERM)
        endpoint.wait(timeout=30)
    return int(times.size)


@pytest.mark.live
@pytest.mark.slow
def test_fitted_from_the_access_log_and_metrics_the_model_passes_its_backtest(tmp_path: Path):
    sent = deliver_live(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    labels = {r["Label"]: r for r in metrics["MetricDataResults"]}
    assert sum(labels["orders MatchedEvents"]["Values"]) == sent  # the RuleName dimension
    assert not any(label.startswith("refunds") and r["Values"] for label, r in labels.items())
    stamps = labels["orders MatchedEvents"]["Timestamps"]
    assert stamps == sorted(stamps, reverse=True)  # newest first, as AWS

    fit = runner.invoke(
        app,
        [
            "fit",
            "endpoint",
            str(tmp_path / "access.log"),
            "--timeout",
            "1s",
            "--out",
            str(tmp_path / "endpoint.yaml"),
        ],
    )
    assert fit.exit_code == 0, fit.output
    arrivals = runner.invoke(
        app,
        [
            "fit",
            "arrivals",
            str(tmp_path / "metrics.json"),
            "--out",
            str(tmp_path / "arrivals.yaml"),
        ],
    )
    assert arrivals.exit_code == 0, arrivals.output
    endpoint = yaml.safe_load((tmp_path / "endpoint.yaml").read_text())["endpoint"]
    assert endpoint["responses"][200] == pytest.approx(0.95, abs=0.03)
    scenario = {
        "name": "fitted",
        "horizon": "1m",
        "sample_every": PERIOD,
        "destination": {"invocation_rate_limit_per_second": LIMIT, "timeout": "1s"},
        "endpoint": endpoint,
        **yaml.safe_load((tmp_path / "arrivals.yaml").read_text()),
    }
    (tmp_path / "fitted.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    assert runner.invoke(app, ["check", str(tmp_path / "fitted.yaml")]).exit_code == 0

    backtest = [
        "backtest",
        str(tmp_path / "fitted.yaml"),
        "--metrics",
        str(tmp_path / "metrics.json"),
        "--replications",
        "100",
    ]
    right = runner.invoke(app, [*backtest, "--out", str(tmp_path / "right")])
    assert right.exit_code == 0, right.output
    assert "fitted: PASS" in right.stdout
    halved = runner.invoke(
        app,
        [
            *backtest,
            "--set",
            f"destination.invocation_rate_limit_per_second={LIMIT // 2}",
            "--out",
            str(tmp_path / "halved"),
        ],
    )
    assert halved.exit_code == 1, halved.output
    assert "fitted: FAIL" in halved.stdout and "InvocationAttempts[" in halved.stdout
