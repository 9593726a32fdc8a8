"""`python -m bench [NAME ...] [--quick]`: run benchmarks, print figures, update bench/RESULTS.md.

Names: ref24h, sim_run, sim_size, profile, scaling, ratio, replications, live, durability
(default: all, in that order). ref24h, sim_run and sim_size give the figures of issue 14's
"Done means".
`--quick` repeats nothing (one run per figure) — for trying changes, not for RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench import model_bench, profiling, questions, ratio
from bench.report import ORDER, Section, print_section, save


def benchmarks(quick: bool) -> dict[str, Callable[[], Section]]:
    """Each benchmark by name, with its repeat counts."""
    repeats = 1 if quick else 3

    def live() -> Section:
        from bench import live_bench

        return live_bench.live(duration_s=20.0 if quick else 60.0, sweep_s=10.0 if quick else 20.0)

    def durability() -> Section:
        from bench import durability_bench

        return durability_bench.durability(repeats=repeats, seconds=2.0 if quick else 5.0)

    return {
        "ref24h": lambda: model_bench.ref24h(repeats=repeats),
        "sim_run": lambda: questions.sim_run(repeats=1 if quick else 3),
        "sim_size": lambda: questions.sim_size(grid=not quick),
        "profile": profiling.profile,
        "scaling": lambda: model_bench.scaling(repeats=1 if quick else 2),
        "ratio": lambda: ratio.ratio(independent=3 if quick else 5),
        "replications": lambda: model_bench.replications(repeats=1 if quick else 2),
        "live": live,
        "durability": durability,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    args = parser.parse_args()
    table = benchmarks(args.quick)
    unknown = [n for n in args.names if n not in table]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(ORDER)}")
    for name in args.names or ORDER:
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        section = table[name]()
        print_section(section)
        print(f"  ({time.perf_counter() - started:.0f} s)")
        save(section)
    print("\nwrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
