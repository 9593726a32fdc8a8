"""What-if sweeps: a grid of scenario overrides × replications, on all cores or a Dask cluster.

Every grid point runs replications 0..N-1, and replication i draws from the random streams
of (scenario seed, i) whatever the point. So the numbers never depend on the worker count
or backend, and the grid points share their random numbers (*common random numbers*): the
same arrivals and endpoint draws meet every parameter value, so differences between points
come from the parameters, not from sampling noise — comparisons are much sharper than
independent runs would give. (Each point's own CI still reflects its sampling noise.)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from pydantic import BaseModel

from sim.errors import InputError
from sim.results.tables import aggregate, slo_verdict
from sim.runner.executor import Executor, Progress
from sim.runner.replications import run_grid
from sim.scenario.loading import load_scenario, with_overrides
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from distributed import Client

Grid = Mapping[str, Sequence[Any]]
"""Key path (the `--set` syntax) -> the values it takes."""


@dataclass
class SweepResult:
    """A sweep's outcome: per-replication metrics of every grid point, and their aggregates."""

    scenario: Scenario
    parameters: list[str]
    points: list[dict[str, Any]]
    scenarios: list[Scenario]
    runs: pd.DataFrame
    wall_s: float
    backend: str = ""
    aggregated: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.aggregated = self._aggregate()

    def _aggregate(self) -> pd.DataFrame:
        """Tidy: one row per grid point and metric with mean, sd and 95 % CI across replications."""
        frames = []
        for point, runs in self.runs.groupby("point", sort=True):
            table = aggregate(runs[self.metric_names]).rename_axis("metric").reset_index()
            for name in reversed(self.parameters):
                table.insert(0, name, runs[name].iloc[0])
            table.insert(0, "point", point)
            frames.append(table)
        return pd.concat(frames, ignore_index=True)

    @property
    def metric_names(self) -> list[str]:
        """The summary metrics each replication reports."""
        skip = {"point", "replication", *self.parameters}
        return [c for c in self.runs.columns if c not in skip]

    def metric(self, name: str) -> pd.DataFrame:
        """One metric across the grid: the parameters, mean, sd, 95 % CI and n of each point."""
        if name not in self.metric_names:
            raise KeyError(f"unknown metric {name!r}; see SweepResult.metric_names")
        rows = self.aggregated[self.aggregated["metric"] == name]
        return rows.drop(columns="metric").set_index("point")

    def slo(self) -> pd.DataFrame:
        """The SLO verdict of each grid point (CI upper bound against the limit, as in `sim run`)."""
        rows = []
        for point, scenario in enumerate(self.scenarios):
            runs = self.runs[self.runs["point"] == point]
            checks = slo_verdict(scenario, aggregate(runs[self.metric_names]))
            row: dict[str, Any] = {"point": point, **self.point_values(point)}
            for check in checks:
                row[check["slo"]] = check["met"]
            row["all_met"] = all(c["met"] for c in checks) if checks else math.nan
            rows.append(row)
        return pd.DataFrame(rows).set_index("point")

    def point_values(self, point: int) -> dict[str, Any]:
        """The parameter values (as resolved in the scenario) of one grid point."""
        first = self.runs[self.runs["point"] == point].iloc[0]
        return {name: first[name] for name in self.parameters}


MAX_GRID_POINTS = 10_000
"""Most grid points a sweep runs: each is a full simulation (times the replications)."""


def expand_grid(grid: Grid) -> list[dict[str, Any]]:
    """Every combination of the grid's values (first key varies slowest), as override dicts."""
    for key, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise InputError(None, f"grid.{key}", "give a list of values")
        if not values:
            raise InputError(None, f"grid.{key}", "give at least one value")
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_POINTS:
        raise InputError(None, "grid", f"{size:,} grid points (at most {MAX_GRID_POINTS:,})")
    if "replications" in grid:
        raise InputError(
            None, "grid.replications", "every point runs the same replications: set replications"
        )
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


UNSET = object()
"""A point that does not set a parameter (the sensitivity baseline)."""


def resolved_value(scenario: Scenario, key: str, given: Any) -> Any:
    """The value at `key` in the validated scenario (e.g. `5m` -> 300.0); mappings, lists and
    models become a short YAML label so they fit in a table column."""
    node: Any = scenario
    try:
        for part in key.split("."):
            if isinstance(node, BaseModel):
                node = getattr(node, part)
            elif isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node[int(part)] if part.isdigit() and int(part) in node else node[part]
            else:
                raise KeyError(part)
    except (AttributeError, IndexError, KeyError, ValueError):
        node = None if given is UNSET else given
    if node is None:
        if given is UNSET and key == "destination.burst_capacity":  # not swept: the value in use
            return scenario.destination.burst
        return "null"  # swept as null: a category of its own in tables and plots
    if isinstance(node, BaseModel | dict | list):
        return label(node)
    return node


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(mode="json", exclude_none=True))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def label(value: Any) -> str:
    """A compact one-line YAML rendering of a value (`{200: 0.99, 503: 0.01}`)."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def prepare(
    scenario: Scenario | str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    replications: int | None = None,
    seed: int | None = None,
    horizon: float | str | None = None,
) -> Scenario:
    """The base scenario: loaded if a path, with overrides and the keyword shortcuts applied."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    merged = dict(overrides or {})
    shortcuts = {"replications": replications, "seed": seed, "horizon": horizon}
    merged.update({k: v for k, v in shortcuts.items() if v is not None})
    return with_overrides(scenario, merged)


def run_points(
    base: Scenario,
    points: Sequence[Mapping[str, Any]],
    *,
    executor: Executor,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Simulate each point (an override dict on `base`) for the base's replications."""
    if batch_size is not None and batch_size < 1:
        raise InputError(None, "batch_size", f"must be at least 1 (got {batch_size})")
    started = time.perf_counter()
    scenarios = [with_overrides(base, point) for point in points]
    parameters = list(dict.fromkeys(key for point in points for key in point))
    summaries = run_grid(
        executor, scenarios, range(base.replications), batch_size=batch_size, progress=progress
    )
    rows = []
    for index, (point, scenario, reps) in enumerate(zip(points, scenarios, summaries, strict=True)):
        values = {key: resolved_value(scenario, key, point.get(key, UNSET)) for key in parameters}
        rows += [{"point": index, **values, **summary} for summary in reps]
    runs = pd.DataFrame(rows)
    return SweepResult(
        scenario=base,
        parameters=parameters,
        points=[dict(p) for p in points],
        scenarios=scenarios,
        runs=runs,
        wall_s=time.perf_counter() - started,
        backend=executor.backend,
    )


def sweep(
    scenario: Scenario | str | Path,
    grid: Grid,
    overrides: Mapping[str, Any] | None = None,
    *,
    replications: int | None = None,
    seed: int | None = None,
    horizon: float | str | None = None,
    workers: int | None = None,
    dask: str | Client | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every grid point (key path -> values, the `--set` syntax) for every replication.

    Tasks are (grid point, batch of replications) on `workers` local processes (default:
    all cores), or on a Dask cluster with `dask="local"`, a scheduler address or a Client.
    Results are identical whatever the backend and worker count (see the module docstring).
    """
    base = prepare(scenario, overrides, replications=replications, seed=seed, horizon=horizon)
    points = expand_grid(grid)
    with Executor(workers, dask) as executor:
        return run_points(base, points, executor=executor, batch_size=batch_size, progress=progress)
