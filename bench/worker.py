"""One measured simulation, run in its own process: `python -m bench.worker JOB_JSON`.

A job names the engine (`model` or `baseline`), a scenario file, `--set`-style overrides, the
replications and the worker count. The worker times the simulation alone (loading and imports
excluded) and prints one JSON line, `RESULT {...}`, with the wall time and each replication's
summary; the parent reads its peak RSS from the kernel (`bench.isolated`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from sim.results.accumulator import Accumulator, ReplicationResult
from sim.runner.replications import run_replications
from sim.scenario.loading import load_scenario
from sim.scenario.model import Scenario


def run_one_by_one(
    scenario: Scenario, replications: list[int], engine: str
) -> tuple[list[ReplicationResult], list[float], list[float]]:
    """Replications one after another in this process, each timed: (results, walls, CPU s)."""
    from sim.des import simulate_replication as model
    from sim.des.reference import simulate_replication as baseline

    simulate = baseline if engine == "baseline" else model
    results, walls, cpus = [], [], []
    for i in replications:
        started, cpu_started = time.perf_counter(), time.process_time()
        sink = Accumulator(scenario, i)
        simulate(scenario, i, sink)
        results.append(sink.finish())
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return results, walls, cpus


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job and return its measured figures."""
    scenario = load_scenario(job["scenario"], job.get("overrides", {}))
    replications = list(job.get("replications", [0]))
    engine, workers = job.get("engine", "model"), job.get("workers", 1)
    started, cpu_started = time.perf_counter(), time.process_time()
    if engine == "model" and (workers > 1 or job.get("runner", False)):
        results = run_replications(scenario, replications, workers=workers)
        walls: list[float] = []
        cpus: list[float] = []
    else:
        results, walls, cpus = run_one_by_one(scenario, replications, engine)
    wall_s = time.perf_counter() - started
    sim_cpu_s = time.process_time() - cpu_started  # this process only (not worker processes)
    summaries = [_plain(r.summary) for r in results]
    return {
        "wall_s": wall_s,
        "sim_cpu_s": sim_cpu_s,
        "replication_walls_s": walls,
        "replication_cpu_s": cpus,
        "attempts": sum(s["InvocationAttempts"] for s in summaries),
        "arrivals": sum(s["events_arrived"] for s in summaries),
        "summaries": summaries,
    }


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in summary.items()}


def main() -> None:
    job = json.loads(sys.argv[1])
    result = run_job(job)
    print("RESULT " + json.dumps(result, allow_nan=True), flush=True)


if __name__ == "__main__":
    main()
