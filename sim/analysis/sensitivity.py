"""Sensitivity to the ASSUMPTION settings: how much each prediction moves when AWS behaves otherwise.

The settings AWS does not document (burst capacity, throttle order, backoff base, multiplier,
cap and jitter) are varied one at a time over a plausible range around the scenario's values,
every value with the same replications (common random numbers, so the moves are the
settings' own). A conclusion that holds over every value holds whatever AWS does internally.
A value the model cannot run yet (NotImplementedError) is skipped with a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sim.analysis.sweeps import SweepResult, prepare, run_points
from sim.runner.executor import Executor, Progress
from sim.runner.replications import run_one
from sim.scenario.loading import with_overrides
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from distributed import Client

PREDICTIONS = (
    "delivery_delay_s.p50",
    "delivery_delay_s.p99",
    "backlog_peak",
    "time_to_drain_s",
    "dropped_fraction",
    "dlq_fraction",
    "RetryInvocationAttempts",
    "endpoint_peak_rps",
)
PROBE_HORIZON_S = 60.0


def baseline_values(scenario: Scenario) -> dict[str, Any]:
    """The scenario's value of each ASSUMPTION setting (durations in seconds)."""
    backoff = scenario.retry_policy.backoff
    values: dict[str, Any] = {}
    if scenario.destination.invocation_rate_limit_per_second is not None:
        values["destination.burst_capacity"] = scenario.destination.burst
    values["destination.throttle_order"] = scenario.destination.throttle_order
    values["retry_policy.backoff.base"] = backoff.base
    values["retry_policy.backoff.multiplier"] = backoff.multiplier
    values["retry_policy.backoff.cap"] = backoff.cap
    values["retry_policy.backoff.jitter"] = backoff.jitter
    return values


def default_ranges(scenario: Scenario) -> dict[str, list[Any]]:
    """Plausible values of each ASSUMPTION setting, always including the scenario's own."""
    ranges: dict[str, list[Any]] = {}
    rate = scenario.destination.invocation_rate_limit_per_second
    if rate is not None:  # an unlimited destination has no token bucket
        bursts = [1.0, round(rate / 10), rate, 5 * rate]  # a bucket holds at least one token
        ranges["destination.burst_capacity"] = [max(1.0, float(b)) for b in bursts]
    ranges["destination.throttle_order"] = ["fifo", "lifo"]
    ranges["retry_policy.backoff.base"] = [0.2, 1.0, 5.0]
    ranges["retry_policy.backoff.multiplier"] = [1.5, 2.0, 3.0]
    ranges["retry_policy.backoff.cap"] = [60.0, 300.0, 900.0, 3600.0]
    ranges["retry_policy.backoff.jitter"] = ["full", "equal", "none", "decorrelated"]
    baseline = baseline_values(scenario)
    for key, values in ranges.items():
        values.append(baseline[key])
        unique = list(dict.fromkeys(float(v) if isinstance(v, int) else v for v in values))
        ranges[key] = sorted(unique) if all(isinstance(v, float) for v in unique) else unique
    return ranges


