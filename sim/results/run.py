"""`RunResult`: everything a model run produced, with the tables users look at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.records import to_frame
from sim.results.accumulator import DELAY_BINS, ReplicationResult
from sim.results.tables import aggregate, slo_verdict, summary_frame, timeseries_frame
from sim.scenario.model import Scenario


@dataclass
class RunResult:
    """Everything a model run produced, with the tables users look at."""

    scenario: Scenario
    replications: list[ReplicationResult]
    wall_s: float
    summary: pd.DataFrame = field(init=False)
    metrics: pd.DataFrame = field(init=False)
    timeseries: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summary_frame(self.replications)
        self.metrics = aggregate(self.summary)
        self.timeseries = timeseries_frame(self.replications)

    @property
    def records(self) -> pd.DataFrame | None:
        """Attempt records of every replication (None unless the run kept them)."""
        chunks = [c for r in self.replications for c in r.records]
        if not chunks:
            return None
        names = [rule.name for rule in self.scenario.bus.rules] if self.scenario.is_bus else None
        return to_frame(chunks, names)

    @property
    def destination_timeseries(self) -> pd.DataFrame | None:
        """A bus's time series per destination and replication (None for the single form)."""
        frames = [r.destination_series for r in self.replications]
        if any(f is None for f in frames):
            return None
        return pd.concat(frames, ignore_index=True)

    @property
    def destination_names(self) -> list[str]:
        """The bus's destinations in file order (empty for the single form)."""
        if not self.scenario.is_bus:
            return []
        return [d.name for d in self.scenario.bus.destinations]

    @property
    def slo(self) -> list[dict[str, Any]]:
        return slo_verdict(self.scenario, self.metrics)

    def delay_cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """(delay edges in s, fraction of delivered events delivered within each), all replications."""
        counts = np.sum([r.delay_histogram for r in self.replications], axis=0)
        total = counts.sum()
        cdf = np.cumsum(counts) / total if total else np.zeros(counts.size)
        return DELAY_BINS[1:], cdf

    def attempts_per_event(self) -> np.ndarray:
        """How many ended events needed 0, 1, 2, ... attempts, summed over replications."""
        return np.sum([r.attempts_per_event for r in self.replications], axis=0)
