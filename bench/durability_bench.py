"""What `sim core run --durability full` costs against `normal` (issue 15).

Each measurement is a fresh process (`python -m bench.durability_bench JOB_JSON`) running a
`DeliveryCore` on a new SQLite database in the system's temporary folder, accepting events
for a few seconds through `core.submit` — the call PutEvents and JSONL ingestion make, which
returns once the event and its delivery are committed. Every event matches one target whose
rate limit (0.001/s) keeps its delivery waiting, so the figures are the cost of accepting
alone. Two load shapes:

* one submitter, one event per call, each waiting for its commit (a client sending events
  one at a time: the rate is one over the commit latency);
* 16 concurrent submitters (concurrent PutEvents requests: they share commits).

Modes alternate run by run, so both see the same machine; the ratio full/normal is taken
from medians measured in the same run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.isolated import run_isolated
from bench.report import Figure, Section, table

MODES = ("normal", "full")
SHAPES = {"serial": 1, "concurrent": 16}


def _config() -> Any:
    from sim.live.config.loading import build_config

    data = {
        "Connections": [
            {
                "Name": "c",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}},
            }
        ],
        "ApiDestinations": [
            {
                "Name": "d",
                "ConnectionArn": "c",
                "InvocationEndpoint": "http://127.0.0.1:9/",
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": 0.001,
            }
        ],
        "Rules": [
            {
                "Name": "r",
                "EventPattern": {"source": ["bench"]},
                "Targets": [{"Id": "t", "Arn": "d"}],
            }
        ],
        "sim": {"allow_private_endpoints": True},
    }
    return build_config(data, source="durability bench", environ={})


async def _accept(mode: str, submitters: int, seconds: float, folder: Path) -> dict[str, Any]:
    from sim.live.delivery.core import DeliveryCore

    core = DeliveryCore(_config(), folder / "core.db", durability=mode)  # type: ignore[arg-type]
    await core.start()
    latencies: list[float] = []
    event = {"source": "bench", "detail-type": "t", "detail": {"order": "o-1", "total": 12.5}}
    started = time.perf_counter()
    stop_at = started + seconds

    async def submitter() -> None:
        while time.perf_counter() < stop_at:
            begun = time.perf_counter()
            await core.submit([event])
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(submitter() for _ in range(submitters)))
    elapsed = time.perf_counter() - started
    await core.stop()
    ms = np.asarray(latencies) * 1000
    return {
        "events_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "events": len(latencies),
    }


def job(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sim-durability-") as folder:
        return asyncio.run(_accept(spec["mode"], spec["submitters"], spec["seconds"], Path(folder)))


def _filesystem() -> str:
    where = tempfile.gettempdir()
    found = subprocess.run(["df", "-T", where], capture_output=True, text=True, check=False)
    lines = found.stdout.splitlines()
    kind = lines[1].split()[1] if len(lines) > 1 else "unknown"
    return f"{where} ({kind})"


def durability(repeats: int = 3, seconds: float = 5.0) -> Section:
    """Accepted events/s and commit latency, normal vs full, serial and concurrent."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(repeats):
        for shape, submitters in SHAPES.items():
            for mode in MODES:  # alternate: both modes see the same machine
                spec = {"mode": mode, "submitters": submitters, "seconds": seconds}
                result = run_isolated(spec, module="bench.durability_bench")
                runs.setdefault((shape, mode), []).append(result)
    rows, figures = [], []
    for shape, submitters in SHAPES.items():
        medians = {}
        for mode in MODES:
            results = runs[(shape, mode)]
            rate = statistics.median(r["events_per_s"] for r in results)
            p50 = statistics.median(r["p50_ms"] for r in results)
            p99 = statistics.median(r["p99_ms"] for r in results)
            low, high = (f(r["events_per_s"] for r in results) for f in (min, max))
            medians[mode] = rate
            rows.append(
                [
                    shape,
                    submitters,
                    mode,
                    f"{rate:,.0f} ({low:,.0f}–{high:,.0f})",
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                ]
            )
        ratio = medians["full"] / medians["normal"]
        figures.append(
            Figure(
                f"accepted events/s, {shape} ({submitters} submitter{'s' if submitters > 1 else ''}): normal vs full",
                f"{medians['normal']:,.0f} vs {medians['full']:,.0f} (full = {ratio:.2f}× normal)",
            )
        )
    return Section(
        key="durability",
        title="Live core, --durability normal vs full",
        command=f"python -m bench durability  ({repeats} runs of {seconds:g} s per mode and shape)",
        figures=figures,
        tables=[
            table(
                [
                    "load",
                    "submitters",
                    "durability",
                    "accepted events/s, median (min–max)",
                    "commit p50 (ms)",
                    "commit p99 (ms)",
                ],
                rows,
            )
        ],
        notes=[f"database in {_filesystem()}; each run a fresh process and database"],
        data={f"{shape}/{mode}": results for (shape, mode), results in runs.items()},
    )


if __name__ == "__main__":
    print("RESULT " + json.dumps(job(json.loads(sys.argv[1]))))