@dataclass
class SensitivityResult:
    """The baseline and every one-at-a-time variant, run as one sweep (point 0 = baseline)."""

    scenario: Scenario
    baseline: dict[str, Any]
    settings: dict[str, list[Any]]
    sweep: SweepResult
    points: dict[str, dict[Any, int]]
    skipped: dict[str, str]
    metrics: list[str]

    def table(self) -> pd.DataFrame:
        """Per setting and prediction: baseline mean, lowest and highest mean over the values,
        the values giving them, and the change from baseline in %. Values where the metric is
        undefined in every replication (NaN: e.g. a backlog that never drains, no delivery)
        are listed in `undefined_at` and left out of low/high; a NaN baseline gives NaN %."""
        rows = []
        for setting, by_value in self.points.items():
            for metric in self.metrics:
                means = self.sweep.metric(metric)["mean"]
                values = {value: float(means.loc[point]) for value, point in by_value.items()}
                base = values[self.baseline[setting]]
                defined = {v: m for v, m in values.items() if not math.isnan(m)}
                if not defined:
                    continue
                low_at = min(defined, key=lambda v: defined[v])
                high_at = max(defined, key=lambda v: defined[v])
                low_pct = _change_pct(defined[low_at], base)
                high_pct = _change_pct(defined[high_at], base)
                undefined = [str(v) for v, m in values.items() if math.isnan(m)]
                rows.append(
                    {
                        "setting": setting,
                        "metric": metric,
                        "baseline": base,
                        "low": defined[low_at],
                        "low_at": low_at,
                        "high": defined[high_at],
                        "high_at": high_at,
                        "low_change_pct": low_pct,
                        "high_change_pct": high_pct,
                        "max_change_pct": max(abs(low_pct), abs(high_pct)),
                        "undefined_at": ", ".join(undefined),
                    }
                )
        return pd.DataFrame(rows)

    def conclusions(self) -> pd.DataFrame:
        """Per setting and SLO: the baseline verdict and whether it holds over every value."""
        verdicts = self.sweep.slo()
        slos = [c for c in verdicts.columns if c.startswith("max_")]
        rows = []
        for setting, by_value in self.points.items():
            for slo in slos:
                met = {value: bool(verdicts.loc[point, slo]) for value, point in by_value.items()}
                base = met[self.baseline[setting]]
                flipped = [str(v) for v, m in met.items() if m != base]
                rows.append(
                    {
                        "setting": setting,
                        "slo": slo,
                        "baseline_met": base,
                        "holds": not flipped,
                        "flips_at": ", ".join(flipped),
                    }
                )
        return pd.DataFrame(rows, columns=["setting", "slo", "baseline_met", "holds", "flips_at"])


def _change_pct(value: float, base: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return 100.0 * (value - base) / abs(base)


def _runnable(scenario: Scenario) -> str | None:
    """None when the model can run this scenario, else why not (a tiny trial run)."""
    horizon = min(scenario.horizon, PROBE_HORIZON_S)
    trial = with_overrides(
        scenario, {"horizon": horizon, "sample_every": min(scenario.sample_every, horizon)}
    )
    try:
        run_one(trial, 0)
    except NotImplementedError as err:
        return str(err)
    return None


def sensitivity(
    scenario: Scenario | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    ranges: Mapping[str, Sequence[Any]] | None = None,
    metrics: Sequence[str] = PREDICTIONS,
    replications: int | None = None,
    seed: int | None = None,
    horizon: float | str | None = None,
    workers: int | None = None,
    dask: str | Client | None = None,
    progress: Progress | None = None,
) -> SensitivityResult:
    """Vary each ASSUMPTION setting alone (default ranges: `default_ranges`) and measure the
    predictions; local processes by default, or a Dask cluster as in `sweep`."""
    base = prepare(scenario, overrides, replications=replications, seed=seed, horizon=horizon)
    baseline = baseline_values(base)
    settings = {k: list(v) for k, v in (ranges or default_ranges(base)).items()}
    unknown = set(settings) - set(baseline)
    if unknown:
        raise ValueError(f"not an ASSUMPTION setting: {', '.join(sorted(unknown))}")
    points: list[dict[str, Any]] = [{}]
    index: dict[str, dict[Any, int]] = {}
    skipped: dict[str, str] = {}
    for setting, values in settings.items():
        index[setting] = {}
        for value in dict.fromkeys([*values, baseline[setting]]):
            if value == baseline[setting]:
                index[setting][value] = 0
                continue
            why = _runnable(with_overrides(base, {setting: value}))
            if why is not None:
                skipped[f"{setting}={value}"] = why
                continue
            index[setting][value] = len(points)
            points.append({setting: value})
        if len(index[setting]) == 1:
            del index[setting]
    with Executor(workers, dask) as executor:
        result = run_points(base, points, executor=executor, progress=progress)
    return SensitivityResult(
        scenario=base,
        baseline=baseline,
        settings=settings,
        sweep=result,
        points=index,
        skipped=skipped,
        metrics=[m for m in metrics if m in result.metric_names],
    )
