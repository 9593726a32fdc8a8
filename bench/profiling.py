"""Where ref-24h's time goes: a sampling profile (py-spy) or cProfile, and the model's block sizes.

* With `py-spy` on PATH (or `PY_SPY=/path/to/py-spy`), the worker is sampled at 100 Hz without
  slowing it; otherwise cProfile runs in the worker (≈3× slower, shares still indicative).
* Block statistics: how many blocks the destination decided per simulated hour and how many
  attempts each kept, read by wrapping `Lane._commit` in the profiling process only.

Run as a module (`python -m bench.profiling JOB_JSON`) it is the measured child process.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.isolated import ROOT, run_isolated
from bench.report import Figure, Section, table

REF_24H = "scenarios/bench/ref-24h.yaml"
PHASES = [
    (0, "destination: one block (Lane.step)", "Lane.step"),
    (1, "choose block + token times (FifoSelector.select)", "FifoSelector.select"),
    (2, "peek waiting items (FifoQueue.peek)", "FifoQueue.peek"),
    (2, "GCRA token times (selection.token_times)", "selection.token_times"),
    (1, "responses + decisions (Lane.attempt)", "Lane.attempt"),
    (2, "endpoint draws (EndpointModel.draw)", "EndpointModel.draw"),
    (2, "policy.decide", "decide"),
    (2, "policy.backoff_delay", "backoff_delay"),
    (1, "keep prefix, retries, records (Lane._commit)", "Lane._commit"),
    (2, "retry pool insert (RetryPool.add)", "RetryPool.add"),
    (2, "records buffered (Model._push)", "Model._push"),
    (1, "cut point (Block.first_overtaken)", "Block.first_overtaken"),
    (0, "arrivals (Model.source)", "Model.source"),
    (0, "records to the sink (Model._flush)", "Model._flush"),
    (1, "Accumulator.attempts", "Accumulator.attempts"),
    (0, "summary (Accumulator.finish)", "Accumulator.finish"),
]
"""(depth, label, function) rows of the phase table; shares are inclusive of deeper rows."""


def py_spy() -> str | None:
    """The py-spy executable, if one is available."""
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


def inclusive_from_folded(path: Path) -> tuple[Counter[str], int]:
    """Samples per function (inclusive, each function once per stack) from py-spy's raw output."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        names = {re.sub(r" \(.*\)$", "", frame) for frame in stack.split(";")}
        for name in names:
            counts[name] += int(n)
    return counts, total


def inclusive_from_cprofile(path: Path) -> tuple[Counter[str], int]:
    """Cumulative time per function name (ms) from cProfile; the outermost entry of each name."""
    data = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    counts: Counter[str] = Counter()
    for (filename, _, func), (_, _, _, cumtime, _) in data.items():
        name = _qualify(filename, func)
        counts[name] = max(counts[name], int(cumtime * 1000))
    total = max(counts.values(), default=1)
    return counts, total


def _qualify(filename: str, func: str) -> str:
    owners = {
        ("selection.py", "select"): "FifoSelector.select",
        ("selection.py", "token_times"): "selection.token_times",
        ("selection.py", "first_overtaken"): "Block.first_overtaken",
        ("queues.py", "peek"): "FifoQueue.peek",
        ("queues.py", "add"): "RetryPool.add",
        ("model.py", "draw"): "EndpointModel.draw",
        ("accumulator.py", "attempts"): "Accumulator.attempts",
        ("accumulator.py", "finish"): "Accumulator.finish",
    }
    base = Path(filename).name
    if (base, func) in owners:
        return owners[(base, func)]
    if base == "engine.py":
        return f"Model.{func}"
    if base == "lane.py":
        return f"Lane.{func}"
    return func


