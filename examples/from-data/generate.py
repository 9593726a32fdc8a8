"""Write the example data of docs/from-data.md: what a production hour leaves behind.

* `metrics.json`: the CloudWatch metrics of rule `orders` (GetMetricData JSON, per minute,
  newest first, empty minutes left out), as `aws cloudwatch get-metric-data` returns them;
* `access.log.gz`: the partner endpoint's nginx access log ("timed combined") of the first
  20,000 requests.

Both come from one model run of `production.yaml` (seed 2026), published the way the live core
publishes its `--metrics` (`sim.results.cloudwatch`). Run from anywhere:
`python examples/from-data/generate.py`.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sim.des import simulate_replication
from sim.records import concat
from sim.results.cloudwatch import CORE_STATS, model_metrics
from sim.scenario.loading import load_scenario
from sim.scenario.metric_data import LATENCY_METRIC, metric_data_document
from sim.validation.observe import Collector

HERE = Path(__file__).resolve().parent
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()  # the hour: 09:00-10:00 UTC
LOG_LINES = 20_000


def main() -> None:
    scenario = load_scenario(HERE / "production.yaml")
    sink = Collector()
    simulate_replication(scenario, 0, sink)
    records = concat(sink.chunks)
    arrivals = np.concatenate(sink.arrival_times)
    edges = np.arange(0.0, scenario.horizon + 60.0, 60.0)
    series = []
    for (metric, stat), values in model_metrics(records, arrivals, edges, CORE_STATS).items():
        keep = np.isfinite(values) & ((values != 0) | (metric == LATENCY_METRIC))
        label = f"orders {metric}" + (f" {stat}" if metric == LATENCY_METRIC else "")
        series.append((label, f"m{len(series)}", START + edges[:-1][keep], values[keep]))
    (HERE / "metrics.json").write_text(json.dumps(metric_data_document(series), indent=1) + "\n")
    write_access_log(records, HERE / "access.log.gz")


def write_access_log(records: dict[str, np.ndarray], path: Path) -> None:
    sent = np.flatnonzero(np.isfinite(records["dispatch_at"]))
    sent = sent[np.argsort(records["complete_at"][sent], kind="stable")][:LOG_LINES]
    lines = []
    for i in sent:
        status = int(records["status"][i])
        code = 499 if status == 0 else status  # a hang: the client closed at its 5 s timeout
        end = START + float(records["complete_at"][i])
        took = float(records["complete_at"][i] - records["dispatch_at"][i])
        stamp = datetime.fromtimestamp(end, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        lines.append(f'52.94.133.{i % 200 + 1} - - [{stamp}] "POST /webhooks/orders HTTP/1.1" {code} '
                     f'2 "-" "Amazon/EventBridge/ApiDestinations" {took:.3f}\n')
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(lines)


if __name__ == "__main__":
    main()
