"""Sweeps: grid expansion, tidy and aggregated tables, identical numbers on every backend (one
process, local processes, a real Dask LocalCluster), common random numbers, plots and folders."""

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sim.analysis.sweeps import expand_grid, sweep  # noqa: E402
from sim.errors import InputError  # noqa: E402
from sim.report.analysis import write_sweep_report  # noqa: E402
from sim.report.plots import plot_sweep_heatmap, plot_sweep_metric  # noqa: E402
from sim.results.tables import aggregate  # noqa: E402
from tests.support.builders import scenario  # noqa: E402

RATE = "destination.invocation_rate_limit_per_second"
MIX = "endpoint.responses"
GRID = {RATE: [25, 40], MIX: [{200: 1.0}, {200: 0.9, 503: 0.1}]}


def base():
    """10 minutes, a burst over the limit, some retries: cheap but every metric is exercised."""
    return scenario(
        name="grid",
        horizon=600,
        replications=3,
        seed=4,
        arrivals=[
            {"kind": "constant", "rate_per_second": 15},
            {"kind": "burst", "start": 60, "duration": 60, "rate_per_second": 60},
        ],
        destination={"invocation_rate_limit_per_second": 30},
        endpoint={"latency": {"kind": "lognormal", "median": 0.05, "p99": 0.4}},
        dead_letter_queue=True,
        slo={"max_p99_delivery_delay": 120, "max_dropped_fraction": 0},
    )


@pytest.fixture(scope="module")
def local():
    return sweep(base(), GRID, workers=1)


