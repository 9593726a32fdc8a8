"""`sim validate` without live runs: what it refuses before the live run, how it reports a core
that broke its schedule, and how one scenario's error is reported without losing the others."""

import copy
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.validation import pipeline
from sim.validation.compare import calibrate
from sim.validation.overhead import Conformance
from sim.validation.pipeline import check_model_overrides
from sim.validation.report import verdict_table
from sim.validation.result import Validation
from tests.support import ROOT
from tests.support.builders import synthetic
from tests.support.processes import no_live_runs, one_error_line

SCENARIOS = ROOT / "scenarios" / "validation"
STEADY, MAX_AGE = SCENARIOS / "steady-errors.yaml", SCENARIOS / "max-age.yaml"
CONFORMS = Conformance(0.005, 100, 0, 0.0, 0, 0.0, 0, 0.0)
TOO_FAST = Conformance(0.005, 100, 40, 2.5, 0, 0.0, 0, 0.0)


@pytest.fixture
def no_live(monkeypatch):
    return no_live_runs(monkeypatch, "no live run on bad input")


def test_lifo_scenarios_are_refused_before_the_live_run(no_live):
    args = ["validate", str(STEADY), "--set", "destination.throttle_order=lifo"]
    line = one_error_line(no_live.invoke(app, args))
    assert line.startswith(f"error: {STEADY}: destination.throttle_order: ")


@pytest.mark.parametrize(
    "override", ["horizon=30", "sample_every=2", "arrivals=[]", "arrivals[0].rate_per_second=9"]
)
def test_model_only_overrides_of_the_item_layout_are_refused_before_the_live_run(no_live, override):
    line = one_error_line(no_live.invoke(app, ["validate", str(STEADY), "--model-set", override]))
    assert line.startswith("error: --model-set: ")


def test_model_only_arrivals_are_allowed_with_model_arrivals():
    check_model_overrides({"arrivals[0].rate_per_second": 9}, "model")
    with pytest.raises(InputError):
        check_model_overrides({"horizon": 9}, "model")


def validation(conformance: Conformance, name: str = "steady-errors") -> Validation:
    """A Validation of a synthetic comparison that passes, with the given conformance."""
    calibration = calibrate(synthetic(100, {}))
    comparison = calibration.test(synthetic(1, {}, seed=9)[0])
    assert comparison.passed
    figures = {
        "dispatch_lag_ms": {"p50": 1.0, "p99": 2.0},
        "client_excess_ms": {"p50": 1.0, "p99": 3.0},
    }
    stub = SimpleNamespace()
    return Validation(
        scenario=SimpleNamespace(name=name),  # type: ignore[arg-type]
        model_scenario=stub,  # type: ignore[arg-type]
        model_overrides={},
        arrivals="replay",
        live=stub,  # type: ignore[arg-type]
        overhead=SimpleNamespace(figures=lambda: figures),  # type: ignore[arg-type]
        live_raw=stub,  # type: ignore[arg-type]
        live_corrected=stub,  # type: ignore[arg-type]
        model=[],
        comparison=comparison,
        comparison_raw=comparison,
        model_wall_s=0.0,
        conformance=conformance,
    )


def test_a_core_ahead_of_its_schedule_fails_whatever_t_is(monkeypatch):
    """Corrected T passes, but the core dispatched ahead of the bucket: FAIL, reason shown."""
    results = {"steady-errors": validation(TOO_FAST)}
    monkeypatch.setattr(pipeline, "validate", lambda scenario, **_: results[scenario.name])
    result = CliRunner().invoke(app, ["validate", str(STEADY)])
    assert result.exit_code == 1, result.output
    assert "steady-errors: FAIL" in result.output
    assert "ahead of the token bucket: 40 of 100" in result.output
    assert validation(CONFORMS).passed and not results["steady-errors"].passed


def test_an_error_in_one_scenario_is_reported_and_the_others_still_run(monkeypatch):
    def validate(scenario, **_):
        if scenario.name == "steady-errors":
            raise RuntimeError("the endpoint\nwent away")
        return validation(CONFORMS, scenario.name)

    monkeypatch.setattr(pipeline, "validate", validate)
    result = CliRunner().invoke(app, ["validate", str(STEADY), str(MAX_AGE)])
    assert result.exit_code == 3, result.output
    assert "steady-errors: ERROR  RuntimeError: the endpoint went away\n" in result.output
    assert "max-age: PASS" in result.output
    assert "1/2 scenarios PASS, 1 errored" in result.output


def test_bins_outside_are_noted_inside_the_verdict_cell():
    calibration = calibrate(synthetic(100, {}))
    live = copy.deepcopy(synthetic(1, {}, seed=9)[0])
    live.series["backlog"][:2] = 1e6
    comparison = calibration.test(live)
    table = verdict_table(SimpleNamespace(comparison=comparison, comparison_raw=comparison))  # type: ignore[arg-type]
    row = next(line for line in table.splitlines() if line.startswith("| backlog: worst"))
    assert row.endswith("**FAIL**, 2 bins outside |")
    assert row.count("|") == table.splitlines()[0].count("|")


def test_an_out_folder_that_is_not_a_report_is_refused_before_the_live_run(no_live, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    line = one_error_line(no_live.invoke(app, ["validate", str(STEADY), "--out", str(precious)]))
    assert line.startswith("error: --out: ") and "not a report folder" in line
    assert [p.name for p in precious.iterdir()] == ["important.txt"]
