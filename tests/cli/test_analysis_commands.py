"""`sim sweep`, `sim size` and `sim sensitivity` through typer's CliRunner: files, exit codes,
one-line errors."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.cli.analysis import parse_vary
from sim.errors import InputError

runner = CliRunner()
SCENARIO = """
name: tiny
horizon: 5m
seed: 5
replications: 2
arrivals: [{kind: constant, rate_per_second: 20}, {kind: burst, start: 1m, duration: 30s, rate_per_second: 80}]
destination: {invocation_rate_limit_per_second: 30}
endpoint:
  latency: {kind: lognormal, median: 50ms, p99: 400ms}
  responses: {200: 0.98, 503: 0.02}
dead_letter_queue: true
slo: {max_p99_delivery_delay: 1m, max_dropped_fraction: 0}
"""
RATE = "destination.invocation_rate_limit_per_second"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "tiny.yaml"
    file.write_text(SCENARIO)
    return file


def test_parse_vary():
    assert parse_vary("a.b=1,2.5,x") == ("a.b", [1, 2.5, "x"])
    assert parse_vary("rate=50:80:10") == ("rate", [50, 60, 70, 80])
    assert parse_vary("d=0.5:1:0.25") == ("d", [0.5, 0.75, 1.0])
    assert parse_vary("cap=1m, 5m") == ("cap", ["1m", "5m"])
    assert parse_vary("endpoint.responses={200: 1.0},{200: 0.9, 503: 0.1}") == (
        "endpoint.responses",
        [{200: 1.0}, {200: 0.9, 503: 0.1}],
    )
    for bad in ("novalue", "=1,2", "a=", "a=5:1:1", "a=[1"):
        with pytest.raises(InputError):
            parse_vary(bad)


def test_sweep_writes_csvs_plots_and_report(path: Path, tmp_path: Path):
    out = tmp_path / "sweep"
    result = runner.invoke(
        app,
        [
            "sweep",
            str(path),
            "--vary",
            f"{RATE}=25,40",
            "--vary",
            "destination.burst_capacity=1,30",
            "--workers",
            "2",
            "--metric",
            "delivery_delay_s.p99",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {
        "runs.csv",
        "aggregated.csv",
        "slo.csv",
        "report.md",
        "delivery_delay_s.p99.png",
        "delivery_delay_s.p99-heatmap.png",
    } <= names
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 * 2 and set(runs["replication"]) == {0, 1}
    assert "4 points × 2 replications" in result.output


def test_sweep_default_folder_is_named_after_the_scenario(path: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "sweep",
            str(path),
            "--vary",
            f"{RATE}=30",
            "--workers",
            "1",
            "--horizon",
            "2m",
            "--replications",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "tiny-sweep" / "runs.csv").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vary", "destination.nope=1,2"], "destination.nope: unknown key"),
        (["--vary", "novalue"], "expected key.path=v1,v2"),
        (
            ["--vary", f"{RATE}=10", "--dask", "not an address"],
            "--dask: expected 'local' or a scheduler",
        ),
        (["--vary", f"{RATE}=-5"], RATE),
        (["--vary", f"{RATE}=1..2:3:1"], "bad range '1..2:3:1'"),
        (["--vary", f"{RATE}=20", "--vary", f"{RATE}=30"], "given twice"),
        (["--vary", "replications=2,4"], "--vary: replications: every point runs the same"),
        (["--vary", f"{RATE}=20", "--batch-size", "-1"], "--batch-size: must be at least 1"),
        (["--vary", f"{RATE}=20", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--vary", f"{RATE}=1:1000000000:1"], "at most 10,000"),
        (
            ["--vary", f"{RATE}=1:200:1", "--vary", "destination.burst_capacity=1:100:1"],
            "20,000 grid points (at most 10,000)",
        ),
    ],
)
def test_sweep_bad_input_is_one_line_and_exit_2(path: Path, tmp_path: Path, args, message):
    result = runner.invoke(app, ["sweep", str(path), *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_size_exits_1_and_names_the_binding_slo_when_no_rate_meets(path: Path, tmp_path: Path):
    out = tmp_path / "size"
    result = runner.invoke(
        app,
        [
            "size",
            str(path),
            "--slo",
            "max_p99_delivery_delay=1s",
            "--min",
            "20",
            "--max",
            "40",
            "--step",
            "10",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    assert (
        "No rate limit in [30, 40]" in result.output and "max_p99_delivery_delay" in result.output
    )
    assert (out / "size.json").exists() and (out / "size.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "0"], "--step: must be positive"),
        (["--max-overload", "-1"], "--max-overload: must be in [0, 1)"),
        (["--max", "25"], "at or below the mean arrival rate"),
    ],
)
def test_size_bad_options_are_one_line_and_exit_2(path: Path, args, message):
    result = runner.invoke(app, ["size", str(path), *args, "--workers", "1"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_size_bad_slo_name_is_exit_2(path: Path):
    result = runner.invoke(app, ["size", str(path), "--slo", "p99=1s", "--workers", "1"])
    assert result.exit_code == 2 and "slo.p99: unknown key" in result.output


def test_sensitivity_writes_its_folder(path: Path, tmp_path: Path):
    out = tmp_path / "sens"
    result = runner.invoke(
        app, ["sensitivity", str(path), "--horizon", "3m", "--workers", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert {"runs.csv", "sensitivity.csv", "conclusions.csv", "tornado.png", "report.md"} <= {
        p.name for p in out.iterdir()
    }
    report = (out / "report.md").read_text()
    assert "destination.throttle_order" in report and "Do the SLO verdicts hold?" in report


def test_every_analysis_command_has_help():
    for command in ("sweep", "size", "sensitivity"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--dask" in result.output and "--workers" in result.output


def test_errors_in_analysis_overrides_name_the_scenario_file(path: Path):
    result = runner.invoke(app, ["size", str(path), "--slo", "p99=1s", "--workers", "1"])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: {path}: slo.p99: unknown key")