def test_expand_grid_is_the_cartesian_product_first_key_slowest():
    assert expand_grid({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]
    with pytest.raises(InputError, match="at least one value"):
        expand_grid({"a": []})
    with pytest.raises(InputError, match="list of values"):
        expand_grid({"a": "12"})


def test_tidy_runs_and_aggregates(local):
    runs = local.runs
    assert len(runs) == 4 * 3 and list(runs.columns[:4]) == ["point", RATE, MIX, "replication"]
    assert sorted(runs[RATE].unique()) == [25.0, 40.0]
    assert set(runs[MIX]) == {"{200: 1.0}", "{200: 0.9, 503: 0.1}"}
    agg = local.aggregated
    assert len(agg) == 4 * len(local.metric_names)
    point = runs[runs["point"] == 3]
    expected = aggregate(point[local.metric_names])
    got = local.metric("delivery_delay_s.p99").loc[3]
    assert got["mean"] == expected.loc["delivery_delay_s.p99", "mean"]
    assert got["ci_low"] <= got["mean"] <= got["ci_high"] and got["n"] == 3
    # errors cause retries; a higher limit drains the burst faster
    retries = local.metric("RetryInvocationAttempts")["mean"]
    assert retries.loc[0] == 0 and retries.loc[1] > 0
    delay = local.metric("delivery_delay_s.p99")["mean"]
    assert delay.loc[2] < delay.loc[0]


def test_grid_points_share_random_numbers(local):
    """Common random numbers: replication i sees the same arrivals at every grid point."""
    arrived = local.runs.pivot(index="replication", columns="point", values="events_arrived")
    assert (arrived.nunique(axis=1) == 1).all() and arrived.iloc[:, 0].nunique() == 3


def test_identical_numbers_whatever_workers_and_batches(local):
    for workers, batch in ((2, None), (2, 1), (3, 2)):
        other = sweep(base(), GRID, workers=workers, batch_size=batch)
        pd.testing.assert_frame_equal(other.runs, local.runs, check_exact=True)


@pytest.mark.slow
@pytest.mark.live
def test_identical_numbers_on_a_dask_cluster_by_address(local):
    """As `--dask tcp://host:8786` does: connect to a running scheduler by its address."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        on_dask = sweep(base(), GRID, dask=cluster.scheduler_address, batch_size=2)
        assert on_dask.backend.startswith(
            f"Dask cluster at {cluster.scheduler_address} (2 workers)"
        )
        with distributed.Client(cluster) as client:  # a Client is used as given
            again = sweep(base(), {RATE: [25]}, dask=client, batch_size=3)
    pd.testing.assert_frame_equal(on_dask.runs, local.runs, check_exact=True)
    first = local.runs[local.runs["point"] == 0].drop(
        columns=MIX
    )  # rate 25, all 200 = the base mix
    pd.testing.assert_frame_equal(again.runs, first, check_exact=True)


@pytest.mark.slow
@pytest.mark.live
def test_dask_local_starts_and_stops_its_own_cluster():
    small = {RATE: [25, 40]}
    mine = sweep(base(), small, dask="local", workers=2, replications=2)
    assert "Dask" in mine.backend
    pd.testing.assert_frame_equal(mine.runs, sweep(base(), small, workers=1, replications=2).runs)


def test_resolved_values_and_bad_keys():
    result = sweep(
        base(), {"retry_policy.backoff.cap": ["1m", "5m"]}, workers=1, replications=1, horizon=60
    )
    assert list(result.runs["retry_policy.backoff.cap"]) == [60.0, 300.0]
    with pytest.raises(InputError, match="destination.nope"):
        sweep(base(), {"destination.nope": [1]}, workers=1)


def test_slo_verdict_per_point(local):
    slo = local.slo()
    assert list(slo.columns[-3:]) == ["max_p99_delivery_delay", "max_dropped_fraction", "all_met"]
    assert slo["max_dropped_fraction"].all()
    # 25/s cannot clear the burst within 2 minutes; 40/s can
    assert not slo.loc[0, "max_p99_delivery_delay"] and slo.loc[2, "max_p99_delivery_delay"]


def test_plots(local):
    ax = plot_sweep_metric(local, "delivery_delay_s.p99")
    assert len(ax.lines) == 2 and ax.get_xlabel() == RATE  # one line per response mix
    ax = plot_sweep_metric(local, "backlog_peak", x=MIX, where={RATE: 40})
    assert len(ax.lines) == 1 and [t.get_text() for t in ax.get_xticklabels()][:1] == ["{200: 1.0}"]
    ax = plot_sweep_heatmap(local, "backlog_peak")
    assert ax.images[0].get_array().shape == (2, 2)
    with pytest.raises(ValueError, match="no grid point"):
        plot_sweep_metric(local, "backlog_peak", where={RATE: 99})
    plt.close("all")


def test_report_folder(local, tmp_path: Path):
    folder = write_sweep_report(local, tmp_path / "grid-sweep", metrics=["delivery_delay_s.p99"])
    names = {p.name for p in folder.iterdir()}
    assert {
        "runs.csv",
        "aggregated.csv",
        "slo.csv",
        "scenario.yaml",
        "report.md",
        "delivery_delay_s.p99.png",
        "delivery_delay_s.p99-heatmap.png",
    } <= names
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 12 and runs["events_arrived"].sum() == local.runs["events_arrived"].sum()
    aggregated = pd.read_csv(folder / "aggregated.csv")
    assert {"metric", "mean", "ci_low", "ci_high", "n", RATE, MIX} <= set(aggregated.columns)
    assert "common random numbers" in (folder / "report.md").read_text()


def test_a_null_value_is_a_category_of_its_own():
    """Sweeping burst_capacity over [null, 5]: null (one second of the rate) keeps its own
    line and heatmap row instead of vanishing."""
    result = sweep(
        base(),
        {"destination.burst_capacity": [None, 5], RATE: [25, 40]},
        replications=2,
        horizon=120,
        workers=1,
    )
    bursts = result.runs.groupby("point")["destination.burst_capacity"].first().tolist()
    assert bursts == ["null", "null", 5, 5]
    ax = plot_sweep_metric(result, "delivery_delay_s.p99", x=RATE)
    assert len(ax.lines) == 2
    assert plot_sweep_heatmap(result, "backlog_peak", x=RATE, y="destination.burst_capacity").images
    plt.close("all")


def test_the_line_plot_puts_the_first_varying_parameter_on_x():
    result = sweep(
        base(), {MIX: [{200: 1.0}], RATE: [25, 40]}, replications=2, horizon=120, workers=1
    )
    ax = plot_sweep_metric(result, "backlog_peak")
    assert ax.get_xlabel() == RATE and len(ax.lines[0].get_xdata()) == 2
    plt.close("all")
