"""`sim.explore`: the sliders move the scenario, a change re-runs the model and redraws."""

import pytest

import sim
from sim.report.explore import _error_mix, knobs
from tests.support.builders import scenario


def small(**overrides):
    data = dict(
        horizon=600,
        replications=5,
        arrivals=[
            {"kind": "constant", "rate_per_second": 5},
            {"kind": "burst", "start": 60, "duration": 30, "rate_per_second": 40},
        ],
        destination={"invocation_rate_limit_per_second": 8},
        endpoint={
            "latency": {"kind": "lognormal", "median": 0.1, "p99": 0.5},
            "responses": {200: 0.98, 429: 0.005, 503: 0.015},
        },
        slo={"max_p99_delivery_delay": 30},
    )
    data.update(overrides)
    return scenario(**data)


def test_every_slider_starts_at_the_scenarios_value():
    s = small()
    values = {k.label: k.slider.value for k in knobs(s)}
    assert values["rate limit"] == 8 and values["burst capacity"] == 8
    assert values["burst size"] == 40 and values["endpoint error rate"] == pytest.approx(0.02)
    assert values["latency median"] == pytest.approx(0.1)
    assert values["max retries"] == 185


def test_error_rate_keeps_the_error_shares():
    mix = _error_mix({200: 0.98, 429: 0.005, 503: 0.015}, 0.1)
    assert mix == pytest.approx({200: 0.9, 429: 0.025, 503: 0.075})
    assert _error_mix({200: 1.0}, 0.2) == pytest.approx({200: 0.8, 503: 0.2})


def test_moving_a_slider_reruns_and_redraws():
    explorer = sim.explore(small(), replications=2, workers=1)
    assert explorer.runs == 1 and explorer.result is not None
    assert "NOT met" in explorer.verdict.value  # 8/s drains a 40/s burst too slowly for 30 s
    first_png = bytes(explorer.image.value)
    first_peak = explorer.result.metrics.loc["backlog_peak", "mean"]
    assert first_png.startswith(b"\x89PNG")
    explorer.sliders["rate limit"].value = 40
    assert explorer.runs == 2 and len(explorer.result.replications) == 2
    assert explorer.result.scenario.destination.invocation_rate_limit_per_second == 40
    assert explorer.result.metrics.loc["backlog_peak", "mean"] < first_peak
    assert "NOT met" not in explorer.verdict.value and "met" in explorer.verdict.value
    assert bytes(explorer.image.value) != first_png
    explorer.sliders["max retries"].value = 0
    explorer.sliders["endpoint error rate"].value = 0.2
    assert explorer.overrides()["retry_policy.maximum_retry_attempts"] == 0
    assert explorer.result.metrics.loc["InvocationsSentToDlq", "mean"] > 0 or (
        explorer.result.metrics.loc["events_dropped", "mean"] > 0
    )


def test_a_scenario_without_a_burst_or_a_latency_median_has_no_such_slider():
    s = small(
        arrivals=[{"kind": "constant", "rate_per_second": 5}],
        endpoint={"latency": {"kind": "constant", "value": 0.05}},
    )
    labels = [k.label for k in knobs(s)]
    assert "burst size" not in labels and "latency median" in labels
