"""Golden summaries: a few small scenarios whose model summaries are committed and compared exactly.

Same seed, same numbers: a refactor or a speed-up that changes any metric of any replication
shows up here. `python -m tests.golden.golden` rewrites the expected files — only do that for a
change that is meant to change the numbers, and say why in the commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SCENARIOS = sorted(HERE.glob("*.yaml"))
TIMESERIES = (
    "backlog",
    "retry_pool",
    "in_flight",
    "arrivals",
    "attempts",
    "successes",
    "retries",
    "dlq",
    "dropped",
)


def observe(path: Path) -> dict[str, Any]:
    """Per replication: every summary metric and the totals of the time-series columns."""
    from sim import simulate

    result = simulate(path, workers=1)
    runs = []
    for replication in result.replications:
        frame = replication.timeseries
        runs.append(
            {
                "summary": {k: _plain(v) for k, v in replication.summary.items()},
                "timeseries_totals": {c: _plain(frame[c].sum()) for c in TIMESERIES},
                "timeseries_rows": len(frame),
            }
        )
    return {"scenario": path.name, "replications": runs}


def expected_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def main() -> None:
    for path in SCENARIOS:
        expected_path(path).write_text(json.dumps(observe(path), indent=1) + "\n")
        print(f"wrote {expected_path(path).name}")


if __name__ == "__main__":
    main()
