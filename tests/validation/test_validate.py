"""`sim validate` end to end: the CI scenario live (60 s of real time, fixed seeds) must PASS
against the model, and FAIL against deliberately wrong models, on the metrics they get wrong.

One live run serves every test in this file (module fixture); the CLI tests reuse it by
patching `run_live`, so the whole file costs one live minute plus the model runs.
"""

import json

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.scenario.loading import load_scenario
from sim.validation import pipeline
from sim.validation.live import LiveRun, run_live
from sim.validation.pipeline import validate
from tests.support import ROOT
from tests.support.processes import reusing_live

pytestmark = [pytest.mark.live, pytest.mark.slow]

SCENARIO = ROOT / "scenarios" / "validation" / "steady-errors.yaml"
RETRY_4XX = "retry_policy.retry_statuses=[409, 429, 5xx, 400]"


@pytest.fixture(scope="module")
def live() -> LiveRun:
    return run_live(load_scenario(SCENARIO))


@pytest.fixture
def cli(live, monkeypatch):
    return reusing_live(monkeypatch, live)


def test_the_live_run_is_complete_and_consistent(live):
    """Every event submitted, every attempt the core recorded reached the endpoint."""
    assert live.arrival_times.size == live.scheduled_at.size > 3000
    assert live.loop in ("asyncio", "uvloop")
    overhead = pipeline.measure(live)
    assert overhead.n_unmatched == 0 and overhead.n_orphans == 0
    assert overhead.n_requests == overhead.n_sent


def test_ci_scenario_passes_against_the_true_model(cli, tmp_path):
    out = tmp_path / "report"
    result = cli.invoke(
        app, ["validate", str(SCENARIO), "--replications", "200", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "steady-errors: PASS" in result.output
    document = json.loads((out / "validation.json").read_text())
    assert document["verdict"] == "PASS" and document["failed"] == []
    assert document["statistic"] <= document["critical"]
    assert document["arrivals"] == "replay"  # the model replays the live arrival times, so:
    assert (
        document["items"]["events_arrived"]["model_pi95"]
        == [document["items"]["events_arrived"]["live"]] * 2
    )
    for name in ("report.md", "items.png", "levels.png", "throughput.png", "delay_cdf.png"):
        assert (out / name).stat().st_size > 0
    assert "PASS" in (out / "report.md").read_text().splitlines()[0]


def test_a_model_that_retries_4xx_fails_on_what_4xx_decide(cli, tmp_path):
    out = tmp_path / "wrong"
    args = ["validate", str(SCENARIO), "--replications", "100", "--model-set", RETRY_4XX]
    result = cli.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "steady-errors: FAIL" in result.output
    failed = set(json.loads((out / "validation.json").read_text())["failed"])
    # live: 2 % of requests are 400s, failed at once into the DLQ; the wrong model retries them
    assert {"attempts.failed", "InvocationsSentToDlq.NonRetryableError"} <= failed
    assert "RetryInvocationAttempts" in failed


def test_a_model_that_ignores_retry_after_fails_on_delays_and_the_retry_pool(live):
    """Unconditional this time: each model replication draws its own arrivals."""
    overrides = {"endpoint.retry_after": {}}
    result = validate(
        live.scenario, replications=100, live=live, model_overrides=overrides, arrivals="model"
    )
    failed = set(result.comparison.failed())
    assert not result.passed and result.exit_code == 1
    # live: a 429 waits max(backoff, Retry-After 3 s); without Retry-After it waits ~0.2-0.4 s,
    # so the 4 % of events that met a 429 are delivered ~3 s sooner and the retry pool is
    # nearly empty. (The KS distance fails too, more narrowly: it is a 4 % tail.)
    assert {"delivery_delay_s.p99", "retry_pool_peak"} <= failed
    assert sum(name.startswith("retry_pool[") for name in failed) >= 6
    # what Retry-After does not change still agrees
    for name in ("events_arrived", "attempts.failed", "attempts.timeout", "delivery_delay_s.p50"):
        assert result.comparison.item(name).inside, name


def test_bad_input_exits_2_with_one_line_before_any_live_run(monkeypatch, tmp_path):
    def never(*args, **kwargs):
        raise AssertionError("no live run on bad input")

    monkeypatch.setattr(pipeline, "run_live", never)
    runner = CliRunner()
    for args in (
        [str(SCENARIO), "--replications", "10"],
        [str(SCENARIO), "--model-set", "endpoint.nonsense=1"],
        [str(SCENARIO), "--loop", "tokio"],
        [str(tmp_path / "missing.yaml")],
    ):
        result = runner.invoke(app, ["validate", *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
