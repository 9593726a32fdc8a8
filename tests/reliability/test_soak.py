"""Soak (issue 7 item 6): the core under steady load with 5 % 503s and 1 % timeouts.

`sim core run --events -` (a real subprocess) reads events from stdin, paced by this test,
and delivers them to `sim endpoint` (another subprocess, request log on disk) answering 5 %
of requests with 503 and letting 1 % hang past the real 5 s client timeout. Targets retry
once, so some events exhaust their retries and go to the DLQ. Checks: every event written
is accepted and ends delivered or dead-lettered (delivered + DLQ = accepted, nothing
pending), every delivered event really got a 2xx, and the core's RSS, sampled each second
under load, stays flat.

CI runs a short version (200 events/s for 10 s). `SIM_SOAK=1` runs the full one (1,000
events/s for 60 s); `SIM_SOAK_RATE` and `SIM_SOAK_SECONDS` override either, and
`SIM_SOAK_REPORT=path.json` writes the figures.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.processes import core_config_data, rss_bytes, sim_process, write_yaml

pytestmark = [pytest.mark.live, pytest.mark.soak]

FULL = os.environ.get("SIM_SOAK") == "1"
RATE = float(os.environ.get("SIM_SOAK_RATE", 1000 if FULL else 200))
SECONDS = float(os.environ.get("SIM_SOAK_SECONDS", 60 if FULL else 10))
RSS_GROWTH_LIMIT = 25 << 20  # bytes, after warm-up: allocator noise, not growth with events
WARM_UP = 0.25  # fraction of the load phase before RSS is taken as the baseline


def _endpoint(tmp_path: Path) -> tuple[subprocess.Popen[str], str, Path]:
    scenario = {
        "name": "soak",
        "horizon": "1h",
        "seed": 9,
        "arrivals": [{"kind": "constant", "rate_per_second": 1}],
        "endpoint": {
            "latency": {"kind": "lognormal", "median": "10ms", "p99": "50ms"},
            "responses": {200: 0.95, 503: 0.05},
            "timeout_probability": 0.01,
        },
    }
    path = write_yaml(tmp_path / "endpoint.yaml", scenario)
    log = tmp_path / "endpoint-requests.jsonl"
    process = sim_process(
        "endpoint", str(path), "--port", "0", "--log", str(log),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return process, line.split()[-1], log


def _feed(core: subprocess.Popen[str]) -> tuple[int, float]:
    """Write RATE events/s to the core's stdin for SECONDS (a full pipe blocks the writer: the
    core is not keeping up); returns (events written, seconds taken)."""
    assert core.stdin is not None
    started = time.monotonic()
    written = 0
    while (elapsed := time.monotonic() - started) < SECONDS:
        due = int(RATE * elapsed)
        while written < due and time.monotonic() - started < SECONDS:
            upto = min(due, written + max(1, int(RATE / 20)))
            core.stdin.write("".join(_line(n) for n in range(written, upto)))
            core.stdin.flush()
            written = upto
        time.sleep(0.005)
    core.stdin.close()
    return written, time.monotonic() - started


class RssSampler(threading.Thread):
    """Samples a process's RSS every second until it exits: (seconds since start, bytes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.started = pid, [], time.monotonic()
        self.samples: list[tuple[float, int]]
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.samples.append((time.monotonic() - self.started, rss_bytes(self.pid)))
            except (OSError, RuntimeError):
                return


def _line(n: int) -> str:
    return json.dumps({"source": "test", "detail-type": "t", "detail": {"n": n}}) + "\n"


