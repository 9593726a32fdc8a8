"""`sim fit arrivals`: a metrics file's MatchedEvents -> an `arrivals:` entry of kind counts + CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.scenario.loading import build_scenario
from tests.support.processes import one_error_line

runner = CliRunner()


def result_of(label: str, seconds: list[int], values: list[float], id_: str) -> dict[str, Any]:
    pairs = sorted(zip(seconds, values, strict=True), reverse=True)  # newest first, as AWS
    return {
        "Id": id_,
        "Label": label,
        "StatusCode": "Complete",
        "Timestamps": [f"2026-03-01T10:{s // 60:02d}:{s % 60:02d}Z" for s, _ in pairs],
        "Values": [v for _, v in pairs],
    }


def metrics_file(path: Path, *results: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"MetricDataResults": list(results), "Messages": []}, indent=1))
    return path


def test_missing_minutes_are_written_as_zero_and_the_entry_loads(tmp_path: Path):
    path = metrics_file(
        tmp_path / "metrics.json",
        result_of("orders MatchedEvents", [0, 60, 240, 300], [120, 60, 30, 600], "m1"),
        result_of("orders InvocationAttempts", [0, 60], [1, 1], "m2"),
    )
    out = tmp_path / "arrivals.yaml"
    result = runner.invoke(app, ["fit", "arrivals", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "MatchedEvents of rule orders: 810 events in 6 periods of 1m" in result.output
    assert "busiest period 10/s, 2 periods without events" in result.output
    rows = (tmp_path / "arrivals-counts.csv").read_text().splitlines()
    assert rows == [
        "timestamp,events",
        "2026-03-01T10:00:00+00:00,120",
        "2026-03-01T10:01:00+00:00,60",
        "2026-03-01T10:02:00+00:00,0",
        "2026-03-01T10:03:00+00:00,0",
        "2026-03-01T10:04:00+00:00,30",
        "2026-03-01T10:05:00+00:00,600",
    ]
    text = out.read_text()
    assert "horizon 6m" in text and (tmp_path / "arrivals.png").is_file()
    entry = yaml.safe_load(text)["arrivals"]
    data = {
        "name": "a",
        "horizon": "6m",
        "arrivals": entry,
        "endpoint": {"latency": {"kind": "constant", "value": "1ms"}},
    }
    fitted = build_scenario(data, source="a.yaml", base_dir=tmp_path).arrivals[0]
    # the same rates as reading the JSON directly with the `counts` kind
    direct = {**data, "arrivals": [{"kind": "counts", "path": "metrics.json", "rule": "orders"}]}
    same = build_scenario(direct, source="b.yaml", base_dir=tmp_path).arrivals[0]
    assert np.array_equal(fitted.bins[1], [2, 1, 0, 0, 0.5, 10])
    assert np.array_equal(
        np.repeat(same.bins[1], (np.diff(same.bins[0]) / 60).astype(int)), fitted.bins[1]
    )


def test_a_csv_export_another_metric_and_a_given_period(tmp_path: Path, monkeypatch: Any):
    monkeypatch.chdir(tmp_path)  # without --out, the CSV goes to ./counts.csv
    path = tmp_path / "export.csv"
    path.write_text("time,InvocationAttempts\n2026-03-01T10:00:00Z,30\n2026-03-01T10:10:00Z,60\n")
    result = runner.invoke(
        app, ["fit", "arrivals", str(path), "--metric", "InvocationAttempts", "--period", "5m"]
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["arrivals"][0]["bin"] == "5m"
    assert (Path("counts.csv").read_text().splitlines()[1:]) == [
        "2026-03-01T10:00:00+00:00,30",
        "2026-03-01T10:05:00+00:00,0",
        "2026-03-01T10:10:00+00:00,60",
    ]


def test_bad_metrics_are_one_error_line_with_the_line(tmp_path: Path):
    two_rules = metrics_file(
        tmp_path / "two.json",
        result_of("a MatchedEvents", [0, 60], [1, 2], "m1"),
        result_of("b MatchedEvents", [0, 90], [1, 2], "m2"),
    )
    line = one_error_line(
        runner.invoke(app, ["fit", "arrivals", str(two_rules), "--out", str(tmp_path / "x.yaml")])
    )
    assert line == f"error: {two_rules}: series of several rules (a, b); choose one (--rule)"
    off_grid = one_error_line(
        runner.invoke(
            app,
            ["fit", "arrivals", str(two_rules), "--rule", "b", "--out", str(tmp_path / "x.yaml")],
        )
    )
    assert (
        off_grid.startswith(f"error: {two_rules}: line ")
        and "is not a whole number of periods (1m)" in off_grid
    )
    missing = one_error_line(
        runner.invoke(app, ["fit", "arrivals", str(two_rules), "--metric", "Typo", "--rule", "a"])
    )
    assert "no series of Typo of rule 'a' (series: " in missing
    broken = tmp_path / "broken.json"
    broken.write_text('{"MetricDataResults": [\n  {"Id": "m1",\n  "Label": }]}')
    assert one_error_line(runner.invoke(app, ["fit", "arrivals", str(broken)])).startswith(
        f"error: {broken}: line 3: invalid JSON"
    )
