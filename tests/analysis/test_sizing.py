"""Rate-limit sizing against answers known in advance: M/D/1 theory for the SLO search, an
endpoint whose capacity is exactly concurrency/latency for the probe, and SLOs no rate meets."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.analysis.sizing import nice_step, size_rate_limit
from sim.analysis.theory import md1_rate_for_wait_quantile
from sim.cli import app
from sim.errors import InputError
from tests.support.builders import scenario

runner = CliRunner()

# Poisson 80/s, zero latency, all 200, burst capacity 1: delivery delay = M/D/1 wait, D = 1/rate.
MD1 = """
name: md1
horizon: 6m
seed: 1
replications: 20
arrivals: [{kind: constant, rate_per_second: 80}]
destination: {invocation_rate_limit_per_second: 100, burst_capacity: 1}
endpoint: {latency: {kind: constant, value: 0}}
slo: {max_p99_delivery_delay: 50ms}
"""


@pytest.mark.slow
def test_issue_sim_size_recommends_the_md1_rate_within_its_step(tmp_path: Path):
    """Theory: the smallest rate whose M/D/1 p99 wait is 50 ms is 118.29/s. The lattice
    82.5, 87.5, ... puts 117.5 and 122.5 around it; either is within one step (5/s)."""
    path = tmp_path / "md1.yaml"
    path.write_text(MD1)
    out = tmp_path / "md1-size"
    result = runner.invoke(
        app, ["size", str(path), "--min", "82.5", "--max", "200", "--step", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    theory = md1_rate_for_wait_quantile(80, 0.99, 0.05)
    assert theory == pytest.approx(118.294, abs=1e-3)
    document = json.loads((out / "size.json").read_text())
    assert abs(document["recommended_rate"] - theory) <= 5
    assert document["binding"] == ["max_p99_delivery_delay"] and document["monotone"]
    assert "Set invocation_rate_limit_per_second to" in result.output
    assert {"size.png", "evaluations.csv", "runs.csv", "report.md"} <= {
        p.name for p in out.iterdir()
    }


def capacity_scenario(**overrides):
    """Poisson 30/s to an endpoint with 5 servers (and 5 queue places) of 100 ms: it serves 50/s."""
    data = dict(
        name="cap",
        horizon=300,
        replications=3,
        seed=2,
        arrivals=[{"kind": "constant", "rate_per_second": 30}],
        endpoint={
            "latency": {"kind": "constant", "value": 0.1},
            "capacity": {"concurrency": 5, "queue": 5},
        },
        slo={"max_p99_delivery_delay": 1},
    )
    data.update(overrides)
    return scenario(**data)


def test_endpoint_probe_finds_concurrency_over_latency():
    """Evenly spaced requests of 100 ms on 5 servers: no queue up to 50/s, overload above."""
    result = size_rate_limit(capacity_scenario(), min_rate=12, max_rate=100, step=5, workers=1)
    assert result.endpoint_limit == 47  # the lattice rate just below 50
    probe = result.endpoint_probe.set_index("rate")
    assert probe.loc[47, "overload_fraction.mean"] == 0
    assert probe.loc[52, "overload_fraction.mean"] > 0
    assert result.met and result.recommended < 47
    assert "The endpoint absorbs up to 47/s without overload." in result.sentence()


def test_no_rate_meets_the_slos_says_which_binds():
    result = size_rate_limit(
        capacity_scenario(endpoint={"latency": {"kind": "constant", "value": 0.3}}),
        slo={"max_p99_delivery_delay": 0.2},
        min_rate=20,
        max_rate=60,
        step=10,
        workers=1,
    )
    assert not result.met and result.recommended is None
    assert result.binding == ["max_p99_delivery_delay"]
    assert (
        "No rate limit in [40, 60]" in result.sentence()
        and "max_p99_delivery_delay" in result.sentence()
    )


@pytest.mark.slow
def test_not_monotone_when_higher_rates_overload_the_endpoint():
    """Without retries an overload answer is dead-lettered: too low a rate fails the delay SLO,
    too high a rate lets Poisson clumps through and overloads the endpoint (DLQ SLO)."""
    s = capacity_scenario(
        horizon=300,
        destination={"invocation_rate_limit_per_second": 30, "burst_capacity": 1},
        endpoint={"latency": {"kind": "constant", "value": 0.1}, "capacity": {"concurrency": 8}},
        retry_policy={"maximum_retry_attempts": 0},
        dead_letter_queue=True,
        slo={"max_p99_delivery_delay": 1, "max_dlq_fraction": 0},
    )
    result = size_rate_limit(s, min_rate=20, max_rate=200, step=10, workers=2)
    table = result.evaluations.set_index("rate")
    assert result.met and 30 <= result.recommended <= 80  # the endpoint serves 80/s
    assert not table.loc[200, "all_met"] and not table.loc[200, "max_dlq_fraction.met"]
    assert table.loc[200, "max_p99_delivery_delay.met"]
    assert not result.monotone and any("not monotone" in note for note in result.notes)
    # a coarse grid that misses the window says that a window may exist
    missed = size_rate_limit(s, min_rate=31, max_rate=500, step=1, workers=2)
    assert not missed.met and any("Different SLOs fail at the two ends" in n for n in missed.notes)


def test_inputs_are_checked():
    with pytest.raises(InputError, match="sets no SLO"):
        size_rate_limit(capacity_scenario(slo={}), min_rate=10, max_rate=20, workers=1)
    with pytest.raises(InputError, match="min ≤ max"):
        size_rate_limit(capacity_scenario(), min_rate=30, max_rate=20, workers=1)
    with pytest.raises(InputError, match="slo.max_p50"):
        size_rate_limit(capacity_scenario(), slo={"max_p50": 1}, workers=1)


def test_nice_step():
    assert [nice_step(s) for s in (199, 300, 1000, 2, 699)] == [1, 2, 5, 0.01, 5]


def test_rates_at_or_below_the_mean_arrival_rate_are_never_recommended():
    """20/s steady against a 2-minute horizon: 16/s would keep p99 under 30 s within the
    horizon while the backlog grows for ever; the search starts above 20/s instead."""
    s = capacity_scenario(
        horizon=120,
        arrivals=[{"kind": "constant", "rate_per_second": 20}],
        endpoint={"latency": {"kind": "constant", "value": 0.05}},
        slo={"max_p99_delivery_delay": 30, "max_dropped_fraction": 0},
    )
    result = size_rate_limit(s, min_rate=1, max_rate=40, step=1, workers=1)
    assert result.met and result.recommended > 20 and result.min_rate == 21
    assert (result.evaluations["rate"] > 20).all()
    assert any("at or below the mean arrival rate (20/s)" in note for note in result.notes)
    with pytest.raises(InputError, match="at or below the mean arrival rate"):
        size_rate_limit(s, min_rate=1, max_rate=20, step=1, workers=1)


def test_one_replication_claims_no_confidence():
    s = capacity_scenario(replications=1)
    result = size_rate_limit(s, min_rate=31, max_rate=45, step=7, workers=1)
    assert "on the mean of 1 replication (no confidence interval)" in result.sentence()
    assert "95 %" not in result.sentence()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"step": 0}, "step: must be positive"),
        ({"overload_tolerance": -1}, "overload_tolerance: must be in [0, 1)"),
        ({"overload_tolerance": 1}, "overload_tolerance: must be in [0, 1)"),
    ],
)
def test_bad_search_options_are_input_errors(options, message):
    with pytest.raises(InputError) as err:
        size_rate_limit(capacity_scenario(), workers=1, **options)
    assert message in str(err.value)
