"""Live core at 1,000 attempts/s on loopback (issue 6 item 6, design §8).

Two processes, so each one's CPU and memory are its own:

* the local endpoint, `sim endpoint scenarios/bench/live-1k.yaml` (a 1 % error mix), logging
  every request it receives;
* this module as the measured process (`python -m bench.live_bench JOB_JSON`): a
  `DeliveryCore` configured from the same scenario (`config_for_scenario`) and a load
  generator submitting the scenario's Poisson arrivals in real time, every few milliseconds.

Figures: attempts per second; loss (accepted events that did not end delivered or
dead-lettered, and attempts the endpoint never saw); dispatch lateness — each attempt's
dispatch time minus the token bucket's schedule recomputed from the recorded ready times
(`policy.gcra_schedule`, oldest-ready first); CPU of the core process; RSS sampled every
second (flat = no growth between the first and last third of the run).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.isolated import ROOT, run_isolated
from bench.report import Figure, Section, table
from sim.live.delivery.loops import has_uvloop

LIVE_SCENARIO = "scenarios/bench/live-1k.yaml"
LATENESS_TARGET_S = 0.010
RATE_TARGET = 1000.0
SWEEP_RATES = (250.0, 500.0, 750.0)
SUBMIT_EVERY_S = 0.005
DRAIN_LIMIT_S = 30.0


def rss_mb() -> float:
    """This process's resident set now (MB)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Chunks:
    """Sink keeping the core's attempt records and arrival times."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []
        self.n_arrivals = 0

    def arrivals(self, replication: int, times: np.ndarray) -> None:
        self.n_arrivals += times.size

    def attempts(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunks.append(chunk)


def start_endpoint(
    scenario_path: str, log_path: Path, loop: str = "asyncio"
) -> tuple[subprocess.Popen[str], str]:
    """Start `sim endpoint` on a free loopback port and event loop `loop`; return it and its URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "sim", "endpoint", scenario_path, "--port", "0",
         "--log", str(log_path), "--loop", loop],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("listening on "):
            return child, line.split()[-1]
    raise RuntimeError("the endpoint exited before listening")


def stop_endpoint(child: subprocess.Popen[str]) -> dict[str, float]:
    """SIGTERM the endpoint and read its CPU seconds and peak RSS."""
    child.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


