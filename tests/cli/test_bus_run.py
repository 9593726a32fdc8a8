"""`sim run` on a bus through the CLI: the answer per destination on the terminal, the report folder."""

import json

import pandas as pd
from typer.testing import CliRunner

from sim.cli import app

runner = CliRunner()
BUS = """
name: tiny-bus
horizon: 3m
seed: 2
replications: 2
arrivals: [{kind: constant, rate_per_second: 40}, {kind: burst, start: 1m, duration: 20s, rate_per_second: 120}]
account: {invocation_limit_per_second: 70}
destinations:
  - {name: pay, invocation_rate_limit_per_second: 60, endpoint: {latency: {kind: constant, value: 20ms}}}
  - {name: crm, invocation_rate_limit_per_second: 30, endpoint: {latency: {kind: constant, value: 50ms}}}
rules:
  - {name: orders-to-pay, match_fraction: 0.5, target: pay}
  - {name: orders-to-crm, match_fraction: 0.5, target: crm, dead_letter_queue: true}
  - {name: people-to-crm, match_fraction: 0.2, target: crm}
sample_every: 10s
slo: {max_p99_delivery_delay: 30s}
"""


def test_sim_run_on_a_bus_answers_per_destination(tmp_path):
    path = tmp_path / "bus.yaml"
    path.write_text(BUS)
    out = tmp_path / "report"
    result = runner.invoke(app, ["run", str(path), "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "The account quota (70/s) binds" in text
    assert "What holds each destination back: pay:" in text
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    for key in ("destinations.pay.InvocationAttempts", "rules.people-to-crm.events_dropped",
                "account.throttled_fraction", "account.peak_rps"):  # fmt: skip
        assert key in metrics, key
    assert "account.order" in summary["assumptions"]
    series = pd.read_csv(out / "timeseries.csv")
    assert list(series["destination"].unique()) == ["pay", "crm", "all"]
    assert (out / "backlog-pay.png").exists() and (out / "backlog-crm.png").exists()
