"""The live run: load generator → delivery core → local endpoint, over HTTP on 127.0.0.1.

All three share one time zero (a `time.monotonic()` instant), so the core's attempt records,
the endpoint's request log and the schedule of arrivals are on one clock. The core gets a
fresh SQLite database in a temporary folder. The run stops at the scenario's horizon, as the
model does: attempts dispatched before it may finish (up to the client timeout), and what is
still waiting stays pending. (The core runs a little past the horizon; `observe` drops what
was dispatched after it.)

The live realization uses replication index `LIVE_REPLICATION` (far from the model's 0..N−1)
for its arrivals, the endpoint's draws and the core's backoff jitter, so it is reproducible up
to timing noise and independent of every model replication.

A bus scenario runs one local endpoint per destination (each serving its own endpoint model,
at the path `/NAME`), the core with one API destination per destination and one rule per
bus rule (`config_for_scenario`), and a load generator that draws which rules each event
matches (`loadgen.match_draws`, kept in `LiveRun.matches`).
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.endpoint.server import EndpointServer, RequestRecord
from sim.live.config.from_scenario import EndpointUrls
from sim.live.config.loading import build_config, config_for_scenario
from sim.live.config.resources import CoreConfig
from sim.live.delivery import loops
from sim.live.delivery.core import DeliveryCore
from sim.records import Chunk, concat
from sim.scenario.model import Scenario
from sim.validation.loadgen import (
    LoadGenerator,
    arrival_times,
    bus_events,
    make_event,
    match_draws,
)
from sim.validation.observe import Collector

LIVE_REPLICATION = 10_000
"""Replication index of the live realization (random streams disjoint from the model's)."""

EVENT_HEADER = "x-sim-event"
"""Request header carrying the event's id (its arrival index), to match requests to attempts."""

RULE_HEADER = "x-sim-rule"
"""Request header carrying the bus rule a request was made for (a bus only: an event goes
to several rules, two of which may share a destination)."""

START_DELAY_S = 0.5
"""Time zero is this far after setup begins, so the first arrivals are not late."""

STOP_AFTER_HORIZON_S = 1.0
"""Dispatching stops this long after the horizon, so attempts the core made late (but whose
overhead-corrected dispatch falls before the horizon) are still recorded."""


@dataclass
class LiveRun:
    """What the live run produced, on one clock (seconds since time zero)."""

    scenario: Scenario
    replication: int
    scheduled_at: np.ndarray  # arrival schedule, per event index
    submitted_at: np.ndarray  # when the load generator submitted each event
    arrival_times: np.ndarray  # arrivals as the core recorded them (one per delivery)
    records: Chunk  # the core's attempt records until it stopped (just after the horizon)
    requests: list[RequestRecord]  # the endpoint's request log, arrival order
    event_of_delivery: dict[int, int]  # delivery id -> event index
    wall_s: float
    loop: str = "asyncio"  # the event loop core and endpoint ran on
    matches: np.ndarray | None = None  # a bus: (events, rules) booleans, the rules each matched
    rule_of_delivery: dict[int, str] = field(default_factory=dict)  # a bus: delivery id -> rule

    @property
    def horizon(self) -> float:
        return self.scenario.horizon


def validation_config(scenario: Scenario, endpoint_url: EndpointUrls) -> CoreConfig:
    """`config_for_scenario`, plus a header carrying each event's id (read by JSON path) and,
    for a bus, one naming the rule."""
    data = config_for_scenario(scenario, endpoint_url).model_dump(mode="json", exclude_none=True)
    for rule in data["Rules"]:
        for target in rule["Targets"]:
            headers = target.setdefault("HttpParameters", {}).setdefault("HeaderParameters", {})
            headers[EVENT_HEADER] = "$.id"
            if scenario.is_bus:
                headers[RULE_HEADER] = rule["Name"]
    return build_config(data, source=f"scenario {scenario.name}", environ={})


def run_live(
    scenario: Scenario,
    *,
    replication: int = LIVE_REPLICATION,
    loop: str | None = None,
    workdir: Path | None = None,
) -> LiveRun:
    """Run the scenario live for its horizon (real time) and return its records and logs.

    `loop` is the event loop kind core and endpoint share (`sim.live.delivery.loops`; default: the
    core's default, uvloop when installed). Objects alive before the run are frozen out of the
    garbage collector meanwhile (full collections over the whole heap otherwise stall the
    event loop for tens of ms).
    """
    name = loops.check_loop(loop)
    gc.collect()
    gc.freeze()
    try:
        with tempfile.TemporaryDirectory(prefix="sim-validate-", dir=workdir) as folder:
            run = loops.run(_run(scenario, replication, Path(folder) / "core.db"), name)
    finally:
        gc.unfreeze()
    run.loop = name
    return run


async def _run(scenario: Scenario, replication: int, db_path: Path) -> LiveRun:
    started = time.perf_counter()
    times = arrival_times(scenario, replication)
    t0 = time.monotonic() + START_DELAY_S
    endpoints, urls = await _start_endpoints(scenario, replication, t0)
    matches = match_draws(scenario, replication, times.size) if scenario.is_bus else None
    sink = Collector()
    try:  # the endpoints stop whatever fails, building the core's config included
        core = DeliveryCore(
            validation_config(scenario, urls), db_path, sink, replication=replication
        )
        await core.start(t0=t0)
        make = make_event if matches is None else bus_events(scenario, matches)
        generator = LoadGenerator(times, core.submit, core.now, make=make)
        await generator.run()
        await asyncio.sleep(max(0.0, scenario.horizon + STOP_AFTER_HORIZON_S - core.now()))
        timeout = max(d.timeout for d in scenario.bus.destinations)
        await core.stop(grace_s=timeout + 0.5)
    finally:
        for endpoint in endpoints:
            await endpoint.stop()
    records = concat(sink.chunks)
    arrivals = np.concatenate(sink.arrival_times) if sink.arrival_times else np.empty(0)
    requests = sorted((r for e in endpoints for r in e.records), key=lambda r: r.arrival_at)
    event_of_delivery, rule_of_delivery = _deliveries(db_path)
    return LiveRun(
        scenario=scenario,
        replication=replication,
        scheduled_at=times,
        submitted_at=generator.submitted_at,
        arrival_times=arrivals,
        records=records,
        requests=requests,
        event_of_delivery=event_of_delivery,
        wall_s=time.perf_counter() - started,
        matches=matches,
        rule_of_delivery=rule_of_delivery if scenario.is_bus else {},
    )


async def _start_endpoints(
    scenario: Scenario, replication: int, t0: float
) -> tuple[list[EndpointServer], EndpointUrls]:
    """The local endpoint (single form), or one per destination of a bus, each at `/NAME`."""
    if not scenario.is_bus:
        endpoint = EndpointServer(scenario, seed=scenario.seed, replication=replication)
        return [endpoint], await endpoint.start("127.0.0.1", 0, t0=t0)
    endpoints: list[EndpointServer] = []
    urls: dict[str, str] = {}
    try:
        for destination in scenario.bus.destinations:
            name = destination.name
            endpoint = EndpointServer(
                scenario, seed=scenario.seed, replication=replication, destination=name
            )
            endpoints.append(endpoint)
            urls[name] = f"{await endpoint.start('127.0.0.1', 0, t0=t0)}/{name}"
    except BaseException:
        for endpoint in endpoints:
            await endpoint.stop()
        raise
    return endpoints, urls


def _deliveries(db_path: Path) -> tuple[dict[int, int], dict[int, str]]:
    """Delivery id -> event index, and delivery id -> rule, read from the core's database."""
    with closing(sqlite3.connect(db_path)) as db:
        rows = db.execute(
            "SELECT deliveries.id, events.event_id, deliveries.rule FROM deliveries "
            "JOIN events ON deliveries.event = events.id"
        ).fetchall()
    events = {int(delivery): int(event) for delivery, event, _ in rows}
    return events, {int(delivery): str(rule) for delivery, _, rule in rows}
