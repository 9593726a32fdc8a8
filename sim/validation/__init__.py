"""Validation (design §7): the model against the real delivery core, run at small scale.

`validate(scenario)` runs the scenario live — a load generator replaying its arrivals in real
time into the delivery core, which delivers to a local endpoint serving the scenario's
endpoint model over HTTP on 127.0.0.1 — and in the model for N replications, then tests every
metric against the model's simultaneous 95 % prediction intervals (`compare`) and writes the
report folder (`report`). `save_live`/`load_live` keep a live run in one file to validate
against again (`recording`); `run_power` tests it against a ladder of wrong models, one setting
at a time, for the validation's resolution (`power`, `ladder`). Names load on first use, so
importing the package is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "LIVE_REPLICATION": "sim.validation.live",
    "LiveRun": "sim.validation.live",
    "run_live": "sim.validation.live",
    "Validation": "sim.validation.result",
    "validate": "sim.validation.pipeline",
    "Comparison": "sim.validation.compare",
    "calibrate": "sim.validation.compare",
    "Recording": "sim.validation.recording",
    "load_live": "sim.validation.recording",
    "save_live": "sim.validation.recording",
    "Power": "sim.validation.power",
    "run_power": "sim.validation.power",
}

__all__ = [
    "LIVE_REPLICATION",
    "Comparison",
    "LiveRun",
    "Power",
    "Recording",
    "Validation",
    "calibrate",
    "load_live",
    "run_live",
    "run_power",
    "save_live",
    "validate",
]

assert sorted(__all__) == sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sim.validation' has no attribute {name!r}")


if TYPE_CHECKING:
    from sim.validation.compare import Comparison, calibrate
    from sim.validation.live import LIVE_REPLICATION, LiveRun, run_live
    from sim.validation.pipeline import validate
    from sim.validation.power import Power, run_power
    from sim.validation.recording import Recording, load_live, save_live
    from sim.validation.result import Validation
