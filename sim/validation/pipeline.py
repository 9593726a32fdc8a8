"""`validate`: run a scenario live and in the model, compare, and write the report folder."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import InputError
from sim.runner.executor import Progress
from sim.scenario.model import Scenario
from sim.validation.bus_observe import live_bus_observations, observe_bus_replication
from sim.validation.compare import ALPHA, MIN_REPLICATIONS, calibrate
from sim.validation.ladder import Deviation, ladder
from sim.validation.live import LiveRun, run_live
from sim.validation.observe import (
    Observation,
    observe,
    observe_replication,
    replaying,
    run_model,
)
from sim.validation.overhead import (
    Conformance,
    Overhead,
    bus_conformance,
    conformance,
    corrected_records,
    measure,
)
from sim.validation.power import PowerRow, run_power
from sim.validation.recording import Recording, check_matches, save_live
from sim.validation.result import ArrivalsMode, Validation

DEFAULT_REPLICATIONS = 500
"""Model replications by default: enough for stable scales and the 95 % critical value."""

LAYOUT_KEYS = ("horizon", "sample_every")
"""Keys that set the compared items (time bins, the horizon cut): live and model must agree."""


def check_validatable(scenario: Scenario) -> None:
    """Refuse what the validation cannot check honestly, before any live run (InputError).

    `throttle_order: lifo`: the overhead correction and the core's conformance check replay
    attempts oldest-ready first; a LIFO core would be re-timed FIFO-style and FAIL falsely.
    A bus: its live core config must be buildable (`check_bus_validatable`).
    """
    if scenario.is_bus:
        check_bus_validatable(scenario)
        return
    if scenario.destination.throttle_order != "fifo":
        raise InputError(
            scenario.source,
            "destination.throttle_order",
            f"{scenario.destination.throttle_order!r} is not supported by sim validate: the "
            "overhead correction and the core's conformance check assume fifo",
        )


def check_bus_validatable(scenario: Scenario) -> None:
    """A bus: every destination `fifo` (as for one destination) and a core config that does what
    the scenario says (`config_for_scenario`: settings the core takes once must agree)."""
    from sim.live.config.loading import config_for_scenario

    for i, destination in enumerate(scenario.bus.destinations):
        if destination.throttle_order != "fifo":
            raise InputError(
                scenario.source,
                f"destinations.{i}.throttle_order",
                f"{destination.throttle_order!r} is not supported by sim validate: the "
                "overhead correction and the core's conformance check assume fifo",
            )
    config_for_scenario(scenario, "http://127.0.0.1:1/")


def check_model_overrides(overrides: Mapping[str, Any], arrivals: ArrivalsMode) -> None:
    """Refuse model-only overrides that would change what is compared (InputError).

    `horizon` and `sample_every` set the items (time bins) and must be the same live and in the
    model (use `--set`); in `replay` mode the model's arrivals are the live run's, so a
    model-only `arrivals` override would be silently replaced.
    """
    for key in overrides:
        top = key.split(".", 1)[0].split("[", 1)[0]
        if top in LAYOUT_KEYS:
            raise InputError(
                None,
                "model_overrides",
                f"{key}: cannot differ between live and model (it sets the compared time "
                "bins); change it for both",
            )
        if top == "arrivals" and arrivals == "replay":
            raise InputError(
                None,
                "model_overrides",
                f"{key}: with arrivals 'replay' the model replays the live arrivals; use "
                "arrivals 'model' to give the model its own arrivals",
            )


def live_arrivals(live: LiveRun) -> np.ndarray:
    """Arrival times the core recorded before the horizon, sorted (what the model can see).

    For a bus, the events put on the bus (one per event, whatever it matched): when the load
    generator submitted them (`LiveRun.submitted_at`).
    """
    times = np.sort(live.submitted_at if live.scenario.is_bus else live.arrival_times)
    return times[times < live.horizon]


def observe_live(
    live: LiveRun, overhead: Overhead | None = None
) -> tuple[Overhead, Observation, Observation]:
    """The live run's overhead (measured now, unless given) and its raw and
    overhead-corrected observations.

    The correction assumes the core kept to its schedule; `conformance` checks that it did.

    Raw: the core's records as they are, requests counted where the endpoint received them.
    Corrected: records re-timed on an ideal core (`corrected_records`), requests counted at
    their corrected dispatch times.
    """
    overhead = overhead if overhead is not None else measure(live)
    if live.scenario.is_bus:
        return overhead, *live_bus_observations(live, overhead)
    destination = live.scenario.destination
    ideal = corrected_records(
        live.records, overhead, destination.invocation_rate_limit_per_second, destination.burst
    )
    received_at = np.array([r.arrival_at for r in live.requests], dtype=float)
    scenario, replication, arrivals = live.scenario, live.replication, [live_arrivals(live)]
    raw = observe(scenario, replication, arrivals, [live.records], received_at)
    corrected = observe(scenario, replication, arrivals, [ideal])
    return overhead, raw, corrected


def live_conformance(live: LiveRun) -> Conformance:
    """Did the live core keep to its schedule (`overhead.conformance`; a bus: every bucket)?"""
    if live.scenario.is_bus:
        return bus_conformance(live)
    destination = live.scenario.destination
    return conformance(
        live.records, destination.invocation_rate_limit_per_second, destination.burst
    )


def validate(
    scenario: Scenario,
    *,
    replications: int = DEFAULT_REPLICATIONS,
    model_overrides: Mapping[str, Any] | None = None,
    arrivals: ArrivalsMode = "replay",
    out: Path | None = None,
    live: LiveRun | None = None,
    replay: Recording | None = None,
    record: Path | None = None,
    power: bool = False,
    power_settings: Collection[str] | None = None,
    loop: str | None = None,
    workers: int | None = None,
    alpha: float = ALPHA,
    progress: Callable[[str], None] | None = None,
    model_progress: Progress | None = None,
) -> Validation:
    """Run `scenario` live (unless a previous `live` run of it, or a `replay` recording, is
    given) and in the model, compare them and, with `out`, write the report folder there.

    The model runs `replications` replications with `model_overrides` applied (to the model
    only: a deliberately wrong model must FAIL) and, with `arrivals="replay"`, the live run's
    arrival times. `loop` picks the live run's event loop (`sim.live.delivery.loops`).
    `record`: save the live run there (`sim.validation.recording`), with the validation's
    verdict once known. `power`: also test the live run against the deviation ladder
    (`sim.validation.power`), of every setting or of `power_settings` only. `model_progress`
    gets the fraction of the model work done.
    """
    from sim.scenario.loading import with_overrides

    if replications < MIN_REPLICATIONS:
        raise ValueError(f"replications must be at least {MIN_REPLICATIONS} (got {replications})")
    overrides = dict(model_overrides or {})
    check_validatable(scenario)
    if scenario.is_bus and (power or record is not None):  # single-form ladder and recordings
        raise InputError(None, "power" if power else "record", "not supported for a bus yet")
    check_model_overrides(overrides, arrivals)
    model_scenario = with_overrides(scenario, overrides)
    say = progress or (lambda message: None)
    if replay is not None:
        check_matches(replay, scenario)
        live = replay.live
    if live is None:
        say(f"live run: {scenario.horizon:g} s of real time")
        live = run_live(scenario, loop=loop)
    overhead, raw, corrected = observe_live(live, replay.overhead if replay else None)
    if record is not None:
        save_live(record, live, overhead)  # at once: a later failure must not lose the live run
    conforms = live_conformance(live)
    parts = 1 + (len(ladder(model_scenario, power_settings)[0]) if power else 0)
    say(f"model: {replications} replications" + (f", then {parts - 1} deviations" if power else ""))
    started = time.perf_counter()
    replayed_arrivals = live_arrivals(live) if arrivals == "replay" else None
    with tempfile.TemporaryDirectory(prefix="sim-validate-") as folder:
        if replayed_arrivals is not None:
            model_scenario = replaying(model_scenario, replayed_arrivals, Path(folder))
        tick = None if model_progress is None else (lambda f: model_progress(f / parts))
        one = observe_bus_replication if model_scenario.is_bus else observe_replication
        model = run_model(
            model_scenario, replications, workers=workers, progress=tick, observe_one=one
        )
    model_wall_s = time.perf_counter() - started
    calibration = calibrate(model, alpha)
    result = Validation(
        scenario=scenario,
        model_scenario=model_scenario,
        model_overrides=overrides,
        arrivals=arrivals,
        live=live,
        overhead=overhead,
        live_raw=raw,
        live_corrected=corrected,
        model=model,
        comparison=calibration.test(corrected),
        comparison_raw=calibration.test(raw),
        model_wall_s=model_wall_s,
        conformance=conforms,
        replayed_from=replay.path if replay is not None else None,
    )
    if power:
        power_tick = None
        if model_progress is not None:
            power_tick = lambda f: model_progress((1 + f * (parts - 1)) / parts)  # noqa: E731
        result.power = run_power(
            with_overrides(scenario, overrides),
            corrected,
            baseline_row(result),
            replications=replications,
            conforms=conforms.ok,
            arrivals=replayed_arrivals,
            workers=workers,
            alpha=alpha,
            settings=power_settings,
            progress=power_tick,
        )
    if record is not None:
        result.recorded_to = save_live(record, live, overhead, result)
    if out is not None:
        from sim.validation.report import write_report

        result.report_dir = write_report(result, out)
    return result


def baseline_row(v: Validation) -> PowerRow:
    """The validated model's own row of the power table (deviation `none`)."""
    c = v.comparison
    none = Deviation("baseline", "none", "as validated", {})
    return PowerRow(none, c.statistic, c.critical, v.passed, c.failed())
