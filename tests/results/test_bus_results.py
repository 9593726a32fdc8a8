"""Metrics of a bus (sim.results.bus): every level adds up, and the report shows each destination."""

from pathlib import Path

import pandas as pd
import pytest

from sim.report.run import write_report
from sim.results.run import RunResult
from sim.runner.replications import run_one, run_replications
from sim.scenario.loading import build_scenario

FLAKY = {
    "latency": {"kind": "constant", "value": 0.02},
    "responses": {200: 0.9, 503: 0.08, 400: 0.02},
}


def small_bus(quota=60):
    data = {
        "name": "metrics-bus",
        "horizon": 120,
        "seed": 8,
        "replications": 2,
        "arrivals": [
            {"kind": "constant", "rate_per_second": 30},
            {"kind": "burst", "start": 30, "duration": 10, "rate_per_second": 60},
        ],
        "account": {"invocation_limit_per_second": quota},
        "destinations": [
            {"name": "shared", "invocation_rate_limit_per_second": 40, "endpoint": FLAKY},
            {
                "name": "alone",
                "invocation_rate_limit_per_second": 50,
                "endpoint": {"latency": {"kind": "constant", "value": 0.01}},
            },
        ],  # fmt: skip
        "rules": [
            {"name": "r-dlq", "match_fraction": 0.6, "target": "shared", "dead_letter_queue": True},
            {
                "name": "r-drop",
                "match_fraction": 0.5,
                "target": "shared",
                "retry_policy": {"maximum_retry_attempts": 1},
            },
            {"name": "r-alone", "match_fraction": 1, "target": "alone"},
        ],  # fmt: skip
        "sample_every": 10,
    }
    return build_scenario(data, source="test", base_dir=Path("."))


ADDITIVE = (
    "events_arrived", "events_delivered", "InvocationAttempts", "SuccessfulInvocationAttempts",
    "RetryInvocationAttempts", "InvocationsSentToDlq", "events_dropped", "events_pending",
)  # fmt: skip


def test_every_level_adds_up_to_the_whole_bus():
    s = small_bus()
    summary = run_one(s, 0).summary
    for metric in ADDITIVE:
        by_destination = sum(summary[f"destinations.{d}.{metric}"] for d in ("shared", "alone"))
        by_rule = sum(summary[f"rules.{r}.{metric}"] for r in ("r-dlq", "r-drop", "r-alone"))
        assert by_destination == by_rule == summary[metric], metric
    for metric in ADDITIVE:  # a destination with one rule: the same numbers
        assert summary[f"destinations.alone.{metric}"] == summary[f"rules.r-alone.{metric}"]
    assert summary["rules.r-dlq.InvocationsSentToDlq"] > 0
    assert summary["rules.r-dlq.events_dropped"] == 0
    assert summary["rules.r-drop.events_dropped"] > 0
    assert summary["rules.r-drop.InvocationsSentToDlq"] == 0
    assert summary["fan_out"] == pytest.approx(2.1, rel=0.05)
    assert summary["events_arrived"] == pytest.approx(2.1 * summary["bus_events_arrived"], rel=0.05)
    assert (
        0 < summary["account.throttled_fraction"] < 1
    )  # about 63 first attempts/s, 126/s in the burst, over 60/s
    assert summary["account.peak_rps"] == summary["endpoint_peak_rps"]


def test_no_quota_holds_nothing_and_a_binding_quota_holds_attempts():
    free = run_one(small_bus(quota=None), 0).summary
    tight = run_one(small_bus(quota=40), 0).summary
    assert free["account.throttled_fraction"] == 0
    assert free["destinations.alone.account_throttled_fraction"] == 0
    assert tight["account.throttled_fraction"] > 0.3
    assert (
        tight["destinations.alone.delivery_delay_s.p99"]
        > free["destinations.alone.delivery_delay_s.p99"]
    )


def test_report_has_a_section_and_a_backlog_plot_per_destination(tmp_path):
    s = small_bus()
    result = RunResult(s, run_replications(s, workers=1, records=True), 0.0)
    folder = write_report(result, tmp_path / "report")
    for name in ("shared", "alone"):
        assert (folder / f"backlog-{name}.png").stat().st_size > 1000
    text = (folder / "report.md").read_text()
    assert "### shared" in text and "### alone" in text
    assert "ASSUMPTION (account order" in text
    assert "which partner's deliveries wait" in text
    series = pd.read_csv(folder / "timeseries.csv")
    assert set(series["destination"]) == {"shared", "alone", "all"}
    whole = series[series["destination"] == "all"]
    parts = series[series["destination"] != "all"].groupby(["replication", "time_s"]).sum()
    merged = whole.set_index(["replication", "time_s"])
    for column in ("arrivals", "attempts", "backlog", "dlq"):
        assert (parts[column] == merged[column]).all(), column
    records = pd.read_csv(folder / "attempts.csv")
    assert set(records["rule"]) == {"r-dlq", "r-drop", "r-alone"}
