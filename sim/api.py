"""The library API behind the CLI and the notebooks: load, override, simulate."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.loading import build_scenario, load_scenario, set_path
from sim.results import RunResult
from sim.runner import Progress, run_replications
from sim.scenario import Scenario


def with_overrides(scenario: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """A copy of the scenario with `key.path` values replaced (the `--set` syntax), re-validated."""
    if not overrides:
        return scenario
    data = scenario.model_dump()
    for key, value in overrides.items():
        set_path(data, key, value, source=scenario.source)
    return build_scenario(data, source=scenario.source)


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
    return RunResult(scenario, results, time.perf_counter() - started)
