"""sim: capacity planning for HTTP event delivery (EventBridge API destinations).

The packages follow the one-way flow of design §2; each imports only those listed before it
(enforced by `make lint`, see `.importlinter`):

    errors, scenario, rng, policy, records   inputs and the shared vocabulary at the bottom
    endpoint                                 the partner endpoint's behaviour (model, queue, HTTP)
    des | live                               the two engines, independent of each other
    results, runner                          metrics from records; running replications
    plan                                     a bus scenario drafted from the user's template
    analysis, fit, report                    sweeps, sizing, sensitivity; fits to the user's data;
                                             folders and plots
    validation, cli                          the live core against the model; the command line

The public API is what `__all__` lists; everything else is internal. Names load on first use
(PEP 562), so `import sim` — and the `sim` command — start without SciPy or matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "InputError": "sim.errors",
    "backtest": "sim.validation.backtest",
    "explore": "sim.report.explore",
    "fit_arrivals": "sim.fit.arrivals",
    "fit_endpoint": "sim.fit.logs",
    "RunResult": "sim.results.run",
    "Scenario": "sim.scenario.model",
    "load_scenario": "sim.scenario.loading",
    "plots": "sim.report.plots",
    "simulate": "sim.runner.simulate",
    "size_rate_limit": "sim.analysis.sizing",
    "sweep": "sim.analysis.sweeps",
    "with_overrides": "sim.scenario.loading",
}

__all__ = [
    "InputError",
    "RunResult",
    "Scenario",
    "backtest",
    "explore",
    "fit_arrivals",
    "fit_endpoint",
    "load_scenario",
    "plots",
    "simulate",
    "size_rate_limit",
    "sweep",
    "with_overrides",
]


_MODULES = {"plots"}
"""Public names that are modules: `sim.plots.plot_backlog(result)` and the other plots."""

assert sorted(__all__) == sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return import_module(_PUBLIC[name])
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from sim.analysis.sizing import size_rate_limit
    from sim.analysis.sweeps import sweep
    from sim.errors import InputError
    from sim.fit.arrivals import fit_arrivals
    from sim.fit.logs import fit_endpoint
    from sim.report import plots
    from sim.report.explore import explore
    from sim.results.run import RunResult
    from sim.runner.simulate import simulate
    from sim.scenario.loading import load_scenario, with_overrides
    from sim.scenario.model import Scenario
    from sim.validation.backtest import backtest
