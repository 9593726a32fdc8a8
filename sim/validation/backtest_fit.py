"""`backtest --fit key.path=lo:hi`: which settings explain what was observed, and which the data
cannot tell apart.

The backtest's test is run at every point of a grid of settings (every combination of the
values given per key), each with the same N model replications (the same random streams, so
the surface shows the settings' own effect). A point's p-value is the share of its held-out
model runs at least as far out as the observation. The points that PASS form a 95 %
confidence set (the test inverted): a setting whose every grid value is in some passing
point is one the data cannot tell apart; one whose passing values are a strict subset is
one they can (narrowed to those values). The best point is the one with the largest p-value.

Meant for the ASSUMPTION settings (burst capacity, backoff base, multiplier, cap and jitter,
throttle order), which only such data can speak to; any scenario key may be given, except
those that set the window (`horizon`, `sample_every`) or, with observed arrivals, `arrivals`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from sim.errors import InputError
from sim.scenario.durations import parse_duration
from sim.scenario.loading import with_overrides
from sim.scenario.model import Scenario
from sim.validation.compare import ALPHA, Comparison, Items, calibrate_items

MAX_POINTS = 100
"""Most grid points one backtest runs (each needs N model replications)."""
DEFAULT_STEPS = 5
ASSUMPTIONS = (
    "destination.burst_capacity",
    "destination.throttle_order",
    "retry_policy.backoff.base",
    "retry_policy.backoff.multiplier",
    "retry_policy.backoff.cap",
    "retry_policy.backoff.jitter",
)
"""The settings AWS does not document (design §3), the ones `--fit` is for."""
WINDOW_KEYS = ("horizon", "sample_every")


def parse_fit(spec: str) -> tuple[str, list[Any]]:
    """`key=lo:hi` (5 values), `key=lo:hi:n`, or `key=a,b,c` -> (key, values).

    `lo` and `hi` are numbers or durations (`1s:30s`); the values are evenly spaced, or
    geometrically when hi/lo >= 10. A list is taken as written (YAML values: `fifo,lifo`).
    """
    key, sep, text = spec.partition("=")
    key = key.strip()
    if not sep or not key or not text.strip():
        raise InputError(None, "--fit", f"{spec!r}: expected key.path=lo:hi, lo:hi:n or a,b,c")
    if ":" in text and "," not in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise InputError(None, "--fit", f"{spec!r}: expected lo:hi or lo:hi:n")
        try:
            lo, hi = parse_duration(parts[0]), parse_duration(parts[1])
            steps = int(parts[2]) if len(parts) == 3 else DEFAULT_STEPS
        except ValueError as err:
            raise InputError(None, "--fit", f"{spec!r}: {err}") from None
        if not (lo < hi and 2 <= steps <= MAX_POINTS):
            raise InputError(None, "--fit", f"{spec!r}: needs lo < hi and 2 to {MAX_POINTS} values")
        spaced = (
            np.geomspace(lo, hi, steps) if lo > 0 and hi / lo >= 10 else np.linspace(lo, hi, steps)
        )
        return key, [float(f"{v:.6g}") for v in spaced]
    values = [yaml.safe_load(v.strip()) for v in text.split(",") if v.strip()]
    if len(values) < 2:
        raise InputError(None, "--fit", f"{spec!r}: give at least two values")
    return key, values


def check_grid(
    scenario: Scenario, fit: Mapping[str, Sequence[Any]], arrivals: str
) -> list[dict[str, Any]]:
    """Every combination of the values, each checked to make a valid scenario (InputError)."""
    if not fit:
        return []
    for key in fit:
        top = key.split(".", 1)[0]
        if top in WINDOW_KEYS or (top == "arrivals" and arrivals == "observed"):
            raise InputError(
                None,
                "--fit",
                f"{key}: sets the observed window or its arrivals; it cannot be fitted",
            )
    points = [dict(zip(fit, combo, strict=True)) for combo in itertools.product(*fit.values())]
    if len(points) > MAX_POINTS:
        raise InputError(None, "--fit", f"{len(points)} grid points; at most {MAX_POINTS}")
    for point in points:
        try:
            with_overrides(scenario, point)
        except InputError as err:
            raise InputError(None, "--fit", f"{point}: {err.key or ''}: {err.problem}") from None
    return points


@dataclass
class FitPoint:
    """The test at one grid point."""

    settings: dict[str, Any]
    statistic: float
    critical: float
    p_value: float
    n_failed: int

    @property
    def passed(self) -> bool:
        return math.isfinite(self.critical) and self.statistic <= self.critical


@dataclass
class FitSurface:
    """Every grid point's test, and what the data say about each setting."""

    keys: list[str]
    points: list[FitPoint]

    @property
    def best(self) -> FitPoint:
        return max(self.points, key=lambda p: (p.p_value, -p.statistic))

    def values(self, key: str) -> list[Any]:
        return list(dict.fromkeys(p.settings[key] for p in self.points))

    def accepted(self, key: str) -> list[Any]:
        """The values of `key` in some passing point (the 95 % confidence set's projection)."""
        return list(dict.fromkeys(p.settings[key] for p in self.points if p.passed))

    def conclusions(self) -> list[str]:
        """One sentence per setting: what the data can and cannot tell apart."""
        out = []
        for key in self.keys:
            values, accepted = self.values(key), self.accepted(key)
            note = "" if key in ASSUMPTIONS else " (not an ASSUMPTION setting)"
            if not accepted:
                out.append(f"{key}{note}: no value of the grid explains the data")
            elif len(accepted) == len(values):
                out.append(f"{key}{note}: the data cannot tell apart {_listing(values)}")
            else:
                rejected = [v for v in values if v not in accepted]
                out.append(
                    f"{key}{note}: the data favour {_listing(accepted)} and rule out {_listing(rejected)}"
                )
        return out


def _listing(values: Sequence[Any]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def p_value(comparison: Comparison) -> float:
    """Share of held-out model runs at least as far out as the observation (counting it)."""
    held = comparison.held_out
    return float((1 + np.sum(held >= comparison.statistic)) / (held.size + 1))


def fit_surface(
    grid: list[dict[str, Any]],
    rows: Sequence[np.ndarray],
    names: list[str],
    floors: np.ndarray,
    observed: np.ndarray,
    alpha: float = ALPHA,
) -> FitSurface:
    """Test the observation at every grid point, from each point's model item values."""
    points = []
    for settings, values in zip(grid, rows, strict=True):
        items = Items(names, floors, np.zeros(len(names), dtype=bool), values)
        comparison = calibrate_items(items, alpha).test_values(observed)
        points.append(
            FitPoint(
                settings,
                comparison.statistic,
                comparison.critical,
                p_value(comparison),
                len(comparison.failed()),
            )
        )
    return FitSurface(list(grid[0]), points)
