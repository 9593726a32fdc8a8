"""`sim validate --power`: the deviation ladder, the resolution it gives, and the runs against
the recorded live runs in `data/` (no new live run)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sim.cli import app
from sim.scenario.loading import build_scenario, load_scenario, with_overrides
from sim.validation import pipeline
from sim.validation.ladder import SETTINGS, Deviation, ladder
from sim.validation.power import COLUMNS, PowerRow, Resolution
from sim.validation.recording import load_live
from tests.support.processes import no_live_runs

DATA = Path(__file__).resolve().parent / "data"
TINY, STEADY = DATA / "tiny.npz", DATA / "steady-errors.npz"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "validation"
BASE = "retry_policy.backoff.base"


def labels(deviations: list[Deviation], setting: str) -> list[str]:
    return [d.label for d in deviations if d.setting == setting]


def test_the_ladder_has_every_setting_of_the_issue():
    scenario = load_scenario(SCENARIOS / "steady-errors.yaml")
    deviations, skipped = ladder(scenario)
    assert skipped == {}
    assert labels(deviations, "destination.invocation_rate_limit_per_second") == [
        "-10%", "-5%", "-2%", "+2%", "+5%", "+10%"
    ]  # fmt: skip
    assert labels(deviations, "destination.burst_capacity") == ["x0.5", "-10%", "+10%", "x2"]
    assert labels(deviations, BASE) == ["x0.5", "x2", "x4", "x10"]
    assert labels(deviations, "retry_policy.backoff.cap") == ["x0.5", "x2"]
    assert labels(deviations, "retry_policy.backoff.jitter") == ["equal", "none", "decorrelated"]
    assert labels(deviations, "destination.timeout") == ["-20%", "+20%"]
    assert labels(deviations, "endpoint.latency") == ["-25%", "-10%", "+10%", "+25%"]
    for status in (400, 429, 503):
        assert labels(deviations, f"endpoint.responses.{status}") == [
            "-50%",
            "-25%",
            "+25%",
            "+50%",
        ]
    assert labels(deviations, "endpoint.timeout_probability") == ["-50%", "-25%", "+25%", "+50%"]
    assert labels(deviations, "endpoint.retry_after") == ["ignored"]
    assert labels(deviations, "destination.throttle_order") == ["lifo"]
    assert {d.setting.rsplit(".", 1)[0] if "responses" in d.setting else d.setting
            for d in deviations} == set(SETTINGS)  # fmt: skip


def test_each_deviation_changes_its_setting_alone_and_by_its_step():
    scenario = load_scenario(SCENARIOS / "steady-errors.yaml")
    for d in ladder(scenario)[0]:
        model = with_overrides(scenario, d.overrides)  # every deviation is a valid model
        assert model != scenario, d
        assert model.destination.burst == scenario.destination.burst or d.setting.endswith(
            "burst_capacity"
        )
    by = {(d.setting, d.label): with_overrides(scenario, d.overrides) for d in ladder(scenario)[0]}
    # the rate moves, the bucket (one second of rate when not set) stays as validated
    fast = by[("destination.invocation_rate_limit_per_second", "+5%")].destination
    assert fast.invocation_rate_limit_per_second == pytest.approx(105) and fast.burst == 100
    # a share moves by its step, the difference taken from the 200 share
    mix = by[("endpoint.responses.503", "+50%")].endpoint.responses
    assert mix[503] == pytest.approx(0.06) and mix[200] == pytest.approx(0.88)
    assert sum(mix.values()) == pytest.approx(1) and mix[429] == 0.04
    # latency: the whole distribution scaled (median and p99), shape kept
    slow = by[("endpoint.latency", "+25%")].endpoint.latency
    assert (slow.median, slow.p99) == pytest.approx((0.05, 0.375))
    assert by[(BASE, "x10")].retry_policy.backoff.base == pytest.approx(2.0)
    assert by[("endpoint.retry_after", "ignored")].endpoint.retry_after == {}


def test_settings_a_scenario_does_not_have_are_skipped_with_the_reason(tmp_path):
    samples = tmp_path / "latency.csv"
    samples.write_text("s\n0.01\n0.02\n0.05\n")
    scenario = build_scenario(
        {
            "name": "bare",
            "horizon": 60,
            "arrivals": [{"kind": "constant", "rate_per_second": 5}],
            "destination": {"invocation_rate_limit_per_second": None},
            "endpoint": {"latency": {"kind": "empirical", "path": str(samples), "column": "s"}},
        },
        source="test",
    )
    deviations, skipped = ladder(scenario)
    assert set(skipped) == {
        "destination.invocation_rate_limit_per_second",
        "destination.burst_capacity",
        "destination.throttle_order",
        "endpoint.latency",
        "endpoint.responses",
        "endpoint.timeout_probability",
        "endpoint.retry_after",
    }
    assert "no rate limit" in skipped["destination.burst_capacity"]
    assert "empirical" in skipped["endpoint.latency"]
    assert {d.setting for d in deviations} == {
        BASE, "retry_policy.backoff.cap", "retry_policy.backoff.multiplier",
        "retry_policy.backoff.jitter", "destination.timeout",
    }  # fmt: skip
    only, _ = ladder(load_scenario(SCENARIOS / "steady-errors.yaml"), ["endpoint.responses"])
    assert {d.setting for d in only} == {f"endpoint.responses.{s}" for s in (400, 429, 503)}
    with pytest.raises(ValueError, match="no such setting"):
        ladder(scenario, ["retry_policy.backoff.nonsense"])


def row(setting: str, label: str, factor: float | None, passed: bool) -> PowerRow:
    return PowerRow(Deviation(setting, label, "", {}, factor), 1.0, 3.0, passed, [])


def test_the_resolution_is_the_smallest_failing_step_on_each_side():
    rows = [
        row("b", "x0.5", 0.5, False),
        row("b", "x2", 2.0, True),
        row("b", "x4", 4.0, False),
        row("b", "x10", 10.0, True),  # beyond a FAIL: noted, not hidden
    ]
    res = Resolution.of("b", rows)
    assert (res.below, res.above, res.passed_beyond) == ("x0.5", "x4", ["x10"])
    assert res.summary == "below x0.5, above x4"
    one_side = Resolution.of("r", [row("r", "-5%", 0.95, True), row("r", "+5%", 1.05, False)])
    assert one_side.summary == "above +5%; not resolved below"
    none = Resolution.of("r", [row("r", "-5%", 0.95, True), row("r", "+5%", 1.05, True)])
    assert none.summary == "not resolved" and none.below is none.above is None
    kinds = Resolution.of("j", [row("j", "none", None, False), row("j", "equal", None, True)])
    assert kinds.summary == "caught: none" and not kinds.numeric
    nothing = Resolution.of("j", [row("j", "equal", None, True)])
    assert nothing.summary == "not resolved"


@pytest.fixture
def replay_only(monkeypatch):
    return no_live_runs(monkeypatch, "--power against a recording must not start a live run")


@pytest.mark.slow
def test_power_writes_its_table_and_each_row_is_what_model_set_gives(replay_only, tmp_path):
    out = tmp_path / "tiny"
    args = ["validate", "--replay-live", str(TINY), "--replications", "100", "--power"]
    args += ["--power-setting", BASE, "--power-setting", "endpoint.retry_after"]
    result = replay_only.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "resolution (5 wrong models, 100 replications each)" in result.output
    table = pd.read_csv(out / "power.csv")
    assert list(table.columns) == list(COLUMNS) == ["setting", "deviation", "T", "limit", "verdict"]
    assert table["setting"].tolist() == ["baseline"] + [BASE] * 4 + ["endpoint.retry_after"]
    assert table["deviation"].tolist() == ["none", "x0.5", "x2", "x4", "x10", "ignored"]
    assert set(table["verdict"]) <= {"PASS", "FAIL"}
    assert ((table["T"] > table["limit"]) == (table["verdict"] == "FAIL")).all()
    document = json.loads((out / "validation.json").read_text())
    assert table["T"].iloc[0] == document["statistic"]  # the baseline row is the validation
    report = (out / "report.md").read_text()
    assert "## Resolution" in report and "![resolution](power.png)" in report
    assert (out / "power.png").stat().st_size > 0
    # a row is exactly the validation with that model-only override (same live run, same model)
    recording = load_live(TINY)
    doubled = pipeline.validate(
        recording.live.scenario,
        replications=100,
        replay=recording,
        model_overrides={BASE: 0.4},
    )
    x2 = table[table["deviation"] == "x2"].iloc[0]
    assert (x2["T"], x2["limit"]) == (doubled.comparison.statistic, doubled.comparison.critical)
    assert x2["verdict"] == doubled.verdict


@pytest.mark.slow
def test_power_on_the_ci_scenario_reproduces_the_issues_findings():
    """steady-errors (live: backoff base 200 ms): a model with twice the base PASSes, one with
    ten times the base FAILs, on the retry pool's peak."""
    recording = load_live(STEADY)
    result = pipeline.validate(
        recording.live.scenario,
        replications=recording.recorded["replications"],
        replay=recording,
        power=True,
        power_settings=[BASE],
    )
    assert result.passed and result.power is not None
    rows = {r.deviation.label: r for r in result.power.rows}
    assert rows["x2"].passed and rows["x4"].passed
    assert not rows["x10"].passed and rows["x10"].outside == ["retry_pool_peak"]
    assert math.isfinite(rows["x10"].critical)
    (resolution,) = result.power.resolution()
    assert resolution.summary == "above x10; not resolved below"
