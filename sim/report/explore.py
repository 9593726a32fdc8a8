"""`sim.explore(scenario)`: sliders over the settings people argue about, in Jupyter.

Rate limit, burst capacity, burst size, endpoint error rate, latency median and maximum
retries: moving one re-runs the model at a few replications (on the worker processes, reused
from one change to the next) and redraws the backlog, the delivery-delay CDF and the SLO
verdict. The numbers are a quick look, not the answer: `sim run` and `sim size` run the
scenario's full replications.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from sim.analysis.sizing import default_range, mean_arrival_rate
from sim.report.outputs import number
from sim.report.plots import plot_backlog, plot_delay_cdf
from sim.report.run import human_seconds
from sim.results.run import RunResult
from sim.runner.simulate import simulate
from sim.scenario.loading import load_scenario, with_overrides
from sim.scenario.model import (
    BurstArrivals,
    ConstantLatency,
    GammaLatency,
    LognormalLatency,
    Scenario,
)

RATE = "destination.invocation_rate_limit_per_second"
BURST_CAPACITY = "destination.burst_capacity"
RETRIES = "retry_policy.maximum_retry_attempts"


@dataclass
class Knob:
    """One slider: what it is called, the widget, and how its value becomes overrides."""

    label: str
    slider: widgets.Widget
    overrides: Any  # Callable[[float], dict[str, Any]]


def _error_mix(mix: Mapping[int, float], rate: float) -> dict[int, float]:
    """The response mix with errors (non-2xx) at `rate` in all, in their current proportions
    (503 when there are none yet)."""
    errors = {s: p for s, p in mix.items() if not 200 <= int(s) < 300}
    delivered = {s: p for s, p in mix.items() if 200 <= int(s) < 300} or {200: 1.0}
    total_errors, total_ok = sum(errors.values()), sum(delivered.values())
    if not total_errors:
        errors, total_errors = {503: 1.0}, 1.0
    out = {int(s): (1 - rate) * p / total_ok for s, p in delivered.items()}
    for s, p in errors.items():
        out[int(s)] = out.get(int(s), 0.0) + rate * p / total_errors
    return {s: p for s, p in out.items() if p > 0}


def _latency_override(scenario: Scenario, median_s: float) -> dict[str, Any]:
    latency = scenario.endpoint.latency
    if isinstance(latency, LognormalLatency):
        sigma = latency.log_params[1]
        value: dict[str, Any] = {"kind": "lognormal", "mu": math.log(median_s), "sigma": sigma}
    elif isinstance(latency, GammaLatency):
        value = {"kind": "gamma", "mean": median_s, "cv": latency.cv}
    else:
        value = {"kind": "constant", "value": median_s}
    return {"endpoint.latency": value}


def _median_latency(scenario: Scenario) -> float | None:
    latency = scenario.endpoint.latency
    if isinstance(latency, LognormalLatency):
        return math.exp(latency.log_params[0])
    if isinstance(latency, GammaLatency):
        return latency.mean
    if isinstance(latency, ConstantLatency):
        return latency.value
    return None  # empirical: no one number to move


def _slider(
    kind: type, description: str, value: float, low: float, high: float, step: float
) -> Any:
    return kind(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,  # re-run when the slider is let go, not on every pixel
        style={"description_width": "11em"},
        layout=widgets.Layout(width="34em"),
    )


def knobs(scenario: Scenario) -> list[Knob]:
    """The sliders this scenario supports, set to its values."""
    destination = scenario.destination
    low, high = default_range(scenario)
    rate = destination.invocation_rate_limit_per_second or high
    top = max(high, 2 * rate)
    step = max(1.0, round(top / 200))
    found = [
        Knob(
            "rate limit",
            _slider(widgets.FloatSlider, "rate limit /s", rate, 1, top, step),
            lambda v: {RATE: v},
        ),
        Knob(
            "burst capacity",
            _slider(
                widgets.FloatSlider,
                "burst capacity",
                destination.burst,
                1,
                max(10.0, 4 * destination.burst, top),
                max(1.0, step),
            ),
            lambda v: {BURST_CAPACITY: v},
        ),
    ]
    bursts = [i for i, s in enumerate(scenario.arrivals) if isinstance(s, BurstArrivals)]
    if bursts:
        index = bursts[0]
        size = scenario.arrivals[index].rate_per_second  # type: ignore[union-attr]
        found.append(
            Knob(
                "burst size",
                _slider(
                    widgets.FloatSlider,
                    "burst size /s",
                    size,
                    0,
                    max(4 * size, 10 * mean_arrival_rate(scenario)),
                    max(1.0, round(size / 50)),
                ),
                lambda v, i=index: {f"arrivals.{i}.rate_per_second": v},
            )
        )
    mix = scenario.endpoint.responses
    errors = sum(p for s, p in mix.items() if not 200 <= int(s) < 300)
    found.append(
        Knob(
            "endpoint error rate",
            _slider(widgets.FloatSlider, "endpoint error rate", errors, 0, 0.5, 0.001),
            lambda v: {"endpoint.responses": _error_mix(mix, v)},
        )
    )
    median = _median_latency(scenario)
    if median is not None:
        slider = widgets.FloatLogSlider(
            value=median,
            base=10,
            min=-3,
            max=1,
            step=0.05,
            description="latency median s",
            continuous_update=False,
            style={"description_width": "11em"},
            layout=widgets.Layout(width="34em"),
        )
        found.append(Knob("latency median", slider, lambda v: _latency_override(scenario, v)))
    found.append(
        Knob(
            "max retries",
            _slider(
                widgets.IntSlider,
                "max retries",
                scenario.retry_policy.maximum_retry_attempts,
                0,
                185,
                1,
            ),
            lambda v: {RETRIES: int(v)},
        )
    )
    return found


def verdict_html(result: RunResult) -> str:
    """The SLO verdict of a run, one line per objective."""
    n = len(result.replications)
    lines = []
    for check in result.slo:
        show = human_seconds if "delay" in check["slo"] else number
        mark = (
            "<b style='color:green'>met</b>" if check["met"] else "<b style='color:red'>NOT met</b>"
        )
        bound = check["ci_high"] if not math.isnan(check["ci_high"]) else check["mean"]
        lines.append(
            f"SLO {check['slo']} ≤ {show(check['limit'])}: {mark} "
            f"(mean {show(check['mean'])}, upper bound {show(bound)})"
        )
    if not lines:
        lines.append("The scenario sets no SLO (slo:), so there is no verdict.")
    m = result.metrics["mean"]
    lines.append(
        f"<small>{n} replications in {result.wall_s:.1f} s: backlog peak "
        f"{number(m['backlog_peak'])}, p99 delay {human_seconds(m['delivery_delay_s.p99'])}, "
        f"{number(m['InvocationsSentToDlq'])} dead-lettered, {number(m['events_dropped'])} "
        "dropped per replication (a quick look: run `sim run` for the full answer)</small>"
    )
    return "<br>".join(lines)


def _png(result: RunResult) -> bytes:
    fig = Figure(figsize=(12, 3.8))
    backlog, cdf = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    plot_backlog(result, backlog)
    plot_delay_cdf(result, cdf)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


class Explorer:
    """The widget `explore` returns: sliders, the plots and the verdict of the latest run."""

    def __init__(self, scenario: Scenario, replications: int, workers: int | None) -> None:
        self.scenario = scenario
        self.replications = replications
        self.workers = workers
        self.knobs = knobs(scenario)
        self.sliders = {k.label: k.slider for k in self.knobs}
        self.initial = {k.label: k.slider.value for k in self.knobs}
        self.verdict = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.status = widgets.HTML()
        self.result: RunResult | None = None
        self.runs = 0
        for knob in self.knobs:
            knob.slider.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<b>{scenario.name}</b>: what if?"),
                widgets.HBox(
                    [
                        widgets.VBox([k.slider for k in self.knobs[:3]]),
                        widgets.VBox([k.slider for k in self.knobs[3:]]),
                    ]
                ),
                self.status,
                self.verdict,
                self.image,
            ]
        )
        self.update()

    def overrides(self) -> dict[str, Any]:
        """The scenario changes the sliders stand for (only those moved from the start)."""
        changes: dict[str, Any] = {}
        for knob in self.knobs:
            if knob.slider.value != self.initial[knob.label]:
                changes.update(knob.overrides(knob.slider.value))
        return changes

    def update(self) -> RunResult:
        """Re-run the model with the sliders' values and redraw."""
        self.status.value = "<i>simulating…</i>"
        started = time.perf_counter()
        scenario = with_overrides(self.scenario, self.overrides())
        self.result = simulate(scenario, replications=self.replications, workers=self.workers)
        self.runs += 1
        self.image.value = _png(self.result)
        self.verdict.value = verdict_html(self.result)
        self.status.value = f"<small>updated in {time.perf_counter() - started:.1f} s</small>"
        return self.result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def explore(
    scenario: Scenario | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    replications: int = 3,
    horizon: float | str | None = None,
    workers: int | None = None,
) -> Explorer:
    """Sliders for rate limit, burst capacity, burst size, endpoint error rate, latency median
    and maximum retries; each change re-runs `replications` replications and redraws the
    backlog, the delivery-delay CDF and the SLO verdict. Display the returned object in Jupyter;
    its `sliders` (by label), `verdict` and `result` can also be driven from code."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    merged = dict(overrides or {})
    if horizon is not None:
        merged["horizon"] = horizon
    return Explorer(with_overrides(scenario, merged), replications, workers)
