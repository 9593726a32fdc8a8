"""What the core's store knows that its CloudWatch metrics need: each delivery's rule and event.

The attempt records name a delivery by its id; the metrics are per rule (the `RuleName`
dimension) and count matched events, so `sim core run --metrics` reads, after the run, the
rule, the event row and the ingestion time (epoch s) of every delivery it needs from the
SQLite database (read-only, beside the core's own connection). The metrics themselves are
computed by `sim.results.cloudwatch`, from the records, as the backtest computes the model's.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

import numpy as np


class DeliveryRows(NamedTuple):
    """Deliveries as stored: id, event row, rule name, ingestion time (epoch seconds)."""

    id: np.ndarray
    event: np.ndarray
    rule: np.ndarray
    accepted_at: np.ndarray


def delivery_rows(db_path: str | Path, since_epoch: float, first_id: int | None) -> DeliveryRows:
    """Deliveries ingested at or after `since_epoch` (this run's), and those with an id of at
    least `first_id` (the lowest id in this run's records: resumed ones included)."""
    lowest = first_id if first_id is not None else 2**62
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT d.id, d.event, d.rule, e.accepted_at FROM deliveries d"
            " JOIN events e ON e.id = d.event WHERE e.accepted_at >= ? OR d.id >= ?"
            " ORDER BY d.id",
            (since_epoch, lowest),
        ).fetchall()
    if not rows:
        empty = np.empty(0)
        return DeliveryRows(
            empty.astype(np.int64), empty.astype(np.int64), empty.astype(object), empty
        )
    ids, events, rules, accepted = zip(*rows, strict=True)
    return DeliveryRows(
        np.asarray(ids, dtype=np.int64),
        np.asarray(events, dtype=np.int64),
        np.asarray(rules, dtype=object),
        np.asarray(accepted, dtype=float),
    )
