"""The resolution of a validation (`sim validate --power`): which wrong models it would catch.

The live run is observed once. Every deviation of the ladder (`sim.validation.ladder`) is a
model-only change of one setting; its N replications run on the one `Executor`, and the live
run is tested against them with the same calibrated max statistic as the validation itself
(`calibrate(...).test(live)`: T against that model's own limit c). A row's verdict is exactly
what `sim validate --model-set <its overrides>` would print against the same live run. Per
setting, the *resolution* is the smallest deviation, on each side, that FAILs.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.runner.executor import Progress
from sim.scenario.model import Scenario
from sim.validation.compare import ALPHA, calibrate
from sim.validation.ladder import Deviation, current_value, ladder
from sim.validation.observe import Observation, replaying, run_model

COLUMNS = ("setting", "deviation", "T", "limit", "verdict")
"""Columns of power.csv."""


@dataclass
class PowerRow:
    """The live run tested against one deviated model."""

    deviation: Deviation
    statistic: float  # T
    critical: float  # the deviated model's own limit c
    passed: bool  # T ≤ c (finite) and the live core kept to its schedule
    outside: list[str]  # items outside their simultaneous interval

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


@dataclass
class Power:
    """Every deviation's verdict against one live run, and the resolution they give."""

    scenario: str
    replications: int
    baseline: PowerRow  # the model as validated (no deviation)
    rows: list[PowerRow]
    skipped: dict[str, str] = field(default_factory=dict)  # setting -> why it has no rows
    values: dict[str, str] = field(default_factory=dict)  # setting -> the validated model's value
    wall_s: float = 0.0

    def frame(self) -> pd.DataFrame:
        """power.csv: one row per deviation (the validated model first, deviation `none`)."""
        return pd.DataFrame(
            [
                (r.deviation.setting, r.deviation.label, r.statistic, r.critical, r.verdict)
                for r in (self.baseline, *self.rows)
            ],
            columns=list(COLUMNS),
        )

    def settings(self) -> dict[str, list[PowerRow]]:
        """Rows by setting, in ladder order."""
        out: dict[str, list[PowerRow]] = {}
        for row in self.rows:
            out.setdefault(row.deviation.setting, []).append(row)
        return out

    def resolution(self) -> list[Resolution]:
        """Per setting, the smallest deviation on each side that FAILs."""
        return [Resolution.of(setting, rows) for setting, rows in self.settings().items()]

    def document(self) -> dict[str, Any]:
        """The power analysis in validation.json."""
        return {
            "replications": self.replications,
            "wall_s": self.wall_s,
            "skipped": self.skipped,
            "values": self.values,
            "rows": [
                {
                    "setting": r.deviation.setting,
                    "deviation": r.deviation.label,
                    "model_value": r.deviation.value,
                    "model_overrides": r.deviation.overrides,
                    "T": r.statistic,
                    "limit": r.critical,
                    "verdict": r.verdict,
                    "outside": r.outside,
                }
                for r in (self.baseline, *self.rows)
            ],
            "resolution": [r.document() for r in self.resolution()],
        }


@dataclass
class Resolution:
    """What the validation resolves of one setting."""

    setting: str
    tested: list[str]  # every deviation label, in ladder order
    below: str | None  # smallest deviation below the validated value that FAILs
    above: str | None  # ... above it
    caught: list[str]  # categorical changes that FAIL
    passed_beyond: list[str]  # deviations that PASS although a smaller one on their side FAILs
    numeric: bool

    @classmethod
    def of(cls, setting: str, rows: Sequence[PowerRow]) -> Resolution:
        smallest: dict[str, str | None] = {"below": None, "above": None}
        beyond = []
        for side in smallest:
            on_side = sorted((r for r in rows if r.deviation.side == side),
                             key=lambda r: r.deviation.size)  # fmt: skip
            failing = [r for r in on_side if not r.passed]
            if failing:
                smallest[side] = failing[0].deviation.label
                beyond += [r.deviation.label for r in on_side
                           if r.passed and r.deviation.size > failing[0].deviation.size]  # fmt: skip
        return cls(
            setting=setting,
            tested=[r.deviation.label for r in rows],
            below=smallest["below"],
            above=smallest["above"],
            caught=[r.deviation.label for r in rows if r.deviation.side == "" and not r.passed],
            passed_beyond=beyond,
            numeric=any(r.deviation.side for r in rows),
        )

    @property
    def summary(self) -> str:
        """Plain words: the smallest deviation caught on each side, or "not resolved"."""
        if not self.numeric:
            return f"caught: {', '.join(self.caught)}" if self.caught else "not resolved"
        if self.below is None and self.above is None:
            return "not resolved"
        parts = [f"{side} {label}" for side, label in (("below", self.below),
                                                         ("above", self.above)) if label]  # fmt: skip
        missing = "above" if self.above is None else "below" if self.below is None else None
        text = ", ".join(parts)
        return f"{text}; not resolved {missing}" if missing else text

    def document(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "tested": self.tested,
            "smallest_fail_below": self.below,
            "smallest_fail_above": self.above,
            "caught": self.caught,
            "pass_beyond_a_fail": self.passed_beyond,
            "summary": self.summary,
        }


def run_power(
    model_scenario: Scenario,
    live: Observation,
    baseline: PowerRow,
    *,
    replications: int,
    conforms: bool = True,
    arrivals: np.ndarray | None = None,
    workers: int | None = None,
    alpha: float = ALPHA,
    settings: Collection[str] | None = None,
    progress: Progress | None = None,
) -> Power:
    """Test the `live` observation against every deviation of `model_scenario`.

    `arrivals`: the live arrival times every model replication replays (`arrivals: replay`), or
    None for the scenario's own arrivals. `conforms`: whether the live core kept to its
    schedule (if not, every row FAILs, as the validation does). `baseline`: the validated
    model's own row (from the validation). `settings`: only these settings of the ladder
    (a response share by `endpoint.responses` or `endpoint.responses.503`); default all.
    """
    from sim.scenario.loading import with_overrides

    deviations, skipped = ladder(model_scenario, settings)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sim-power-") as folder:
        for k, deviation in enumerate(deviations):
            scenario = with_overrides(model_scenario, deviation.overrides)
            if arrivals is not None:
                scenario = replaying(scenario, arrivals, Path(folder))
            tick = None if progress is None else _part(progress, k, len(deviations))
            model = run_model(scenario, replications, workers=workers, progress=tick)
            comparison = calibrate(model, alpha).test(live)
            passed = conforms and comparison.passed
            row = PowerRow(
                deviation, comparison.statistic, comparison.critical, passed, comparison.failed()
            )
            rows.append(row)
    return Power(
        scenario=model_scenario.name,
        replications=replications,
        baseline=baseline,
        rows=rows,
        skipped=skipped,
        values={d.setting: current_value(model_scenario, d.setting) for d in deviations},
        wall_s=time.perf_counter() - started,
    )


def _part(progress: Progress, k: int, n: int) -> Progress:
    """Progress of the k-th of n equal parts, as a fraction of the whole."""
    return lambda fraction: progress((k + fraction) / n)


def limit_ratio(row: PowerRow) -> float:
    """T / limit (inf if the limit is not finite): above 1 FAILs."""
    return row.statistic / row.critical if math.isfinite(row.critical) else math.inf
