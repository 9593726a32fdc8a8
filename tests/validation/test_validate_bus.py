"""`sim validate` on the bus form end to end: `scenarios/validation/bus.yaml` live (90 s of real
time, fixed seeds; two destinations, three rules, an account quota that binds during a burst)
must PASS against the model, and a model that ignores the account quota must FAIL, on the
quantities the quota shapes (docs/validation.md, "The bus").

One live run serves every test in this file (module fixture); the CLI tests reuse it by
patching `run_live`, so the whole file costs 90 live seconds plus two model runs.
"""

import json

import numpy as np
import pytest

from sim.cli import app
from sim.scenario.loading import load_scenario
from sim.validation import pipeline
from sim.validation.live import LiveRun, run_live
from tests.support import ROOT
from tests.support.processes import reusing_live

pytestmark = [pytest.mark.live, pytest.mark.slow]

SCENARIO = ROOT / "scenarios" / "validation" / "bus.yaml"
REPLICATIONS = "100"


@pytest.fixture(scope="module")
def live() -> LiveRun:
    return run_live(load_scenario(SCENARIO))


@pytest.fixture
def cli(live, monkeypatch):
    return reusing_live(monkeypatch, live)


def test_the_live_bus_run_is_complete_and_the_core_kept_both_buckets(live):
    """Every event submitted; each delivery is one (event, rule) the event matched, to the
    right endpoint; the core kept every destination's bucket and the account's."""
    assert live.matches is not None and live.matches.shape == (live.scheduled_at.size, 3)
    assert not np.isnan(live.submitted_at).any()
    matched = int(live.matches[live.submitted_at < live.horizon].sum())
    first = live.records["attempt"] == 1
    assert np.count_nonzero(first) == pytest.approx(matched, abs=5)  # a few past the horizon
    overhead = pipeline.measure(live)
    assert overhead.n_unmatched == 0 and overhead.n_orphans == 0
    assert overhead.n_requests == overhead.n_sent
    check = pipeline.live_conformance(live)
    assert check.ok, check.problems()


def test_bus_passes_against_the_true_model_per_destination_and_rule(cli, tmp_path):
    out = tmp_path / "report"
    result = cli.invoke(
        app, ["validate", str(SCENARIO), "--replications", REPLICATIONS, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "bus: PASS" in result.output
    document = json.loads((out / "validation.json").read_text())
    assert document["verdict"] == "PASS" and document["failed"] == []
    names = set(document["items"])
    for part in ("destinations.payments", "destinations.crm", "rules.customers-to-crm"):
        assert f"{part}.events_arrived" in names and f"{part}.delivery_delay_s.p99" in names
    assert "destinations.crm.backlog[30s]" in names
    report = (out / "report.md").read_text()
    assert "destinations.crm.backlog: worst of" in report and "live_matches.csv" in report
    assert "| account.throttled_fraction |" in report and "BusAccumulator" in report
    assert (out / "live_matches.csv").exists()


def test_a_model_that_ignores_the_account_quota_fails(cli, tmp_path):
    result = cli.invoke(
        app,
        [
            "validate", str(SCENARIO), "--replications", REPLICATIONS,
            "--model-set", "account.invocation_limit_per_second=null",
            "--out", str(tmp_path / "wrong"),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "bus: FAIL" in result.output
    document = json.loads((tmp_path / "wrong" / "validation.json").read_text())
    failed = set(document["failed"])
    # the account's own items: half the live attempts waited for the quota, none in the model
    assert {"account.throttled_fraction", "account.peak_rps"} <= failed
    # the quota held the burst back: without it deliveries wait less, on every destination
    assert "delivery_delay_s.p50" in failed
    for destination in ("payments", "crm"):
        assert any(name.startswith(f"destinations.{destination}.backlog") for name in failed)
    # it delays, never rejects: the counts are right either way
    assert (
        not {"events_arrived", "attempts.delivered", "InvocationsSentToDlq.NonRetryableError"}
        & failed
    )
