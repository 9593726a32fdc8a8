"""`sim core run --metrics FILE`: the run's CloudWatch metrics, as a GetMetricData JSON response.

The option's sink keeps the core's attempt records while it runs; after the run the rule of
each delivery is read from the core's database (`sim.live.delivery.metrics`) and the metrics
are computed per period and rule by `sim.results.cloudwatch` (the code the backtest uses).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sim.errors import InputError
from sim.records import Sink
from sim.results.cloudwatch import Deliveries, MetricsSink, core_metric_data
from sim.scenario.durations import parse_duration


class CoreMetrics:
    """The `--metrics` file of one `sim core run`, and the sink that collects what it needs."""

    def __init__(self, path: Path, period: str, inner: Sink | None = None) -> None:
        try:
            self.period_s = parse_duration(period)
        except ValueError as err:
            raise InputError(None, "--metrics-period", str(err)) from None
        if not 1.0 <= self.period_s <= 86400.0:
            raise InputError(None, "--metrics-period", "must be between 1s and 1d")
        self.path = path
        self.since_epoch = time.time()  # deliveries ingested from now on are this run's
        self.sink = MetricsSink(inner)

    def write(self, db: Path) -> None:
        """Compute the metrics of the run and write them (atomically) to the file."""
        from sim.live.delivery.metrics import delivery_rows

        records = self.sink.records()
        first = int(records["event_id"].min()) if records["event_id"].size else None
        rows = delivery_rows(db, self.since_epoch, first)
        document = core_metric_data(records, Deliveries(*rows), self.since_epoch, self.period_s)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        partial.replace(self.path)
