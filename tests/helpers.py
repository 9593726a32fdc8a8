"""Small builders shared by the model tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.records import concat
from sim.scenario.loading import build_scenario
from sim.scenario.model import Scenario


def scenario(**overrides: Any) -> Scenario:
    """A tiny valid scenario; keyword arguments replace top-level keys."""
    data: dict[str, Any] = {
        "name": "t",
        "horizon": 60,
        "seed": 3,
        "replications": 2,
        "arrivals": [{"kind": "constant", "rate_per_second": 5}],
        "destination": {"invocation_rate_limit_per_second": 10},
        "endpoint": {"latency": {"kind": "constant", "value": 0}},
    }
    data.update(overrides)
    return build_scenario(data, source="test", base_dir=Path("."))


def trace_scenario(tmp_path: Path, times: list[float], **overrides: Any) -> Scenario:
    """A scenario replaying exactly `times` (seconds) from a CSV trace."""
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s\n" + "\n".join(repr(float(t)) for t in times) + "\n")
    arrivals = [{"kind": "trace", "path": str(path), "column": "arrival_s"}]
    return scenario(arrivals=arrivals, **overrides)


class ListSink:
    """Collects what an engine emits."""

    def __init__(self) -> None:
        self.arrival_times: list[np.ndarray] = []
        self.chunks: list[dict[str, np.ndarray]] = []

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.arrival_times.append(times)

    def attempts(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunks.append(chunk)

    def rows(self) -> dict[str, np.ndarray]:
        """All attempt rows, ordered by event then attempt."""
        merged = concat(self.chunks)
        order = np.lexsort((merged["attempt"], merged["event_id"]))
        return {name: column[order] for name, column in merged.items()}
