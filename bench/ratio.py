"""The model against the straightforward baseline (`sim/des/reference.py`) on ref-1h: speed and agreement.

* Speed: wall per replication of each engine, each in its own process, plus a steady-state
  variant (ref-1h without its burst), the model's least favourable case.
* Agreement, two ways: on the *same* seeds both engines consume the same random streams in the
  same order, so their summaries must be identical; on *independent* seeds, every summary metric
  of the baseline must agree with the model's within the replications' 95 % CIs.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from scipy import stats

from bench.isolated import run_isolated
from bench.report import Figure, Section, spread, table

REF_1H = "scenarios/bench/ref-1h.yaml"
RATIO_TARGET = 20.0
METRICS = (
    "events_arrived",
    "InvocationAttempts",
    "SuccessfulInvocationAttempts",
    "RetryInvocationAttempts",
    "events_delivered",
    "InvocationsSentToDlq",
    "events_pending",
    "backlog_peak",
    "backlog_at_end",
    "retry_pool_peak",
    "delivery_delay_s.p50",
    "delivery_delay_s.p90",
    "delivery_delay_s.p99",
    "throttled_fraction",
    "endpoint_peak_rps",
)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, half


def compare(model: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric: both means and CIs, Welch's p-value, and whether the two CIs overlap."""
    rows = []
    for name in METRICS:
        a = [float(s[name]) for s in model]
        b = [float(s[name]) for s in baseline]
        (ma, ha), (mb, hb) = mean_ci(a), mean_ci(b)
        same = statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0
        p = 1.0 if same and ma == mb else float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        rows.append(
            {
                "metric": name,
                "model": (ma, ha),
                "baseline": (mb, hb),
                "p": p,
                "agree": abs(ma - mb) <= ha + hb or (same and ma == mb),
            }
        )
    return rows


def identical(model: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """How many (replication, metric) pairs are equal on the same seeds, and which differ."""
    equal, differ = 0, []
    for m, b in zip(model, baseline, strict=True):
        for name in METRICS:
            x, y = float(m[name]), float(b[name])
            if x == y or (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-9 * max(1.0, abs(x)):
                equal += 1
            else:
                differ.append(f"replication {m['replication']} {name}: model {x:g}, baseline {y:g}")
    return equal, differ


def ratio(model_replications: int = 10, same_seed: int = 3, independent: int = 5) -> Section:
    """Run both engines on ref-1h and report speed ratio, exact and statistical agreement."""
    model = run_isolated({"scenario": REF_1H, "replications": list(range(model_replications))})
    base_same = run_isolated(
        {"engine": "baseline", "scenario": REF_1H, "replications": list(range(same_seed))}
    )
    base_indep = run_isolated(
        {
            "engine": "baseline",
            "scenario": REF_1H,
            "overrides": {"seed": 99_991},
            "replications": list(range(independent)),
        }
    )
    steady = {"arrivals.1.rate_per_second": 0}
    model_steady = [run_isolated({"scenario": REF_1H, "overrides": steady}) for _ in range(3)]
    base_steady = run_isolated({"engine": "baseline", "scenario": REF_1H, "overrides": steady})

    model_walls = model["replication_walls_s"]
    base_walls = base_same["replication_walls_s"] + base_indep["replication_walls_s"]
    model_cpus = model["replication_cpu_s"]
    base_cpus = base_same["replication_cpu_s"] + base_indep["replication_cpu_s"]
    speedup = statistics.median(base_walls) / statistics.median(model_walls)
    cpu_speedup = statistics.median(base_cpus) / statistics.median(model_cpus)
    steady_model = statistics.median(r["sim_cpu_s"] for r in model_steady)
    steady_speedup = base_steady["sim_cpu_s"] / steady_model
    equal, differ = identical(model["summaries"][:same_seed], base_same["summaries"])
    rows = compare(model["summaries"], base_indep["summaries"])
    agree = all(r["agree"] for r in rows)
    attempts = statistics.fmean(s["InvocationAttempts"] for s in model["summaries"])

    section = Section(
        "ratio",
        "Model vs one-process-per-event baseline (ref-1h)",
        f"python -m bench ratio  ({REF_1H}; baseline = sim/des/reference.py)",
    )
    section.figures = [
        Figure("model per replication, wall (s)", spread(model_walls)),
        Figure("model per replication, CPU (s)", spread(model_cpus)),
        Figure("baseline per replication, wall (s)", spread(base_walls)),
        Figure("baseline per replication, CPU (s)", spread(base_cpus)),
        Figure(
            "speed-up, ref-1h: CPU time (wall time)",
            f"{cpu_speedup:.0f}× ({speedup:.0f}×)",
            f"≥ {RATIO_TARGET:.0f}×",
            min(speedup, cpu_speedup) >= RATIO_TARGET,
        ),
        Figure(
            "speed-up, ref-1h without its burst (steady state, model's worst case)",
            f"{steady_speedup:.0f}× (CPU {base_steady['sim_cpu_s']:.1f} s vs {steady_model:.2f} s)",
        ),
        Figure(
            "same seeds: identical summaries",
            f"{equal} of {equal + len(differ)} (replication, metric) pairs equal",
            "all equal",
            not differ,
        ),
        Figure(
            f"independent seeds ({model_replications} model vs {independent} baseline "
            "replications): metrics agreeing within 95 % CIs",
            f"{sum(r['agree'] for r in rows)} of {len(rows)}",
            "all",
            agree,
        ),
        Figure(
            "peak RSS, model vs baseline (MB)",
            f"{model['peak_rss_mb']:.0f} vs {max(base_same['peak_rss_mb'], base_indep['peak_rss_mb']):.0f}",
        ),
    ]
    section.tables.append(
        table(
            ["metric", "model mean ± 95 % CI", "baseline mean ± 95 % CI", "Welch p", "agree"],
            [
                [
                    r["metric"],
                    _ci(r["model"]),
                    _ci(r["baseline"]),
                    f"{r['p']:.2f}",
                    "yes" if r["agree"] else "**no**",
                ]
                for r in rows
            ],
        )
    )
    section.notes += differ[:10]
    section.notes.append(
        f"≈{attempts:,.0f} attempts and ≈{model['summaries'][0]['backlog_peak']:,} events of "
        "backlog per replication. The baseline runs each waiting event as a SimPy process and "
        "calls `sim.policy`, `EndpointModel` and the GCRA bucket with scalars per attempt, as the "
        "live core does; its profile is in docs/performance.md."
    )
    section.data = {
        "model_walls": model_walls,
        "baseline_walls": base_walls,
        "model_cpus": model_cpus,
        "baseline_cpus": base_cpus,
        "steady_cpu": {"model": steady_model, "baseline": base_steady["sim_cpu_s"]},
        "comparison": rows,
    }
    return section


def _ci(value: tuple[float, float]) -> str:
    mean, half = value
    return f"{mean:,.4g} ± {half:,.2g}" if not math.isnan(half) else f"{mean:,.4g}"
