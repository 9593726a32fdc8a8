"""Model benchmarks: ref-24h wall and memory, the scaling law, and replications on 1 vs 2 workers."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

from bench.baseline import baseline_ref, baseline_tree, short_commit
from bench.isolated import run_isolated
from bench.report import Figure, Section, spread, table
from bench.sweep_speedup import measure

REF_24H = "scenarios/bench/ref-24h.yaml"
RATE_FACTORS = (0.125, 0.25, 0.5, 1.0)
HORIZONS = ("1h", "6h", "24h")
WALL_TARGET_S, RSS_TARGET_MB = 8.0, 400.0
QUIET_BASELINE_WALL_S = 17.4
"""ref-24h simulate wall of the baseline on the quiet machine (RESULTS.md of 2026-11-26)."""
SWEEP_SCENARIO = "scenarios/burst.yaml"
SWEEP_GRID = {"destination.invocation_rate_limit_per_second": [50, 100]}


def ref24h(repeats: int = 3) -> Section:
    """One replication of ref-24h, repeated, alternating with the baseline engine (each run in
    its own process): wall, peak RSS, attempts per second, and the ratio to the baseline."""
    runs, base = [], []
    with baseline_tree() as tree:
        for _ in range(repeats):
            runs.append(run_isolated({"scenario": REF_24H}))
            base.append(run_isolated({"scenario": REF_24H}, root=tree))
    section = ref24h_section([_strip(r) for r in runs], runs[0]["summaries"][0])
    differ = {
        name: pair
        for r in base + runs
        for name, pair in summary_differences(runs[0]["summaries"][0], r["summaries"][0]).items()
    }
    same = not differ
    rounding = all(_within_rounding(a, b) for a, b in differ.values())
    ratio_wall = statistics.median(r["wall_s"] for r in base) / statistics.median(
        r["wall_s"] for r in runs
    )
    ratio_cpu = statistics.median(r["sim_cpu_s"] for r in base) / statistics.median(
        r["sim_cpu_s"] for r in runs
    )
    projected = QUIET_BASELINE_WALL_S / ratio_cpu
    section.figures += [
        Figure(
            f"baseline ({short_commit(baseline_ref())}) simulate wall (s), same runs alternated",
            spread([r["wall_s"] for r in base]),
        ),
        Figure("baseline peak RSS (MB)", spread([r["peak_rss_mb"] for r in base])),
        Figure(
            "speed-up over the baseline: wall (CPU)",
            f"{ratio_wall:.2f}× ({ratio_cpu:.2f}×)",
        ),
        Figure(
            f"projected quiet-machine wall: {QUIET_BASELINE_WALL_S} s (baseline, quiet, "
            "2026-11-26) / CPU speed-up (s)",
            f"{projected:.1f} (from the wall speed-up: {QUIET_BASELINE_WALL_S / ratio_wall:.1f})",
            f"≤ {WALL_TARGET_S:.0f} s",
            projected <= WALL_TARGET_S,
        ),
        Figure(
            "same summary as the baseline (identical predictions)",
            "yes, every metric"
            if same
            else ("only in the last digits (summation order): " if rounding else "NO: ")
            + "; ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in differ.items()),
            f"identical, or within {ROUNDING:g} relative (a sum taken in another order)",
            rounding,
        ),
    ]
    section.notes.append(
        "Speed-up = median baseline / median figure, runs alternated so both see the same load. "
        "The absolute target is for a quiet machine, where this single-threaded run's wall time is "
        "its CPU time (baseline: 17.4 s wall, 17.5 s CPU); the projection divides the baseline's "
        "quiet time by the CPU speed-up, the steadier ratio under load (wall time adds the waits "
        "for a core, which differ from run to run)."
    )
    section.data["baseline_runs"] = [_strip(r) for r in base]
    return section


def ref24h_section(runs: list[dict[str, Any]], summary: dict[str, Any]) -> Section:
    """The ref-24h section from measured runs (also used to re-render saved results)."""
    walls = [r["wall_s"] for r in runs]
    cpus = [r["sim_cpu_s"] for r in runs]
    rss = [r["peak_rss_mb"] for r in runs]
    attempts = runs[0]["attempts"]
    rates = [attempts / w / 1e6 for w in walls]
    section = Section(
        "ref24h",
        "Model, ref-24h, one replication",
        f"python -m bench ref24h  ({REF_24H}, each run in its own process)",
    )
    section.figures = [
        Figure(
            "simulate wall (s)",
            spread(walls),
            f"≤ {WALL_TARGET_S:.0f} s (quiet machine)",
            max(walls) <= WALL_TARGET_S,
        ),
        Figure(
            "peak RSS (MB)", spread(rss), f"≤ {RSS_TARGET_MB:.0f} MB", max(rss) <= RSS_TARGET_MB
        ),
        Figure("attempts simulated per second (M/s)", spread(rates)),
        Figure("simulate CPU time (s)", spread(cpus)),
    ]
    section.tables.append(
        table(
            [
                "run",
                "simulate wall (s)",
                "simulate CPU (s)",
                "process wall (s)",
                "process CPU (s)",
                "peak RSS (MB)",
            ],
            [
                [
                    i + 1,
                    f"{r['wall_s']:.1f}",
                    f"{r['sim_cpu_s']:.1f}",
                    f"{r['process_wall_s']:.1f}",
                    f"{r['cpu_s']:.1f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
                for i, r in enumerate(runs)
            ],
        )
    )
    section.notes.append(
        f"{summary['events_arrived']:,} arrivals, {attempts:,} attempts, backlog peak "
        f"{summary['backlog_peak']:,}, delivered {summary['events_delivered']:,}, "
        f"DLQ {summary['InvocationsSentToDlq']:,}, p99 delay {summary['delivery_delay_s.p99']:.0f} s."
    )
    section.notes.append(
        "Simulate wall = `run_one` (model + streaming summary), imports and scenario loading "
        "excluded; peak RSS = the whole worker process (interpreter and imports included). "
        "CPU time is the less noisy figure on this shared machine: wall time includes waiting "
        "for a core while other processes run."
    )
    section.data = {"runs": runs, "summary": summary}
    return section


ROUNDING = 1e-12
"""Relative difference a float sum may show when its terms are added in another order: the
model sums delays block by block, and the blocks differ from the baseline's."""


