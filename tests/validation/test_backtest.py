"""`sim backtest` against metrics a model realization published (no live run; see
test_backtest_loop.py for the live core end to end).

The "observed" files are what `sim core run --metrics` writes, computed from a model
replication's records by the same code (`sim.results.cloudwatch`): per-period counts (zeros left
out) and the latency's Average and p99, labelled `RULE METRIC [STAT]`, newest first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.des import simulate_replication
from sim.records import concat
from sim.results.cloudwatch import CORE_STATS, model_metrics
from sim.scenario.loading import build_scenario
from sim.scenario.metric_data import LATENCY_METRIC, metric_data_document, read_metric_data
from sim.scenario.model import Scenario
from sim.validation.backtest import Layout, observe_metrics, run_points
from sim.validation.compare import Items, calibrate_items
from sim.validation.observe import Collector
from tests.support.processes import one_error_line

runner = CliRunner()
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TRUE = {
    "name": "partner",
    "horizon": 60,
    "seed": 11,
    "arrivals": [{"kind": "constant", "rate_per_second": 25}],
    "destination": {"invocation_rate_limit_per_second": 40, "timeout": 1},
    "endpoint": {
        "latency": {"kind": "lognormal", "median": 0.03, "p99": 0.2},
        "responses": {200: 0.85, 503: 0.1, 400: 0.05},
        "timeout_probability": 0.01,
    },
    "dead_letter_queue": True,
    "sample_every": 5,
}


def scenario(**overrides: Any) -> Scenario:
    return build_scenario({**TRUE, **overrides}, source="test")


def observed_document(truth: Scenario, replication: int, rule: str = "orders") -> dict[str, Any]:
    """The metrics one model realization would publish (as the live core writes them)."""
    sink = Collector()
    simulate_replication(truth, replication, sink)
    edges = np.arange(0, truth.horizon + truth.sample_every, truth.sample_every)
    arrivals = np.concatenate(sink.arrival_times)
    values = model_metrics(concat(sink.chunks), arrivals, edges, CORE_STATS)
    series = []
    for (metric, stat), per_period in values.items():
        keep = np.isfinite(per_period) & ((per_period != 0) | (metric == LATENCY_METRIC))
        label = f"{rule} {metric}" + (f" {stat}" if metric == LATENCY_METRIC else "")
        series.append((label, f"m{len(series)}", T0 + edges[:-1][keep], per_period[keep]))
    return metric_data_document(series)


def observed_file(path: Path, truth: Scenario, replication: int = 10_000) -> Path:
    path.write_text(json.dumps(observed_document(truth, replication), indent=1))
    return path


@pytest.mark.slow
def test_a_correct_model_fails_at_most_about_alpha_of_observed_windows(tmp_path: Path):
    """Arrivals from the scenario: each observed window is exactly one more model draw, so
    the calibrated test FAILs a correct model in about 5 % of them."""
    truth = scenario()
    first = observe_metrics(read_metric_data(observed_file(tmp_path / "0.json", truth, 10_000)))
    layout = Layout(tuple(first.series), 0, first.window)
    (rows,) = run_points([scenario(horizon=first.window.horizon_s)], 100, layout, 2, None)
    calibration = calibrate_items(
        Items(layout.names(), layout.floors(), np.zeros(len(rows[0]), bool), rows)
    )
    fails = 0
    for k in range(30):
        observed = observe_metrics(
            read_metric_data(observed_file(tmp_path / f"{k}.json", truth, 10_000 + k))
        )
        assert observed.window == first.window
        fails += not calibration.test_values(layout.values(observed.series)).passed
    assert fails <= 5  # binomial(30, 5 %): 1.5 expected; 6 or more has probability 0.3 %
    assert len(layout.names()) == 9 * 12 + 7  # 9 series x 12 periods, 7 count totals


@pytest.mark.slow
def test_the_backtest_passes_the_true_model_and_fails_a_halved_rate_limit(tmp_path: Path):
    path = observed_file(
        tmp_path / "observed.json",
        scenario(destination={"invocation_rate_limit_per_second": 20, "timeout": 1}),
    )
    model = tmp_path / "model.yaml"
    model.write_text(
        json.dumps({**TRUE, "destination": {"invocation_rate_limit_per_second": 20, "timeout": 1}})
    )
    args = [
        "backtest",
        str(model),
        "--metrics",
        str(path),
        "--replications",
        "100",
        "--workers",
        "2",
    ]
    right = runner.invoke(app, [*args, "--out", str(tmp_path / "right")])
    assert right.exit_code == 0, right.output
    assert right.stdout.startswith("partner: PASS  T = ")
    report = (tmp_path / "right" / "report.md").read_text()
    assert "**PASS**" in report and (tmp_path / "right" / "overlay.png").stat().st_size > 20_000
    assert (tmp_path / "right" / "observed_matched_events.csv").is_file()
    summary = json.loads((tmp_path / "right" / "backtest.json").read_text())
    assert summary["verdict"] == "PASS" and summary["window"]["periods"] == 12
    halved = runner.invoke(
        app,
        [
            *args,
            "--set",
            "destination.invocation_rate_limit_per_second=10",
            "--out",
            str(tmp_path / "halved"),
        ],
    )
    assert halved.exit_code == 1, halved.output
    assert "partner: FAIL" in halved.output and "InvocationAttempts[" in halved.output


@pytest.mark.slow
def test_fit_tells_which_settings_the_data_pin_down(tmp_path: Path):
    truth = scenario(retry_policy={"backoff": {"base": 1}})
    path = observed_file(tmp_path / "observed.json", truth)
    model = tmp_path / "model.yaml"
    model.write_text(json.dumps(TRUE))
    result = runner.invoke(
        app,
        [
            "backtest",
            str(model),
            "--metrics",
            str(path),
            "--replications",
            "100",
            "--workers",
            "2",
            "--fit",
            "retry_policy.backoff.base=1,8",
            "--fit",
            "destination.burst_capacity=1,40",
            "--out",
            str(tmp_path / "fit"),
        ],
    )
    assert result.exit_code == 0, result.output  # some grid point PASSes
    # No backlog ever forms (25/s under a limit of 40/s): the bucket's size leaves no trace.
    assert "destination.burst_capacity: the data cannot tell apart 1, 40" in result.output
    # Retries 8x later leave far fewer retries in each period and longer delays: ruled out.
    assert "retry_policy.backoff.base: the data favour 1 and rule out 8" in result.output
    assert "fit: best {'retry_policy.backoff.base': 1" in result.output
    summary = json.loads((tmp_path / "fit" / "backtest.json").read_text())
    assert len(summary["fit"]["points"]) == 4 and (tmp_path / "fit" / "fit.png").is_file()
    assert [p["passed"] for p in summary["fit"]["points"]] == [True, True, False, False]


def test_bad_input_is_one_error_line(tmp_path: Path):
    path = observed_file(tmp_path / "observed.json", scenario())
    model = tmp_path / "model.yaml"
    model.write_text(json.dumps(TRUE))
    base = ["backtest", str(model), "--metrics", str(path), "--out", str(tmp_path / "report")]

    def error(*extra: str) -> str:
        return one_error_line(runner.invoke(app, [*base, *extra]))

    assert error("--replications", "50") == "error: --replications: at least 100 (got 50)"
    assert error("--fit", "horizon=1m:2m").startswith(
        "error: --fit: horizon: sets the observed window"
    )
    assert error("--fit", "retry_policy.backoff.base=2:1").startswith("error: --fit: ")
    assert error("--fit", "destination.throttle_order=fifo,sideways").startswith("error: --fit: ")
    assert error("--warm-up", "2h").startswith("error: --warm-up: ")
    assert error("--rule", "other") == f"error: {path}: no series of rule 'other' (orders)"
    assert error("--arrivals", "later").startswith("error: --arrivals: ")
    no_matched = json.loads(path.read_text())
    no_matched["MetricDataResults"] = [
        r for r in no_matched["MetricDataResults"] if "Matched" not in r["Label"]
    ]
    path.write_text(json.dumps(no_matched))
    assert error().startswith(f"error: {path}: no MatchedEvents datapoints of rule 'orders'")
    path.write_text(
        '{"MetricDataResults": [{"Id": "m1", "Label": "MatchedEvents",\n"Timestamps": ["x"], "Values": [1]}]}'
    )
    assert error() == f"error: {path}: line 2: 'x' is not a timestamp"
    off = json.loads(json.dumps(observed_document(scenario(), 10_000)))
    off["MetricDataResults"][2]["Timestamps"][0] = "2026-01-01T00:00:57+00:00"  # was :55
    path.write_text(json.dumps(off, indent=1))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "00:00:57" in text)
    assert error() == (
        f"error: {path}: line {line}: not on the 5 s grid of the window from 2026-01-01T00:00:00+00:00"
    )


def test_series_the_model_cannot_predict_are_left_out_with_a_note(tmp_path: Path):
    document = observed_document(scenario(), 10_000)
    extra = dict(document["MetricDataResults"][0], Id="q", Label="orders MatchedEvents Average")
    document["MetricDataResults"].append(extra)
    document["MetricDataResults"].append(dict(extra, Id="r", Label="orders ThrottledRules"))
    path = tmp_path / "observed.json"
    path.write_text(json.dumps(document))
    observed = observe_metrics(read_metric_data(path))
    assert ("MatchedEvents", "Average") not in observed.series
    assert any("orders MatchedEvents Average left out" in note for note in observed.notes)
    assert len(observed.series) == 9


@pytest.mark.slow
@pytest.mark.parametrize("warm_up", ["10s", "12s"])
def test_a_warm_up_leaves_the_first_periods_out(tmp_path: Path, warm_up: str):
    path = observed_file(tmp_path / "observed.json", scenario())
    model = tmp_path / "model.yaml"
    model.write_text(json.dumps(TRUE))
    result = runner.invoke(
        app,
        [
            "backtest",
            str(model),
            "--metrics",
            str(path),
            "--replications",
            "100",
            "--warm-up",
            warm_up,
            "--workers",
            "1",
            "--out",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code in (0, 1), result.output
    names = [i["name"] for i in json.loads((tmp_path / "w" / "backtest.json").read_text())["items"]]
    skipped = 2 if warm_up == "10s" else 3
    assert not any("T00:00:05" in n for n in names) and len(names) == 9 * (12 - skipped) + 7
