"""Tables across replications: one row per replication, means with Student-t 95 % CIs, SLO verdicts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sim.results.accumulator import ReplicationResult
from sim.scenario.model import Scenario

P99_SLO_METRIC = "delivery_delay_s.p99_with_pending"
"""The metric `max_p99_delivery_delay` is checked on: pending events count at their age."""
SLO_METRICS = {
    "max_p99_delivery_delay": P99_SLO_METRIC,
    "max_dropped_fraction": "dropped_fraction",
    "max_dlq_fraction": "dlq_fraction",
}
"""Each SLO of a scenario (`slo:` key) and the summary metric it is checked on."""


def summary_frame(results: list[ReplicationResult]) -> pd.DataFrame:
    """One row of summary metrics per replication."""
    return pd.DataFrame([r.summary for r in results]).set_index("replication").sort_index()


def timeseries_frame(results: list[ReplicationResult]) -> pd.DataFrame:
    """The time series of every replication, stacked."""
    return pd.concat([r.timeseries for r in results], ignore_index=True)


def ci_half_width(sd: Any, n: Any, confidence: float = 0.95) -> np.ndarray:
    """Half-width of the Student-t confidence interval of a mean, from the standard deviation
    and the count of its values (elementwise; NaN where fewer than 2 values)."""
    from scipy import special  # stdtrit is scipy.stats.t.ppf's own kernel, without stats' import

    count = np.asarray(n, dtype=float)
    dof = np.where(count > 1, count - 1, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = special.stdtrit(dof, 0.5 + confidence / 2)
        return t * np.asarray(sd, dtype=float) / np.sqrt(count)


def aggregate(summary: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean, standard deviation and t-based confidence interval of each metric across replications."""
    n = summary.notna().sum()
    mean, sd = summary.mean(), summary.std(ddof=1)
    half = pd.Series(ci_half_width(sd, n, confidence), index=summary.columns)
    return pd.DataFrame(
        {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": n}
    )


def slo_verdict(scenario: Scenario, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Check each SLO the scenario sets against the aggregated metrics (mean and CI upper bound)."""
    checks = []
    slo = scenario.slo
    for name, metric in SLO_METRICS.items():
        limit = getattr(slo, name)
        if limit is None:
            continue
        row = table.loc[metric]
        worst = row["ci_high"] if not math.isnan(row["ci_high"]) else row["mean"]
        checks.append(
            {
                "slo": name,
                "metric": metric,
                "limit": limit,
                "mean": row["mean"],
                "ci_high": row["ci_high"],
                "met": bool(not math.isnan(worst) and worst <= limit),
            }
        )
    return checks