def test_soak_nothing_lost_counts_add_up_rss_flat(tmp_path: Path) -> None:
    endpoint, url, log = _endpoint(tmp_path)
    db = tmp_path / "core.db"
    try:
        data = core_config_data(
            url + "/e/*", rate=None, retries=1, path_values=["$.detail.n"],
            sim={"timeout": "5s", "backoff": {"base": "100ms", "cap": "1s", "jitter": "full"}},
        )  # fmt: skip
        config = write_yaml(tmp_path / "core.yaml", data)
        core = sim_process(
            "core", "run", str(config), "--db", str(db), "--events", "-", "--until-idle",
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sampler = RssSampler(core.pid)
        try:
            # let the core finish importing and open its database before the load's clock starts:
            # on a busy machine imports alone can take seconds and would look like growth
            ready_by = time.monotonic() + 60
            while not db.exists() and core.poll() is None and time.monotonic() < ready_by:
                time.sleep(0.1)
            time.sleep(0.5)
            sampler.start()
            written, load_s = _feed(core)
            drain_started = time.monotonic()
            core.wait(timeout=SECONDS * 3 + 60)
            assert core.stderr is not None
            err = core.stderr.read()
            drain_s = time.monotonic() - drain_started
        finally:
            sampler.done.set()
            if core.poll() is None:
                core.kill()
                core.wait()
            if core.stderr is not None:
                core.stderr.close()
        assert core.returncode == 0, err[-2000:]
    finally:
        endpoint.terminate()
        endpoint.wait(10)
        if endpoint.stdout is not None:
            endpoint.stdout.close()

    with sqlite3.connect(db) as connection:
        states = dict(connection.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
        n_events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        accepted = [t for (t,) in connection.execute("SELECT accepted_at FROM events")]
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    tried = Counter(int(r["path"].rsplit("/", 1)[1]) for r in requests)
    ok = {int(r["path"].rsplit("/", 1)[1]) for r in requests if r["status"] == 200}
    statuses = Counter("hang" if r["hang"] else r["status"] for r in requests)
    arrivals = np.sort([r["arrival_at"] for r in requests])

    # Nothing lost, and the counts add up.
    assert n_events == written, f"{written} written, {n_events} accepted"
    assert states.get("pending", 0) == 0 and states.get("dropped", 0) == 0, states
    assert states.get("delivered", 0) + states.get("dlq", 0) == written, states
    assert f"accepted {written} events in this run" in err
    assert len(tried) == written  # every event reached the endpoint at least once
    with sqlite3.connect(db) as connection:
        delivered = {
            json.loads(body)["detail"]["n"]
            for (body,) in connection.execute(
                "SELECT e.body FROM deliveries d JOIN events e ON e.id = d.event"
                " WHERE d.state = 'delivered'"
            )
        }
    assert delivered <= ok and len(delivered) == states["delivered"]

    # RSS flat under load: after warm-up it grows by less than the limit.
    rss = sampler.samples
    under_load = [(t, b) for t, b in rss if WARM_UP * load_s <= t <= load_s]
    baseline = under_load[0][1]
    growth = max(b for _, b in under_load) - baseline
    slope = float(np.polyfit([t for t, _ in under_load], [b for _, b in under_load], 1)[0])

    span = accepted and (max(accepted) - min(accepted)) or 0.0
    figures: dict[str, Any] = {
        "offered_events_per_s": RATE,
        "load_s": round(load_s, 2),
        "events_written": written,
        "written_events_per_s": round(written / load_s, 1),
        "accepted_events_per_s": round(n_events / span, 1) if span else None,
        "drain_after_load_s": round(drain_s, 2),
        "attempts": len(requests),
        "attempts_per_s_peak_10s": _peak_rate(arrivals, 10.0),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "delivered": states.get("delivered", 0),
        "dead_lettered": states.get("dlq", 0),
        "rss_mb": [round(b / 2**20, 1) for _, b in rss],
        "rss_load_phase_samples": len(under_load),
        "rss_growth_after_warm_up_mb": round(growth / 2**20, 1),
        "rss_slope_mb_per_min": round(slope * 60 / 2**20, 2),
    }
    print(json.dumps(figures))
    if report := os.environ.get("SIM_SOAK_REPORT"):
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    assert growth < RSS_GROWTH_LIMIT, figures


def _peak_rate(times: np.ndarray, window_s: float) -> float:
    if times.size == 0:
        return 0.0
    ends = np.searchsorted(times, times + window_s)
    return round(float((ends - np.arange(times.size)).max()) / window_s, 1)
