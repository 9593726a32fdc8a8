"""Crash safety (design §9): SIGKILL the core at random moments; nothing accepted is lost.

`sim core run` (a real subprocess) delivers N events from a JSONL file to the local endpoint
(`EndpointServer`, serving a scenario with 503s, 400s and hangs, its request log on disk). The
test kills the core with SIGKILL at random moments several times, restarting it each time
with the same database, then lets the last run drain. Every accepted event must end
delivered or dead-lettered.

Duplicates are counted from the endpoint's request log against the database. Right after
each kill the test compares, per event, the attempts the endpoint has received with the
attempts whose results the database holds: the difference is the attempts in flight at that
kill (sent, result not yet committed). At the end, the attempts the endpoint received beyond
those the database recorded — the repeats — must be exactly those in flight at the kills,
never more: a restart repeats nothing whose result was committed. And an attempt in flight
must really have been in flight: answered at most `COMMIT_LAG_S` before the kill, or not at
all (retries wait at least 0.5 s here, so a retry whose state was never committed shows up).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.endpoint.server import EndpointServer, RequestLog
from sim.scenario.loading import build_scenario
from tests.support.processes import core_config_data, sim_process, write_yaml

pytestmark = [pytest.mark.live, pytest.mark.slow]

N_EVENTS = 600
N_KILLS = 4
COMMIT_LAG_S = 0.4  # results commit within ms; a retry waits >= 0.5 s, so a lost retry shows
SEED = int(os.environ.get("SIM_CRASH_SEED", "20251126"))


class ThreadedEndpoint:
    """An `EndpointServer` on its own event loop in a thread, logging to a JSONL file."""

    def __init__(self, log_path: Path) -> None:
        scenario = build_scenario(
            {
                "name": "crash",
                "horizon": "1h",
                "seed": 5,
                "arrivals": [{"kind": "constant", "rate_per_second": 1}],
                "destination": {"timeout": "1s"},
                "endpoint": {
                    "latency": {"kind": "lognormal", "median": "30ms", "p99": "200ms"},
                    "responses": {200: 0.9, 503: 0.07, 400: 0.03},
                    "timeout_probability": 0.01,
                },
            },
            source="crash",
        )
        self.server = EndpointServer(scenario, log=RequestLog(log_path))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> ThreadedEndpoint:
        self.thread.start()
        start = self.server.start("127.0.0.1", 0)
        self.url = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.server.log.close()

    def received(self) -> int:
        return len(self.server.records)


def _events(path: Path) -> Path:
    lines = (
        json.dumps({"source": "test", "detail-type": "t", "detail": {"n": n}}) + "\n"
        for n in range(N_EVENTS)
    )
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _kill_at_random(
    process: subprocess.Popen[Any], endpoint: ThreadedEndpoint, delay_s: float
) -> tuple[float, float] | None:
    """Wait until this run has sent a request, then `delay_s`, then SIGKILL it.

    Returns (instant just before the kill, instant the process was gone), or None if the
    run ended by itself first.
    """
    seen = endpoint.received()
    deadline = time.monotonic() + 30
    while endpoint.received() == seen and process.poll() is None:
        assert time.monotonic() < deadline, "the core sent nothing"
        time.sleep(0.005)
    time.sleep(delay_s)
    if process.poll() is not None:
        return None
    before = time.monotonic()
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    return before, time.monotonic()


def _committed(db: Path) -> dict[int, tuple[str, int]]:
    """Event number -> (delivery state, attempts whose result is committed) from the database."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT e.body, d.state, d.retries_done FROM deliveries d JOIN events e ON e.id = d.event"
        ).fetchall()
    return {
        json.loads(body)["detail"]["n"]: (state, retries + (state != "pending"))
        for body, state, retries in rows
    }


def _arrival(record: Any) -> float:
    return float(record.arrival_at)


def _seen(records: list[Any]) -> Counter[int]:
    return Counter(int(r.path.rsplit("/", 1)[1]) for r in records)


def test_sigkill_at_random_moments_loses_nothing_and_repeats_only_attempts_in_flight(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(SEED)
    log_path = tmp_path / "requests.jsonl"
    db = tmp_path / "core.db"
    lost: list[Counter[int]] = []  # per kill: attempts sent but not committed, per event
    with ThreadedEndpoint(log_path) as endpoint:
        data = core_config_data(
            endpoint.url + "/e/*",
            rate=150,
            retries=3,
            path_values=["$.detail.n"],
            sim={"timeout": "1s", "burst_capacity": 10,
                 "backoff": {"base": "500ms", "cap": "1s", "jitter": "none"}},
        )  # fmt: skip
        config = write_yaml(tmp_path / "core.yaml", data)
        base = ["core", "run", str(config), "--db", str(db)]
        args = [*base, "--events", str(_events(tmp_path / "events.jsonl"))]
        uncommitted: Counter[int] = Counter()
        gaps: list[float] = []
        for _ in range(N_KILLS):
            process = sim_process(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                killed = _kill_at_random(process, endpoint, float(rng.uniform(0.2, 1.0)))
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if killed is None:
                break
            records, state = list(endpoint.server.records), _committed(db)
            now = _seen(records)
            total = Counter({n: now[n] - attempts for n, (_, attempts) in state.items()})
            assert all(total[n] >= uncommitted[n] for n in state), "a committed result was lost"
            lost.append(total - uncommitted)
            uncommitted = total
            for n, count in lost[-1].items():  # how long before the kill each was answered
                mine = sorted((r for r in records if r.path.endswith(f"/{n}")), key=_arrival)
                gaps += [
                    killed[0] - endpoint.server.t0 - (r.completed_at or math.inf)
                    for r in mine[-count:]
                ]
            args = [*base, "--until-idle"]  # restart: resume from the database only
        final = sim_process(
            *base, "--until-idle", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err

    assert len(lost) >= 3, f"only {len(lost)} kills landed mid-delivery"
    states = _committed(db)
    assert len(states) == N_EVENTS  # every event was accepted (before the first kill)
    ended = Counter(state for state, _ in states.values())
    assert set(ended) <= {"delivered", "dlq"}, f"not every accepted event ended: {ended}"
    assert "0 pending" in err

    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    seen = Counter(int(r["path"].rsplit("/", 1)[1]) for r in log)
    ok = Counter(
        int(r["path"].rsplit("/", 1)[1]) for r in log if r["status"] and 200 <= r["status"] < 300
    )
    for n, (state, _) in states.items():
        if state == "delivered":
            assert ok[n] >= 1, f"event {n} is marked delivered but the endpoint never answered 2xx"
    repeated = Counter({n: seen[n] - attempts for n, (_, attempts) in states.items()})
    in_flight = sum(lost, Counter())
    n_duplicate_deliveries = sum(max(0, ok[n] - 1) for n in states)
    print(
        f"kills {len(lost)}; attempts in flight at each kill {[sum(c.values()) for c in lost]}; "
        "repeated attempts "
        f"{sum(repeated.values())} on {len(+repeated)} events; duplicate 2xx deliveries "
        f"{n_duplicate_deliveries}; requests {len(log)}; final states {dict(ended)}; answered "
        f"before the kill (ms): {sorted(round(g * 1000) for g in gaps if g > -math.inf)[-5:]} "
        f"(largest), {sum(g == -math.inf for g in gaps)} unanswered"
    )
    assert repeated == in_flight  # a repeat is always an attempt in flight at a kill, never more
    assert (
        max(gaps, default=0.0) <= COMMIT_LAG_S
    )  # in flight means just answered or not yet answered
    assert n_duplicate_deliveries <= sum(repeated.values())
