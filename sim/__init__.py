"""sim: capacity planning for HTTP event delivery (EventBridge API destinations).

The public API is what `__all__` lists; everything else is internal.
"""

from sim.api import simulate, with_overrides
from sim.errors import InputError
from sim.loading import load_scenario
from sim.results import RunResult
from sim.scenario import Scenario

__all__ = ["InputError", "RunResult", "Scenario", "load_scenario", "simulate", "with_overrides"]
