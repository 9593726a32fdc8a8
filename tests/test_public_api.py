"""The public API (design §2: notebooks use only this) is exactly what `sim.__all__` lists."""

import inspect

import sim

PUBLIC = [
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


def test_all_is_pinned():
    assert sorted(sim.__all__) == PUBLIC


def test_every_public_name_resolves_to_the_object_not_a_submodule():
    for name in PUBLIC:
        assert inspect.ismodule(getattr(sim, name)) == (name == "plots"), name
    assert sim.plots.__name__ == "sim.report.plots"
    for plot in ("plot_backlog", "plot_sweep_metric", "plot_sizing", "plot_sensitivity"):
        assert callable(getattr(sim.plots, plot)), plot
    assert callable(sim.sweep) and sim.sweep.__module__ == "sim.analysis.sweeps"
    assert sim.size_rate_limit.__module__ == "sim.analysis.sizing"


def test_explore_is_the_widget_builder():
    assert sim.explore.__module__ == "sim.report.explore"
    explore = inspect.signature(sim.explore).parameters
    assert list(explore)[:2] == ["scenario", "overrides"]
    assert {"replications", "horizon", "workers"} <= set(explore)


def test_analysis_signatures():
    sweep = inspect.signature(sim.sweep).parameters
    assert list(sweep)[:3] == ["scenario", "grid", "overrides"]
    assert {"replications", "seed", "horizon", "workers", "dask", "batch_size", "progress"} <= set(
        sweep
    )
    size = inspect.signature(sim.size_rate_limit).parameters
    assert list(size)[:2] == ["scenario", "overrides"]
    assert {"slo", "min_rate", "max_rate", "step", "replications", "workers", "dask"} <= set(size)