async def drive(job: dict[str, Any], url: str, db: Path) -> dict[str, Any]:
    """Run the core with the load generator; return raw measurements."""
    from sim.live.config.loading import config_for_scenario
    from sim.live.delivery.core import DeliveryCore
    from sim.rng import generator
    from sim.scenario.arrivals import arrival_windows
    from sim.scenario.loading import load_scenario

    scenario = load_scenario(job["scenario"], job.get("overrides", {}))
    rng = generator(scenario.seed, 0, "arrivals")
    times = np.concatenate(
        [t for _, _, t in arrival_windows(scenario.arrivals, rng, scenario.horizon)]
    )
    sink = Chunks()
    core = DeliveryCore(config_for_scenario(scenario, url), db, sink)
    samples: list[tuple[float, float, float]] = []  # (s since start, RSS MB, CPU s)
    submit_lag: list[float] = []

    async def sample() -> None:
        while True:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            samples.append((core.now(), rss_mb(), usage.ru_utime + usage.ru_stime))
            await asyncio.sleep(1.0)

    await core.start()
    sampler = asyncio.create_task(sample())
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    next_i, n = 0, times.size
    started = core.now()
    while next_i < n:
        now = core.now() - started
        stop = int(np.searchsorted(times, now, side="right"))
        if stop > next_i:
            submit_lag.append(now - float(times[next_i]))
            batch = [{"source": "bench", "detail-type": "load", "detail": {"i": i}}
                     for i in range(next_i, stop)]  # fmt: skip
            await core.submit(batch)
            next_i = stop
        else:
            await asyncio.sleep(min(SUBMIT_EVERY_S, float(times[next_i]) - now))
    generated_s = core.now() - started
    try:
        await asyncio.wait_for(core.wait_idle(), DRAIN_LIMIT_S)
    except TimeoutError:
        pass  # reported as loss: accepted events that did not end
    drained_s = core.now() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.cancel()
    await core.stop()
    from sim.live.delivery.store import Store

    store = Store(db)
    try:
        stored = store.counts()
    finally:
        store.close()
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    chunks = sink.chunks
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
    return {
        "accepted": core.accepted,
        "stored": stored,
        "arrivals": sink.n_arrivals,
        "generated_s": generated_s,
        "load_started_at": started,
        "drained_s": drained_s,
        "cpu_s": cpu_s,
        "samples": samples,
        "submit_lag_s": submit_lag,
        "loop_lag_s": list(core.loop_lag.samples),
        "rate": scenario.destination.invocation_rate_limit_per_second,
        "burst": scenario.destination.burst,
        "records": {k: v.tolist() for k, v in merged.items()},
    }


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    """Attempts/s, loss, dispatch lateness against the bucket's schedule, CPU and memory."""
    from sim import policy

    r = {k: np.asarray(v) for k, v in raw["records"].items()}
    sent = r["outcome"] != policy.EXPIRED
    dispatch, ready = r["dispatch_at"][sent], r["ready_at"][sent]
    order = np.lexsort((dispatch, ready))  # oldest-ready first, as the lane serves them
    ideal, _ = policy.gcra_schedule(0.0, raw["rate"], raw["burst"], ready[order])
    lateness = dispatch[order] - ideal
    ended = r["final"] != policy.NO_FINAL
    # The sustained rate is taken over the load (not the retries trickling in after it).
    first = float(raw.get("load_started_at", dispatch.min()))
    load_s = float(raw["generated_s"])
    in_load = dispatch[(dispatch >= first) & (dispatch < first + load_s)]
    per_second = np.bincount((in_load - first).astype(int), minlength=int(load_s))[: int(load_s)]
    samples = np.asarray(raw["samples"])
    t, rss, cpu = samples[:, 0], samples[:, 1], samples[:, 2]
    steady = (t >= 10) & (t <= raw["generated_s"])
    thirds = np.array_split(rss[steady], 3) if steady.sum() >= 3 else [rss, rss, rss]
    cpu_pct = np.diff(cpu) / np.diff(t) * 100
    stored = raw["stored"]
    pending = int(stored.get("pending", 0))
    return {
        "accepted": int(raw["accepted"]),
        "ended": int(ended.sum()),
        "pending": pending,
        "lost": int(raw["accepted"]) - int(ended.sum()) - pending,
        "stored": stored,
        "delivered": int((r["final"] == policy.FINAL_DELIVERED).sum()),
        "dlq": int((r["final"] == policy.FINAL_DLQ).sum()),
        "dropped": int((r["final"] == policy.FINAL_DROPPED).sum()),
        "attempts": int(sent.sum()),
        "retries": int((r["attempt"][sent] > 1).sum()),
        "errors": int((r["outcome"][sent] != policy.DELIVERED).sum()),
        "connection_errors": int((r["status"][sent] == policy.STATUS_CONNECTION_ERROR).sum()),
        "timeouts": int((r["status"][sent] == policy.STATUS_TIMEOUT).sum()),
        "attempts_per_s": in_load.size / max(load_s, 1e-9),
        "attempts_per_s_min_full_second": int(per_second.min()) if per_second.size else 0,
        "lateness_ms": {q: float(np.quantile(lateness, p) * 1e3)
                        for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "cpu_percent": 100 * raw["cpu_s"] / raw["drained_s"],
        "cpu_ms_per_attempt": 1e3 * raw["cpu_s"] / max(int(sent.sum()), 1),
        "cpu_percent_max_second": float(cpu_pct.max()) if cpu_pct.size else 0.0,
        "rss_mb": {"first_third": float(np.mean(thirds[0])), "last_third": float(np.mean(thirds[-1])),
                   "max": float(rss.max())},
        "rss_series": [[round(float(a), 1), round(float(b), 1)] for a, b in zip(t, rss, strict=True)],
        "submit_lag_ms_p99": float(np.quantile(raw["submit_lag_s"], 0.99) * 1e3),
        "loop_lag_ms": {q: float(np.quantile(raw["loop_lag_s"], p) * 1e3) if raw["loop_lag_s"]
                        else float("nan") for q, p in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))},
        "generated_s": raw["generated_s"],
        "drained_s": raw["drained_s"],
    }  # fmt: skip


