"""Benchmark: wall time of the same sweep on 1 worker and on 2 (or N) local worker processes.

    .venv/bin/python bench/sweep_speedup.py [--scenario scenarios/burst.yaml] [--workers 2]
        [--vary destination.invocation_rate_limit_per_second=50,100] [--replications 8] [--repeat 1]

Runs the sweep alternately on 1 worker (in this process) and on N worker processes, `repeat`
times each, checks that every run gives identical numbers (per grid point and replication)
and prints the best wall time of each and their ratio. A benchmark, not a test: other work on
the machine makes the timing noisy, so re-run (or raise --repeat) when the figure looks off.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import pandas as pd

import sim
from sim.cli.analysis import parse_vary


def timed_sweep(
    scenario: str, grid: dict, replications: int, horizon: str | None, workers: int
) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    result = sim.sweep(scenario, grid, replications=replications, horizon=horizon, workers=workers)
    return time.perf_counter() - started, result.runs


def measure(
    scenario: str,
    grid: dict,
    replications: int,
    horizon: str | None = None,
    workers: int = 2,
    repeat: int = 1,
    echo: bool = True,
) -> dict[int, list[float]]:
    """Wall times of the sweep on 1 and on `workers` workers, alternately, `repeat` times each;
    raises AssertionError unless every run gives identical numbers."""
    times: dict[int, list[float]] = {1: [], workers: []}
    reference: pd.DataFrame | None = None
    for round_ in range(repeat):
        for n in (1, workers):
            wall, runs = timed_sweep(scenario, grid, replications, horizon, n)
            times[n].append(wall)
            if echo:
                print(f"  round {round_ + 1}: {n} worker(s): {wall:7.2f} s")
            if reference is None:
                reference = runs
            else:
                pd.testing.assert_frame_equal(runs, reference, check_exact=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="scenarios/burst.yaml")
    parser.add_argument(
        "--vary", action="append", default=None, help="key.path=v1,v2 (default: rate limit 50,100)"
    )
    parser.add_argument("--replications", type=int, default=8)
    parser.add_argument("--horizon", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    grid = dict(
        parse_vary(v) for v in args.vary or ["destination.invocation_rate_limit_per_second=50,100"]
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n_tasks = math.prod(len(values) for values in grid.values()) * args.replications
    print(
        f"sweep of {args.scenario}: {grid} × {args.replications} replications = {n_tasks} "
        f"replications; {cores} cores; load average {os.getloadavg()[0]:.2f}"
    )
    times = measure(args.scenario, grid, args.replications, args.horizon, args.workers, args.repeat)
    best_one, best_many = min(times[1]), min(times[args.workers])
    print(f"identical numbers across all {2 * args.repeat} runs: yes")
    print(
        f"best 1 worker: {best_one:.2f} s; best {args.workers} workers: {best_many:.2f} s; "
        f"speed-up {best_one / best_many:.2f}x"
    )


if __name__ == "__main__":
    main()
