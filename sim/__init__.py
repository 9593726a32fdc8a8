"""sim: capacity planning for HTTP event delivery (EventBridge API destinations).

The public API is what `__all__` lists; everything else is internal. Names load on first use
(PEP 562), so `import sim` — and the `sim` command — start without SciPy or matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "InputError": "sim.errors",
    "RunResult": "sim.results",
    "Scenario": "sim.scenario",
    "load_scenario": "sim.loading",
    "simulate": "sim.api",
    "size_rate_limit": "sim.sizing",
    "sweep": "sim.sweeps",
    "with_overrides": "sim.api",
}

__all__ = [
    "InputError",
    "RunResult",
    "Scenario",
    "load_scenario",
    "simulate",
    "size_rate_limit",
    "sweep",
    "with_overrides",
]


assert sorted(__all__) == sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from sim.api import simulate, with_overrides
    from sim.errors import InputError
    from sim.loading import load_scenario
    from sim.results import RunResult
    from sim.scenario import Scenario
    from sim.sizing import size_rate_limit
    from sim.sweeps import sweep
