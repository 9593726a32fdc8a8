"""The first-attempt load a bus offers each limit (what `sim check` prints), and `sim check -`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.scenario.loading import build_scenario
from sim.scenario.offered import describe, offered_loads, peak_rate
from tests.support.processes import assert_one_error_line

runner = CliRunner()
ENDPOINT = {"latency": {"kind": "constant", "value": "10ms"}}
BUS: dict[str, Any] = {
    "name": "flash",
    "horizon": "24h",
    "arrivals": [
        {"kind": "diurnal", "mean_per_second": 100, "amplitude": 0.5, "peak_at": "20h"},
        {"kind": "burst", "start": "20h", "duration": "30m", "rate_per_second": 300},
    ],
    "account": {"invocation_limit_per_second": 750},
    "destinations": [
        {"name": "a", "invocation_rate_limit_per_second": 300, "endpoint": ENDPOINT},
        {"name": "b", "invocation_rate_limit_per_second": None, "endpoint": ENDPOINT},
    ],
    "rules": [
        {"name": "r1", "match_fraction": 0.5, "target": "a"},
        {"name": "r2", "match_fraction": 1, "target": "b"},
        {"name": "r3", "match_fraction": 0.25, "target": "b"},
    ],
}


def scenario(**changes: Any):
    data = copy.deepcopy(BUS)
    data.update(changes)
    return build_scenario(data, source="flash.yaml")


def test_peak_is_the_diurnal_peak_plus_the_burst():
    assert peak_rate(scenario()) == pytest.approx(100 * 1.5 + 300)


def test_a_short_burst_between_grid_points_is_not_missed():
    short = scenario(
        arrivals=[
            {"kind": "constant", "rate_per_second": 1},
            {"kind": "burst", "start": 100.25, "duration": 0.5, "rate_per_second": 1000},
        ],
        horizon="1h",
    )
    assert peak_rate(short) == pytest.approx(1001)


def test_offered_loads_are_arrivals_times_each_destinations_match_fractions():
    a, b, account = offered_loads(scenario())
    mean = 100 + 300 * 1800 / 86400  # the diurnal cosine averages out over a whole period
    assert (a.name, b.name, account.name) == ("a", "b", None)
    assert a.mean == pytest.approx(0.5 * mean) and a.peak == pytest.approx(0.5 * 450)
    assert b.mean == pytest.approx(1.25 * mean) and b.peak == pytest.approx(1.25 * 450)
    assert account.peak == pytest.approx(1.75 * 450) and account.limit == 750
    assert not a.over and not b.over  # 225 < 300; b has no limit
    assert account.over  # 787.5 > 750


def test_describe_flags_every_limit_the_peak_exceeds():
    lines = describe(scenario())
    assert lines[0] == "# bus: 2 destinations, 3 rules, 1.75 invocations per event (fan-out)"
    rows = {line.split()[1]: line for line in lines[2:]}
    assert "limit 300/s" in rows["a"] and "over" not in rows["a"]
    assert "limit unlimited" in rows["b"]
    assert "quota 750/s  <- the peak is over the quota: events will wait" in rows["account"]


def test_check_reads_a_bus_from_stdin_and_prints_the_offered_load():
    text = yaml.safe_dump(BUS, sort_keys=False)
    result = runner.invoke(app, ["check", "-"], input=text)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "# valid: <stdin>; about" in out
    assert "# bus: 2 destinations, 3 rules" in out
    resolved = yaml.safe_load(out)  # the comment lines are YAML comments
    assert resolved["name"] == "flash" and resolved["account"]["burst_capacity"] == 750


def test_check_stdin_errors_name_stdin_and_csv_paths_resolve_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bad = runner.invoke(app, ["check", "-"], input="horizon: [1h\n")
    assert bad.exit_code == 2
    assert_one_error_line(bad.stderr, "<stdin>")
    (tmp_path / "trace.csv").write_text("t\n0.5\n1.5\n")
    monkeypatch.chdir(tmp_path)
    single = {
        "horizon": "1m",
        "arrivals": [{"kind": "trace", "path": "trace.csv", "column": "t"}],
        "endpoint": ENDPOINT,
    }
    result = runner.invoke(app, ["check", "-"], input=yaml.safe_dump(single))
    assert result.exit_code == 0, result.output
    assert "name: stdin" in result.stdout and "about 2 arrivals expected" in result.stdout
    assert str(tmp_path / "trace.csv") in result.stdout