def profile(use_py_spy: bool | None = None) -> Section:
    """Profile one ref-24h replication and measure its block sizes."""
    spy = py_spy() if use_py_spy is not False else None
    job = {"scenario": REF_24H}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile"
        if spy:
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            subprocess.run(
                [
                    spy,
                    "record",
                    "-r",
                    "100",
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "--",
                    sys.executable,
                    "-m",
                    "bench.worker",
                    json.dumps(job),
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            counts, total = inclusive_from_folded(out)
            tool, unit = "py-spy 100 Hz sampling", "samples"
        else:
            run_isolated({**job, "cprofile": str(out)}, module="bench.profiling")
            counts, total = inclusive_from_cprofile(out)
            tool, unit = "cProfile (deterministic; inflates small calls)", "ms"
    blocks = run_isolated({**job, "blocks": True}, module="bench.profiling")
    no_errors = {"endpoint.responses": {200: 1.0}, "endpoint.timeout_probability": 0.0}
    uncut = [run_isolated({**job, "overrides": no_errors}) for _ in range(2)]
    full = [run_isolated(job) for _ in range(2)]
    section = Section("profile", "Model, ref-24h profile", f"python -m bench profile  ({tool})")
    total = max(total, 1)
    section.tables.append(
        table(
            ["phase", "share of run"],
            [
                ["&nbsp;" * 4 * depth + label, f"{100 * counts[name] / total:.1f} %"]
                for depth, label, name in PHASES
            ],
        )
    )
    skip = (
        "<",
        "_",
        "run",
        "main",
        "simulate_replication",
        "Environment.",
        "Process.",
        "Model.run",
    )
    top = [(n, c) for n, c in counts.most_common(80) if not n.startswith(skip)][:20]
    section.tables.append(
        table(
            ["function (inclusive)", f"{unit}", "share"],
            [[f"`{n}`", c, f"{100 * c / total:.1f} %"] for n, c in top],
        )
    )
    hours = blocks["hours"]
    section.tables.append(
        table(
            [
                "simulated hours",
                "blocks",
                "attempts kept",
                "mean kept per block",
                "blocks cut short",
                "wall (s)",
                "µs / attempt",
            ],
            [
                [
                    h["hours"],
                    f"{h['blocks']:,}",
                    f"{h['kept']:,}",
                    f"{h['mean_kept']:.0f}",
                    f"{100 * h['cut_fraction']:.0f} %",
                    f"{h['wall_s']:.1f}",
                    f"{1e6 * h['wall_s'] / max(h['kept'], 1):.2f}",
                ]
                for h in hours
            ],
        )
    )
    section.figures = [
        Figure(
            "blocks decided",
            f"{blocks['blocks']:,} for {blocks['kept']:,} attempts "
            f"(mean {blocks['kept'] / max(blocks['blocks'], 1):.0f} per block)",
        ),
        Figure(
            "ref-24h CPU, as is vs with no errors (no retries, so blocks are never cut) (s)",
            f"{min(r['sim_cpu_s'] for r in full):.1f} vs {min(r['sim_cpu_s'] for r in uncut):.1f} "
            f"(best of 2; {full[0]['attempts']:,} vs {uncut[0]['attempts']:,} attempts)",
        ),
        Figure(
            "speculative work discarded",
            f"{100 * (1 - blocks['kept'] / max(blocks['proposed'], 1)):.0f} % of proposed items",
        ),
    ]
    section.notes.append("Findings and proposed changes: docs/performance.md.")
    section.data = {"counts": dict(counts.most_common(80)), "total": total, "blocks": blocks}
    return section


def _block_stats(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job's first replication with `Lane._commit` wrapped to log block sizes."""
    from sim.des import engine, lane
    from sim.results.accumulator import Accumulator
    from sim.scenario.loading import load_scenario

    log: list[tuple[float, int, int, float]] = []
    commit = lane.Lane._commit
    last = [time.perf_counter()]

    def logged(self: lane.Lane, block: Any, *rest: Any) -> None:
        commit(self, block, *rest)  # (block, ..., k): the kept prefix length comes last
        now, kept = time.perf_counter(), int(rest[-1])
        at = float(block.items.ready_at[kept - 1])  # simulated time: the last kept item's ready
        log.append((at, int(block.items.size), kept, now - last[0]))
        last[0] = now

    lane.Lane._commit = logged  # type: ignore[method-assign,assignment]
    scenario = load_scenario(job["scenario"], job.get("overrides", {}))
    engine.simulate_replication(scenario, 0, Accumulator(scenario, 0))
    groups: dict[str, list[tuple[float, int, int, float]]] = {}
    for entry in log:
        hour = int(entry[0] // 3600)
        label = (
            "0–2 (steady)"
            if hour < 2
            else "2–10 (burst, backlog)"
            if hour < 10
            else "10–24 (steady)"
        )
        groups.setdefault(label, []).append(entry)
    hours = []
    for label, entries in groups.items():
        kept = sum(e[2] for e in entries)
        hours.append(
            {
                "hours": label,
                "blocks": len(entries),
                "kept": kept,
                "mean_kept": kept / len(entries),
                "cut_fraction": sum(e[2] < e[1] for e in entries) / len(entries),
                "wall_s": sum(e[3] for e in entries),
            }
        )
    return {
        "blocks": len(log),
        "kept": sum(e[2] for e in log),
        "proposed": sum(e[1] for e in log),
        "hours": hours,
    }


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("blocks"):
        result = _block_stats(job)
    else:
        from bench.worker import run_job

        profiler = cProfile.Profile()
        result = profiler.runcall(run_job, job)
        profiler.dump_stats(job["cprofile"])
        result = {k: v for k, v in result.items() if k != "summaries"}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
