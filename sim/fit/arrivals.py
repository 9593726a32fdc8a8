"""The traffic behind a metrics file, as a `counts` arrival source (with its CSV).

One series of a GetMetricData response or CSV export (`sim.scenario.metric_data`; by default
the rule's `MatchedEvents`) becomes events per period on a regular grid from its first to
its last datapoint, the missing periods written as 0 (CloudWatch leaves out the minutes in
which nothing happened). The scenario's `counts` source replays them as Poisson arrivals at
each period's rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import InputError
from sim.scenario.durations import format_duration
from sim.scenario.metric_data import MetricData, iso, read_metric_data

TIME_COLUMN, COUNT_COLUMN = "timestamp", "events"


@dataclass
class ArrivalsFit:
    """Events per period on a regular grid from `start_at` (epoch s)."""

    source: str
    metric: str
    rule: str | None
    start_at: float
    period_s: float
    counts: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def times(self) -> np.ndarray:
        """Start of each period, epoch seconds."""
        return self.start_at + self.period_s * np.arange(self.counts.size)

    @property
    def window_s(self) -> float:
        return self.period_s * self.counts.size

    def source_entry(self, csv_name: str) -> dict[str, Any]:
        """The `arrivals:` entry reading the CSV written by `write_counts`."""
        return {
            "kind": "counts",
            "path": csv_name,
            "time_column": TIME_COLUMN,
            "count_column": COUNT_COLUMN,
            "bin": format_duration(self.period_s),
        }

    def write_counts(self, path: Path) -> Path:
        """Write the counts CSV (`timestamp,events`, zeros included) that `source_entry` reads."""
        write_counts(self, path)
        return path

    def report_lines(self) -> list[str]:
        rates = self.counts / self.period_s
        rule = f" of rule {self.rule}" if self.rule else ""
        return [
            f"{self.metric}{rule}: {int(self.counts.sum()):,} events in {self.counts.size} "
            f"periods of {format_duration(self.period_s)} ({iso(self.start_at)} to "
            f"{iso(self.start_at + self.window_s)})",
            f"rate: mean {rates.mean():.3g}/s, busiest period {rates.max():.3g}/s, "
            f"{int((self.counts == 0).sum())} periods without events",
            *(f"note: {note}" for note in self.notes),
        ]


def fit_arrivals(
    path: Path,
    metric: str = "MatchedEvents",
    rule: str | None = None,
    period_s: float | None = None,
) -> ArrivalsFit:
    """Read one count series of a metrics file onto its period grid (InputError if it cannot)."""
    try:
        data = read_metric_data(path)
        series = data.select(metric, rule)
    except ValueError as err:
        raise InputError(None, None, str(err)) from None
    if not series.is_count:
        raise InputError(str(path), None, f"{series.describe()} is not a count of events")
    if series.times.size == 0:
        raise InputError(
            str(path), f"line {series.line}", f"series {series.label!r} has no datapoints"
        )
    period = data.period(period_s)
    return ArrivalsFit(
        source=str(path),
        metric=metric,
        rule=series.rule or rule,
        start_at=float(series.times[0]),
        period_s=period,
        counts=on_grid(data, series.times, series.values, series.lines, period),
        notes=list(data.notes),
    )


def on_grid(
    data: MetricData, times: np.ndarray, values: np.ndarray, lines: np.ndarray, period_s: float
) -> np.ndarray:
    """Values on the grid of `period_s` from the first time, 0 where missing; InputError for
    a datapoint off the grid (naming its line)."""
    steps = (times - times[0]) / period_s
    index = np.rint(steps).astype(np.int64)
    off = np.abs(steps - index) > 1e-6
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InputError(
            data.source,
            f"line {lines[i]}",
            f"{iso(times[i])} is not a whole number of periods ({format_duration(period_s)}) after "
            f"the first datapoint ({iso(times[0])}); give the period (--period)",
        )
    counts = np.zeros(int(index[-1]) + 1)
    counts[index] = values
    return counts


def write_counts(fit: ArrivalsFit, path: Path) -> None:
    """The counts CSV: `timestamp,events`, one row per period, zeros included."""
    rows = "".join(f"{iso(t)},{c:g}\n" for t, c in zip(fit.times, fit.counts, strict=True))
    path.write_text(f"{TIME_COLUMN},{COUNT_COLUMN}\n{rows}", encoding="utf-8")


def arrivals_yaml(fit: ArrivalsFit, csv_name: str) -> str:
    """The `arrivals:` entry as YAML, with the window it covers as comments."""
    import yaml

    rule = f", rule {fit.rule}" if fit.rule else ""
    head = [
        f"# sim fit arrivals: {fit.metric}{rule} from {fit.source}",
        f"# {iso(fit.start_at)} to {iso(fit.start_at + fit.window_s)}: horizon "
        f"{format_duration(fit.window_s)}, {int(fit.counts.sum()):,} events",
    ]
    body = yaml.safe_dump(
        {"arrivals": [fit.source_entry(csv_name)]},
        sort_keys=False,
        default_flow_style=None,
        width=100,
    )
    return "\n".join(head) + "\n" + body
