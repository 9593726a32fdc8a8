"""Running replications of a scenario in the model: in this process or on every core.

Replication i always uses the random streams of (seed, i), so results are identical whatever
the number of workers and whichever worker ran which replication.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from joblib import Parallel, delayed

from sim.des import simulate_replication
from sim.results import Accumulator, ReplicationResult
from sim.scenario import Scenario

Progress = Callable[[float], None]
"""Called with the fraction of the whole run done, 0..1."""


def run_one(
    scenario: Scenario, replication: int, records: bool = False, progress: Progress | None = None
) -> ReplicationResult:
    """Simulate one replication and summarize it."""
    sink = Accumulator(scenario, replication, keep_records=records)
    ticks = None if progress is None else (lambda now: progress(now / scenario.horizon))
    simulate_replication(scenario, replication, sink, ticks)
    return sink.finish()


def default_workers() -> int:
    """Every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_replications(
    scenario: Scenario,
    replications: Iterable[int] | None = None,
    *,
    records: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[ReplicationResult]:
    """Run replications (default: all the scenario asks for) on `workers` processes (default: all cores)."""
    indices = list(range(scenario.replications) if replications is None else replications)
    workers = min(workers or default_workers(), len(indices)) or 1
    if workers == 1:
        results = []
        for done, i in enumerate(indices):
            step = None
            if progress is not None:
                step = lambda f, d=done: progress((d + f) / len(indices))  # noqa: E731
            results.append(run_one(scenario, i, records, step))
        return results
    jobs = Parallel(n_jobs=workers, return_as="generator_unordered")(
        delayed(run_one)(scenario, i, records) for i in indices
    )
    results = []
    for result in jobs:
        results.append(result)
        if progress is not None:
            progress(len(results) / len(indices))
    return sorted(results, key=lambda r: r.replication)
