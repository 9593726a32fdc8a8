"""Replications of the model: one into an `Accumulator`, all of a scenario, or a grid of scenarios.

Replication i always uses the random streams of (seed, i), so results are identical whatever
the number of workers and whichever worker ran which replication.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sim.des import simulate_replication
from sim.des.engine import unsupported
from sim.runner.executor import Executor, Progress
from sim.scenario.model import Scenario

if TYPE_CHECKING:
    from sim.results.accumulator import ReplicationResult

Summaries = list[list[dict[str, Any]]]
"""Per scenario, the summary dict of each replication, in replication order."""


def run_one(
    scenario: Scenario, replication: int, records: bool = False, progress: Progress | None = None
) -> ReplicationResult:
    """Simulate one replication and summarize it; `progress` gets the fraction simulated."""
    from sim.results.bus import accumulator_for  # pandas: loaded where replications run

    sink = accumulator_for(scenario, replication, keep_records=records)
    ticks = None if progress is None else (lambda now: progress(now / scenario.horizon))
    simulate_replication(scenario, replication, sink, ticks)
    return sink.finish()


def run_replications(
    scenario: Scenario,
    replications: Iterable[int] | None = None,
    *,
    records: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[ReplicationResult]:
    """Run replications (default: all the scenario asks for) on `workers` processes (default: all cores)."""
    why = unsupported(scenario)
    if why is not None:  # one clear error, before any worker
        raise why
    indices = list(range(scenario.replications) if replications is None else replications)
    executor = Executor(workers)
    if executor.workers == 1 or len(indices) == 1:  # in this process: progress within replications
        results = []
        for done, i in enumerate(indices):
            step = None
            if progress is not None:
                step = lambda f, d=done: progress((d + f) / len(indices))  # noqa: E731
            results.append(run_one(scenario, i, records, step))
        return results
    return executor.gather(run_one, [(scenario, i, records) for i in indices], progress)


def run_batch(scenario: Scenario, replications: Sequence[int]) -> list[dict[str, Any]]:
    """One sweep task: simulate the given replications of a scenario; their summary metrics."""
    return [run_one(scenario, i).summary for i in replications]


def batch_size_for(n_scenarios: int, n_replications: int, workers: int) -> int:
    """Replications per task: about four tasks per worker, so uneven tasks still balance."""
    target_tasks = 4 * max(1, workers)
    size = math.ceil(n_scenarios * n_replications / target_tasks)
    return max(1, min(n_replications, size))


def run_grid(
    executor: Executor,
    scenarios: Sequence[Scenario],
    replications: Sequence[int],
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> Summaries:
    """Every replication of every scenario, in batches on `executor`; summaries per scenario,
    in replication order."""
    replications = list(replications)
    size = batch_size or batch_size_for(len(scenarios), len(replications), executor.parallelism)
    tasks = [
        (s, replications[start : start + size])
        for s in range(len(scenarios))
        for start in range(0, len(replications), size)
    ]
    out: list[dict[int, dict[str, Any]]] = [{} for _ in scenarios]
    total, done = len(scenarios) * len(replications), 0
    calls = [(scenarios[s], batch) for s, batch in tasks]
    for task, summaries in executor.map(run_batch, calls):
        for summary in summaries:
            out[tasks[task][0]][summary["replication"]] = summary
        done += len(summaries)
        if progress is not None:
            progress(done / total)
    return [[by_rep[i] for i in replications] for by_rep in out]
