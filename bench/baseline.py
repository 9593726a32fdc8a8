"""The previous code, to measure against in the same run: `git archive` of a commit into a folder.

The machine is shared, so absolute wall times move with the load; a ratio against the
baseline measured minutes apart in the same conditions is the steadier figure. The baseline is
the commit before issue 14's changes (`BASELINE_REF`, or `SIM_BASELINE_REF=...` to choose).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REF = "09a31a1"
"""The engine, runner and sizing before issue 14 (layered restructure, golden summaries)."""


def baseline_ref() -> str:
    return os.environ.get("SIM_BASELINE_REF", BASELINE_REF)


@contextmanager
def baseline_tree(ref: str | None = None) -> Iterator[Path]:
    """A temporary folder holding `sim/`, `bench/` and `scenarios/` as they were at `ref`.

    Run Python there (cwd) and `import sim` finds that code before the installed one."""
    ref = ref or baseline_ref()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "sim", "bench", "scenarios"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="sim-baseline-") as folder:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


def short_commit(ref: str) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or ref


def scratch() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for report folders the benchmarks write."""
    return tempfile.TemporaryDirectory(prefix="sim-bench-")