def _within_rounding(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= ROUNDING * max(abs(a), abs(b))
    return False


def summary_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Metrics whose values differ (NaN equals NaN)."""
    out = {}
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x != y and not (isinstance(x, float) and isinstance(y, float) and x != x and y != y):
            out[name] = (x, y)
    return out


def scaled_overrides(factor: float, horizon: str) -> dict[str, Any]:
    """`--set` overrides for ref-24h with every arrival rate multiplied by `factor`."""
    data = yaml.safe_load(Path(REF_24H).read_text())
    overrides: dict[str, Any] = {"horizon": horizon}
    for i, source in enumerate(data["arrivals"]):
        overrides[f"arrivals.{i}.rate_per_second"] = source["rate_per_second"] * factor
    return overrides


def scaling(repeats: int = 1) -> Section:
    """ref-24h at 1/8..1× the arrival rates and 1 h, 6 h, 24 h horizons: cost vs attempts, backlog."""
    rows: list[dict[str, Any]] = []
    for horizon in HORIZONS:
        for factor in RATE_FACTORS:
            job = {"scenario": REF_24H, "overrides": scaled_overrides(factor, horizon)}
            runs = [run_isolated(job) for _ in range(repeats)]
            summary = runs[0]["summaries"][0]
            wall = statistics.median(r["wall_s"] for r in runs)
            cpu = statistics.median(r["sim_cpu_s"] for r in runs)
            rows.append(
                {
                    "horizon": horizon,
                    "rate_factor": factor,
                    "arrivals": runs[0]["arrivals"],
                    "attempts": runs[0]["attempts"],
                    "backlog_peak": summary["backlog_peak"],
                    "wall_s": wall,
                    "walls_s": [r["wall_s"] for r in runs],
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                    "cpu_s": cpu,
                    "us_per_attempt": wall / max(runs[0]["attempts"], 1) * 1e6,
                    "cpu_us_per_attempt": cpu / max(runs[0]["attempts"], 1) * 1e6,
                }
            )
            print(
                f"  scaling {horizon} ×{factor}: {rows[-1]['wall_s']:.1f} s, "
                f"{rows[-1]['attempts']:,} attempts, backlog peak {rows[-1]['backlog_peak']:,}"
            )
    return scaling_section(rows)


def scaling_section(rows: list[dict[str, Any]]) -> Section:
    """The scaling section and plot from measured rows (also used to re-render saved results)."""
    from bench.plots import plot_scaling

    png = plot_scaling(rows)
    per_attempt = [r["cpu_us_per_attempt"] for r in rows if r["attempts"] >= 1e6]
    backlogs = [r["backlog_peak"] for r in rows]
    rho = float(
        stats.spearmanr(backlogs, [r["cpu_us_per_attempt"] for r in rows]).statistic  # type: ignore[attr-defined]
    )
    section = Section(
        "scaling",
        "Model, scaling law",
        "python -m bench scaling  (ref-24h with arrival rates × 1/8..1, horizons 1 h, 6 h, 24 h)",
    )
    section.figures = [
        Figure(
            "CPU per attempt, runs with ≥ 1 M attempts (µs)",
            f"{min(per_attempt):.2f}–{max(per_attempt):.2f} "
            f"(×{max(per_attempt) / min(per_attempt):.1f} spread) while the backlog peak spans "
            f"{min(backlogs):,}–{max(backlogs):,}",
            "cost grows with attempts, not backlog",
            None,
        ),
        Figure(
            "rank correlation of CPU per attempt with the backlog peak (Spearman ρ, all runs)",
            f"{rho:+.2f}",
            "≤ 0: per-attempt cost does not grow with the backlog",
            rho <= 0,
        ),
    ]
    section.tables.append(
        table(
            [
                "horizon",
                "rates ×",
                "arrivals",
                "attempts",
                "backlog peak",
                "wall (s)",
                "CPU (s)",
                "wall µs / attempt",
                "CPU µs / attempt",
                "peak RSS (MB)",
            ],
            [
                [
                    r["horizon"],
                    r["rate_factor"],
                    f"{r['arrivals']:,}",
                    f"{r['attempts']:,}",
                    f"{r['backlog_peak']:,}",
                    _walls(r["walls_s"]),
                    f"{r['cpu_s']:.2f}",
                    f"{r['us_per_attempt']:.2f}",
                    f"{r['cpu_us_per_attempt']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    section.tables.append(
        f"![scaling](scaling.png)\n\n`{png.name}`: simulation CPU time against attempts, CPU "
        "per attempt and peak RSS against the backlog peak. Wall per attempt varies more than CPU "
        "per attempt: other processes shared the two cores while these ran."
    )
    section.data = {"rows": rows}
    return section


def replications(n: int = 8, horizon: str = "6h", repeats: int = 2) -> Section:
    """N replications through `run_replications` on 1 and on 2 worker processes."""
    job = {
        "scenario": REF_24H,
        "overrides": {"horizon": horizon},
        "replications": list(range(n)),
        "runner": True,
    }
    walls: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            walls[workers].append(run_isolated({**job, "workers": workers})["wall_s"])
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    speedups = [a / b for a, b in zip(walls[1], walls[2], strict=True)]
    section = Section(
        "replications",
        "Model, replications and sweeps on 1 vs 2 workers",
        f"python -m bench replications  ({n} replications of ref-24h over {horizon}, "
        "`run_replications(workers=1|2)`)",
    )
    section.figures = [
        Figure("wall, 1 worker (s)", spread(walls[1])),
        Figure("wall, 2 workers (s)", spread(walls[2])),
        Figure(
            "speed-up 1 → 2 workers",
            f"{one / two:.2f}× (per repeat: " + ", ".join(f"{s:.2f}×" for s in speedups) + ")",
            "uses every core (ideal 2×)",
            one / two > 1.5,
        ),
    ]
    sweep_walls = measure(
        SWEEP_SCENARIO, SWEEP_GRID, replications=8, repeat=repeats, echo=False
    )  # raises unless all runs give identical numbers
    sweep_one, sweep_two = min(sweep_walls[1]), min(sweep_walls[2])
    section.figures += [
        Figure("sweep wall, 1 worker (s)", spread(sweep_walls[1])),
        Figure("sweep wall, 2 workers (s)", spread(sweep_walls[2])),
        Figure(
            "sweep speed-up 1 → 2 workers (best of each), numbers identical",
            f"{sweep_one / sweep_two:.2f}×",
            "≥ 1.7× (issue 5)",
            sweep_one / sweep_two >= 1.7,
        ),
    ]
    section.notes.append(
        f"Sweep: `sim.sweep({SWEEP_SCENARIO!r}, {SWEEP_GRID}, replications=8, workers=1|2)`, "
        "the two worker counts alternating; every run's per-replication numbers are checked "
        "equal (`bench/sweep_speedup.py` runs it alone, with options)."
    )
    section.notes.append(
        "With 1 worker the sweep runs in this (benchmark) process, with 2 in fresh worker "
        "processes; the in-process run can be slower than in a fresh process (on 2026-11-26, "
        "39–42 s here against 34.8 s from `bench/sweep_speedup.py`), which is how a ratio above "
        "2× comes about. `bench/sweep_speedup.py` alone gave 1.95× that day."
    )
    section.notes.append(
        "The machine's two cores are shared with other engineers' test runs: the 2-worker figure "
        "is the noisiest in this file (see the load average)."
    )
    section.data = {"walls": walls, "sweep_walls": sweep_walls}
    return section


def _walls(walls: list[float]) -> str:
    if len(walls) == 1:
        return f"{walls[0]:.2f}"
    return f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})"


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "summaries"}