def run_live(job: dict[str, Any]) -> dict[str, Any]:
    """The measured process: endpoint subprocess, core + load generator here."""
    from sim.live.delivery import loops

    loop = "uvloop" if job.get("uvloop") else "asyncio"  # the endpoint runs on the same kind
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "requests.jsonl"
        endpoint, url = start_endpoint(job["scenario"], log_path, loop)
        try:
            raw = loops.run(drive(job, url, Path(tmp) / "core.db"), loop)
        finally:
            endpoint_usage = stop_endpoint(endpoint)
        received = sum(1 for _ in log_path.open()) if log_path.exists() else -1
    result = analyse(raw)
    result["core_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["endpoint_received"] = received
    result["endpoint"] = endpoint_usage
    return result


def live(duration_s: float = 60.0, sweep_s: float = 20.0, uvloop: bool | None = None) -> Section:
    """The 1,000/s run on each event loop (uvloop, `sim core run`'s default, when installed,
    and asyncio's own) and a rate sweep on the default one."""
    loops = ["asyncio"]
    if uvloop is not False and has_uvloop():
        loops.insert(0, "uvloop")
    runs: list[tuple[str, float, dict[str, Any]]] = []
    for rate in SWEEP_RATES:
        overrides = {"horizon": sweep_s, "arrivals.0.rate_per_second": rate}
        job: dict[str, Any] = {"scenario": LIVE_SCENARIO, "overrides": overrides,
                               "uvloop": loops[0] == "uvloop"}  # fmt: skip
        runs.append((loops[0], rate, run_isolated(job, module="bench.live_bench")))
    for loop in loops:
        job = {"scenario": LIVE_SCENARIO, "overrides": {"horizon": duration_s},
               "uvloop": loop == "uvloop"}  # fmt: skip
        runs.append((loop, RATE_TARGET, run_isolated(job, module="bench.live_bench")))
    return live_section(runs, duration_s, sweep_s)


def live_section(
    runs: list[tuple[str, float, dict[str, Any]]], duration_s: float, sweep_s: float
) -> Section:
    """The live section from measured runs (also used to re-render saved results)."""
    main_loop = next(loop for loop, rate, _ in runs if rate == RATE_TARGET)  # the default loop
    main = next(res for loop, rate, res in runs if loop == main_loop and rate == RATE_TARGET)
    unseen = main["attempts"] - main["endpoint_received"]
    growth = main["rss_mb"]["last_third"] - main["rss_mb"]["first_third"]
    section = Section("live", "Live core, 1,000 attempts/s on loopback",
                      f"python -m bench live  ({LIVE_SCENARIO}: {duration_s:.0f} s at 1,000/s; "
                      f"sweep {sweep_s:.0f} s at {', '.join(f'{r:.0f}' for r in SWEEP_RATES)}/s)")  # fmt: skip
    section.figures = [
        Figure("attempts per second", f"{main['attempts_per_s']:.0f} (slowest full second "
               f"{main['attempts_per_s_min_full_second']})", f"≥ {RATE_TARGET:.0f}/s",
               main["attempts_per_s"] >= RATE_TARGET * 0.99),
        Figure("loss (accepted events neither ended nor pending in the store)",
               f"{main['lost']} of {main['accepted']:,} accepted ({main['pending']:,} not yet "
               f"ended but safely pending when the run stopped, {DRAIN_LIMIT_S:.0f} s after "
               "the load)", "none", main["lost"] == 0),
        Figure("dispatch lateness vs token-bucket schedule, p99 (ms)",
               f"{main['lateness_ms']['p99']:.1f} (p50 {main['lateness_ms']['p50']:.1f}, "
               f"max {main['lateness_ms']['max']:.0f})", f"≤ {LATENESS_TARGET_S * 1e3:.0f} ms",
               main["lateness_ms"]["p99"] <= LATENESS_TARGET_S * 1e3),
        Figure("core CPU", f"{main['cpu_percent']:.0f} % of one core (busiest second "
               f"{main['cpu_percent_max_second']:.0f} %), {main['cpu_ms_per_attempt']:.2f} ms "
               f"per attempt; endpoint process "
               f"{100 * main['endpoint']['cpu_s'] / main['drained_s']:.0f} %"),
        Figure("event-loop lag, p99 / max (ms)", _loop_lag(main)),
        Figure("peak RSS (MB)", f"core {main['core_peak_rss_mb']:.0f}, endpoint "
               f"{main['endpoint']['peak_rss_mb']:.0f}"),
        Figure("memory flat", f"RSS {main['rss_mb']['first_third']:.0f} → "
               f"{main['rss_mb']['last_third']:.0f} MB (first vs last third of the load)",
               "flat", abs(growth) < 20),
    ]  # fmt: skip
    rows = []
    for loop, rate, res in runs:
        rows.append([f"{rate:.0f}", loop, f"{res['attempts']:,}", f"{res['attempts_per_s']:.0f}",
                     f"{res['lateness_ms']['p50']:.1f} / {res['lateness_ms']['p99']:.1f} / "
                     f"{res['lateness_ms']['max']:.0f}", f"{res['cpu_percent']:.0f} %",
                     f"{res['cpu_ms_per_attempt']:.2f}", f"{res['core_peak_rss_mb']:.0f}",
                     res["timeouts"], res["pending"], res["lost"],
                     f"{res['submit_lag_ms_p99']:.1f}", _loop_lag(res)])  # fmt: skip
    section.tables.append(table(
        ["offered /s", "event loop", "attempts", "attempts/s", "lateness p50 / p99 / max (ms)",
         "core CPU", "CPU ms / attempt", "peak RSS (MB)", "timeouts", "pending", "lost",
         "submit lag p99 (ms)", "loop lag p99 / max (ms)"],
        rows))  # fmt: skip
    section.notes.append(
        f"Figures above: the 1,000/s run on {main_loop} (the default event loop of `sim core "
        "run`); core and endpoint run on the same loop kind. Attempts per second are counted "
        "over the load, not the retries trickling in after it."
    )
    section.notes.append(
        f"Attempts the endpoint never saw (client timeouts before its accept): {unseen:,}. "
        "Timeouts here are the core's own: the endpoint model in this scenario never hangs."
    )
    section.data = {f"{loop}@{rate:.0f}": res for loop, rate, res in runs}
    return section


def _loop_lag(result: dict[str, Any]) -> str:
    lag = result.get("loop_lag_ms")
    return f"{lag['p99']:.1f} / {lag['max']:.0f}" if lag else "not measured"


def main() -> None:
    result = run_live(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
