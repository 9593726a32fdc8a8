"""The model commands through typer's CliRunner: exit codes, files written, one-line errors."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from tests.support import ROOT

runner = CliRunner()
SCENARIO = """
name: tiny
horizon: 10m
seed: 5
replications: 3
arrivals: [{kind: constant, rate_per_second: 20}, {kind: burst, start: 2m, duration: 1m, rate_per_second: 80}]
destination: {invocation_rate_limit_per_second: 30}
endpoint:
  latency: {kind: lognormal, median: 50ms, p99: 400ms}
  responses: {200: 0.97, 503: 0.02, 400: 0.01}
dead_letter_queue: true
slo: {max_p99_delivery_delay: 1m, max_dropped_fraction: 0}
"""


def write(tmp_path: Path, text: str = SCENARIO, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
def test_run_writes_every_report_file(tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["run", str(write(tmp_path)), "--out", str(out), "--records", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    expected = {
        "summary.json",
        "timeseries.csv",
        "attempts.csv",
        "scenario.yaml",
        "report.md",
        "backlog.png",
        "throughput.png",
        "delay_cdf.png",
        "dlq.png",
        "attempts_per_event.png",
    }
    assert expected <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replications"] == 3 and len(summary["per_replication"]) == 3
    assert {c["slo"] for c in summary["slo"]} == {"max_p99_delivery_delay", "max_dropped_fraction"}
    attempts = pd.read_csv(out / "attempts.csv")
    assert len(attempts) == sum(r["InvocationAttempts"] for r in summary["per_replication"])
    assert set(attempts["outcome"]) <= {
        "delivered",
        "retry",
        "failed",
        "timeout",
        "connection_error",
        "expired",
    }
    timeseries = pd.read_csv(out / "timeseries.csv")
    assert len(timeseries) == 3 * 10 and timeseries["arrivals"].sum() == sum(
        r["events_arrived"] for r in summary["per_replication"]
    )
    report = (out / "report.md").read_text()
    assert "## SLO verdict" in report and "destination.burst_capacity" in report
    assert (
        yaml.safe_load((out / "scenario.yaml").read_text())["destination"]["burst_capacity"] == 30
    )
    assert "InvocationAttempts" in result.output


@pytest.mark.slow
def test_options_override_the_scenario(tmp_path):
    out = tmp_path / "r"
    result = runner.invoke(
        app,
        [
            "run",
            str(write(tmp_path)),
            "--out",
            str(out),
            "--replications",
            "2",
            "--seed",
            "9",
            "--horizon",
            "5m",
            "--set",
            "endpoint.responses={200: 1.0}",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["replications"], summary["seed"], summary["horizon_s"]) == (2, 9, 300)
    assert summary["metrics"]["InvocationsSentToDlq"]["mean"] == 0


@pytest.mark.slow
def test_same_seed_same_summary_whatever_the_workers(tmp_path):
    path = write(tmp_path)
    runs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert (
            runner.invoke(
                app, ["run", str(path), "--out", str(out), "--workers", workers]
            ).exit_code
            == 0
        )
        runs.append(json.loads((out / "summary.json").read_text())["per_replication"])
    assert runs[0] == runs[1]


def test_check_prints_the_resolved_scenario(tmp_path):
    result = runner.invoke(app, ["check", str(write(tmp_path))])
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.output)
    assert resolved["retry_policy"]["maximum_retry_attempts"] == 185
    assert "about" in result.output and "arrivals expected" in result.output


def test_bad_input_is_one_line_and_exit_2_without_a_report(tmp_path):
    out = tmp_path / "never"
    cases = [
        ([str(tmp_path / "absent.yaml")], "absent.yaml: no such file"),
        (
            [str(write(tmp_path, SCENARIO.replace("seed: 5", "seed: 5\nsead: 6"), "typo.yaml"))],
            "typo.yaml: sead: unknown key",
        ),
        (
            [str(write(tmp_path)), "--set", "retry_policy.maximum_retry_attempts=500"],
            "maximum_retry_attempts",
        ),
        ([str(write(tmp_path)), "--horizon", "forever"], "horizon: 'forever' is not a duration"),
        ([str(write(tmp_path)), "--set", "nonsense"], "expected key.path=value"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["run", *args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: ")
        assert not out.exists()


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "check"):
        assert command in result.output
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


def test_run_refuses_an_out_folder_that_is_not_a_report_before_simulating(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    scenario = ROOT / "scenarios" / "steady.yaml"
    result = runner.invoke(app, ["run", str(scenario), "--out", str(precious)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error: --out: ")
    assert "not a report folder" in result.output and "simulating" not in result.output
    assert [p.name for p in precious.iterdir()] == ["important.txt"]
