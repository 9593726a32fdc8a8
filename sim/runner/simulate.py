"""`simulate`: the library call behind `sim run` and the notebooks — every replication, on all cores."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.runner.replications import Progress, run_replications
from sim.scenario.loading import load_scenario, with_overrides
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from sim.results.run import RunResult


def simulate(
    scenario: Scenario | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    replications: int | None = None,
    seed: int | None = None,
    horizon: float | str | None = None,
    records: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run the model: every replication of the scenario (or `replications`), on all cores.

    `scenario` is a Scenario or a path to a scenario file. The keyword shortcuts override
    the scenario's own `replications`, `seed` and `horizon`. Returns summary and time-series
    tables, with the attempt records when `records=True`.
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    merged = dict(overrides or {})
    merged.update({k: v for k, v in shortcuts.items() if v is not None})
    scenario = with_overrides(scenario, merged)
    started = time.perf_counter()
    results = run_replications(scenario, records=records, workers=workers, progress=progress)
    from sim.results.run import RunResult  # pandas loads while the workers run, not before

    return RunResult(scenario, results, time.perf_counter() - started)
