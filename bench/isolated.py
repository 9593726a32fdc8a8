"""Run a job in a fresh Python process and read its own peak RSS from the kernel (wait4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_isolated(
    job: dict[str, Any], module: str = "bench.worker", root: Path = ROOT
) -> dict[str, Any]:
    """Run `python -m module JOB_JSON`; return its RESULT plus `peak_rss_mb` and `process_wall_s`.

    Peak RSS is the child's own maximum resident set (ru_maxrss of wait4 on its pid), so it
    includes the interpreter and imports but nothing of this process or of other runs.
    `root` is the source tree to run (default: this checkout).
    """
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(job)],
            cwd=root,  # `import sim` finds this tree's code first (a baseline's, say)
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        _, status, usage = os.wait4(child.pid, 0)  # reap it ourselves to get its rusage
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise RuntimeError(f"{module} failed ({child.returncode}): {stderr.strip()[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"{module} printed no RESULT line: {stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    result["process_wall_s"] = wall
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result
