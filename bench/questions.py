"""The questions users ask, end to end through the CLI: `sim run` and `sim size` on burst.yaml.

Each command runs in a fresh process (imports, worker start-up, the model, the summary, plots
and report included), alternating with the same command of the baseline code (see
`bench.baseline`) so both see the same load; the ratio of the two is the steadier figure on a
shared machine. `sim size` also runs with `--grid` (every rate of the lattice, every
replication): the recommendation must be the same to within the step.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baseline import ROOT, baseline_ref, baseline_tree, scratch, short_commit
from bench.report import Figure, Section, spread, table

SCENARIO = "scenarios/burst.yaml"
RUN_TARGET_S, SIZE_TARGET_S = 8.0, 40.0
QUIET_BASELINE_RUN_S, QUIET_BASELINE_SIZE_S = 25.0, 240.0
"""The issue's figures for the baseline on the quiet 2-core machine (about 25 s and 4 min)."""


def timed_cli(args: list[str], root: Path) -> tuple[float, str]:
    """Wall time and output of `python -m sim ARGS` run from `root` (its `sim` package)."""
    env = dict(os.environ, PYTHONPATH=str(root), COLUMNS="200")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sim", *args], cwd=root, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"sim {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return wall, done.stdout


def sim_run(repeats: int = 2) -> Section:
    """`sim run scenarios/burst.yaml` (10 replications, every output written), vs the baseline."""
    walls: list[float] = []
    base: list[float] = []
    same = True
    with baseline_tree() as tree, scratch() as tmp:
        for i in range(repeats):
            out, base_out = Path(tmp) / f"run-{i}", Path(tmp) / f"base-{i}"
            walls.append(timed_cli(["run", SCENARIO, "--out", str(out)], ROOT)[0])
            base.append(timed_cli(["run", SCENARIO, "--out", str(base_out)], tree)[0])
            files = {p.name for p in out.iterdir()}
            mine = json.loads((out / "summary.json").read_text())["metrics"]
            theirs = json.loads((base_out / "summary.json").read_text())["metrics"]
            same = same and _close(mine, theirs) and files == {p.name for p in base_out.iterdir()}
    ratio = statistics.median(base) / statistics.median(walls)
    projected = QUIET_BASELINE_RUN_S / ratio
    section = Section(
        "sim_run",
        "sim run scenarios/burst.yaml (10 replications, all outputs)",
        f"python -m bench sim_run  (the CLI in a fresh process, alternating with the baseline "
        f"{short_commit(baseline_ref())})",
    )
    section.figures = [
        Figure(
            "wall (s)",
            spread(walls),
            f"≤ {RUN_TARGET_S:.0f} s (quiet machine)",
            max(walls) <= RUN_TARGET_S,
        ),
        Figure("baseline wall, same runs alternated (s)", spread(base)),
        Figure("speed-up over the baseline", f"{ratio:.2f}×"),
        Figure(
            f"projected quiet-machine wall: {QUIET_BASELINE_RUN_S:.0f} s (baseline, issue 14) / "
            "speed-up (s)",
            f"{projected:.1f}",
            f"≤ {RUN_TARGET_S:.0f} s",
            projected <= RUN_TARGET_S,
        ),
        Figure("same metrics and files as the baseline", "yes" if same else "NO", "same", same),
    ]
    section.notes.append(
        "Wall = the whole command: imports, worker start-up, 10 replications of a day, summary, "
        "time series, five plots and report.md. Metrics compared to 1e-9 relative (the mean delay "
        "is a float sum whose order follows the engine's blocks)."
    )
    section.data = {"walls": walls, "baseline_walls": base}
    return section


def sim_size(grid: bool = True) -> Section:
    """`sim size scenarios/burst.yaml` (default options) vs the baseline and vs `--grid`."""
    with baseline_tree() as tree, scratch() as tmp:
        wall, _ = timed_cli(["size", SCENARIO, "--out", f"{tmp}/size"], ROOT)
        found = json.loads(Path(f"{tmp}/size/size.json").read_text())
        base_wall, _ = timed_cli(["size", SCENARIO, "--out", f"{tmp}/base"], tree)
        base = json.loads(Path(f"{tmp}/base/size.json").read_text())
        exhaustive: dict[str, Any] | None = None
        grid_wall = float("nan")
        if grid:
            grid_wall, _ = timed_cli(["size", SCENARIO, "--grid", "--out", f"{tmp}/grid"], ROOT)
            exhaustive = json.loads(Path(f"{tmp}/grid/size.json").read_text())
    step = found["range"]["step"]
    ratio = base_wall / wall
    projected = QUIET_BASELINE_SIZE_S / ratio
    section = Section(
        "sim_size",
        "sim size scenarios/burst.yaml (default options)",
        "python -m bench sim_size  (the CLI in a fresh process; the baseline "
        f"{short_commit(baseline_ref())} right after; then --grid)",
    )
    section.figures = [
        Figure("wall (s)", f"{wall:.1f}", f"≤ {SIZE_TARGET_S:.0f} s (quiet machine)", None),
        Figure("baseline wall, right after (s)", f"{base_wall:.1f}"),
        Figure("speed-up over the baseline", f"{ratio:.2f}×"),
        Figure(
            f"projected quiet-machine wall: {QUIET_BASELINE_SIZE_S:.0f} s (baseline, issue 14) / "
            "speed-up (s)",
            f"{projected:.1f}",
            f"≤ {SIZE_TARGET_S:.0f} s",
            projected <= SIZE_TARGET_S,
        ),
        Figure(
            "rates and replications used",
            f"{found['rates_evaluated']} of {found['lattice_size']} rates, "
            f"{found['replications_run']} replications (baseline: {_base_effort(base)})",
        ),
        Figure(
            "recommendation (baseline's)",
            f"{found['recommended_rate']}/s ({base['recommended_rate']}/s)",
        ),
    ]
    if exhaustive is not None:
        agree = (
            found["recommended_rate"] is not None
            and exhaustive["recommended_rate"] is not None
            and abs(found["recommended_rate"] - exhaustive["recommended_rate"]) <= step
        )
        section.figures += [
            Figure(
                "exhaustive grid (--grid): recommendation, wall",
                f"{exhaustive['recommended_rate']}/s, {grid_wall:.0f} s "
                f"({exhaustive['replications_run']} replications)",
            ),
            Figure(
                f"search and grid agree within the step ({step:g}/s)",
                "yes" if agree else "NO",
                "within --step",
                agree,
            ),
        ]
    section.tables.append(
        table(
            ["rate/s", "replications", "met"],
            [[e["rate"], e["replications"], e["all_met"]] for e in found["evaluations"]],
        )
    )
    section.data = {"search": found, "baseline": base, "grid": exhaustive, "walls": [wall]}
    return section


def _base_effort(base: dict[str, Any]) -> str:
    if "replications_run" in base:
        return f"{base['rates_evaluated']} rates, {base['replications_run']} replications"
    return f"every rate it tried with all {base['replications']} replications"


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Aggregated metrics equal to 1e-9 relative (NaN equal to NaN, null to null)."""
    if a.keys() != b.keys():
        return False
    for name in a:
        for key in ("mean", "n"):
            x, y = a[name][key], b[name][key]
            if x is None or y is None:
                if x is not y:
                    return False
            elif abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
                return False
    return True
