"""Validation of a bus, piece by piece with exact expectations: rule matches drawn for the load
generator, the ideal two-bucket schedule (docs/bus.md B5, T2), the re-timing, the core's
conformance, the per-destination and per-rule observation, and `sim validate`'s refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sim import policy
from sim.cli import app
from sim.live.config.loading import config_for_scenario
from sim.records import Chunk
from sim.scenario.loading import build_scenario, with_overrides
from sim.scenario.loading import load_scenario as build_scenario_file
from sim.scenario.model import Scenario
from sim.validation import pipeline
from sim.validation.bus_observe import observe_bus, observe_bus_replication
from sim.validation.bus_timing import (
    Lines,
    corrected_bus_records,
    ideal_bus_dispatch,
)
from sim.validation.compare import items_of
from sim.validation.live import LiveRun
from sim.validation.loadgen import bus_events, match_draws
from sim.validation.observe import SCALARS, SERIES, observe
from sim.validation.overhead import bus_conformance, ideal_dispatch
from tests.support import ROOT
from tests.support.builders import chunk

NAN = np.nan
BUS_YAML = ROOT / "scenarios" / "validation" / "bus.yaml"


def bus(order: str = "after_destination", **limits: Any) -> Scenario:
    """Destinations `a`, `b`; rules to-a (0.7) -> a, to-b (0.4) and more-b (1) -> b."""
    rates = {"a": 100, "b": 300, "account": 300, **limits}
    endpoint = {"latency": {"kind": "constant", "value": 0.01}}
    data = {
        "name": "t",
        "horizon": 60,
        "seed": 3,
        "arrivals": [{"kind": "constant", "rate_per_second": 10}],
        "account": {"invocation_limit_per_second": rates["account"], "order": order},
        "destinations": [
            {"name": n, "invocation_rate_limit_per_second": rates[n], "endpoint": endpoint}
            for n in ("a", "b")
        ],
        "rules": [
            {"name": "to-a", "match_fraction": 0.7, "target": "a"},
            {"name": "to-b", "match_fraction": 0.4, "target": "b"},
            {"name": "more-b", "match_fraction": 1, "target": "b"},
        ],
        "sample_every": 5,
    }
    return build_scenario(data, source="t.yaml", base_dir=Path("."))


# --- rule matches for the load generator (B2) ---------------------------------------------------


def test_each_event_matches_each_rule_independently_with_its_fraction() -> None:
    s = bus()
    n = 40_000
    matches = match_draws(s, 10_000, n)
    assert matches.shape == (n, 3) and matches.dtype == bool
    for r, p in enumerate((0.7, 0.4)):
        assert abs(matches[:, r].mean() - p) <= 4 * np.sqrt(p * (1 - p) / n)
    assert matches[:, 2].all()  # match_fraction 1 always matches
    both = (matches[:, 0] & matches[:, 1]).mean()
    assert abs(both - 0.28) <= 4 * np.sqrt(0.28 * 0.72 / n)  # independent across rules


def test_the_draws_are_keyed_to_event_and_rule() -> None:
    s = bus()
    whole = match_draws(s, 7, 1_000)
    np.testing.assert_array_equal(match_draws(s, 7, 100), whole[:100])
    assert not np.array_equal(match_draws(s, 8, 1_000), whole)  # another replication
    reordered = with_overrides(s, {"rules.1.match_fraction": 0.9})
    assert (match_draws(reordered, 7, 1_000)[:, 0] == whole[:, 0]).all()  # rule 0 unchanged


def test_events_list_their_rules_and_the_cores_patterns_select_exactly_those() -> None:
    s = bus()
    matches = match_draws(s, 1, 300)
    make = bus_events(s, matches)
    config = config_for_scenario(s, "http://127.0.0.1:1/")
    names = [rule.name for rule in s.bus.rules]
    for index in range(300):
        event = make(index, 0.5)
        assert event["id"] == str(index)
        selected = [rule.Name for rule in config.Rules if rule.pattern.matches(event)]
        assert selected == [name for name, hit in zip(names, matches[index], strict=True) if hit]


# --- the ideal schedule of two buckets (B5) -----------------------------------------------------


def lines(destination: list[int], rule: list[int] | None = None) -> Lines:
    d = np.array(destination)
    r = d if rule is None else np.array(rule)
    return Lines(destination=d, rule=r, delivery=np.arange(d.size))


def test_one_destination_without_quota_is_the_single_forms_bucket() -> None:
    s = bus(account=None, b=None)
    s = build_scenario(
        {**s.resolved(), "account": {"invocation_limit_per_second": None}},
        source="t",
        base_dir=Path("."),
    )
    rng = np.random.default_rng(2)
    ready = np.sort(rng.uniform(0, 5, 400))
    records = chunk(event_id=np.arange(400), ready_at=ready, dispatch_at=ready)
    ideal = ideal_bus_dispatch(s.bus, lines([0] * 400), records)[0]
    np.testing.assert_allclose(ideal, ideal_dispatch(records, 100.0, 100.0), atol=1e-9)


@pytest.mark.parametrize(
    ("order", "a_rate", "b_rate"),
    [("after_destination", 100, 200), ("before_destination", 100, 150)],
)
def test_theory_t2_the_order_decides_what_the_quota_passes(
    order: str, a_rate: float, b_rate: float
) -> None:
    """docs/bus.md T2: `a` 100/s, `b` 300/s, both fed 400/s, account 300/s: after the bursts
    `a` gets 100/s either way; `b` 200/s after the destination, 150/s before it."""
    s = bus(order)
    ready = np.arange(0, 60, 1 / 400)
    both = np.concatenate((ready, ready))
    order_ = np.argsort(both, kind="stable")
    dest = np.concatenate((np.zeros(ready.size, int), np.ones(ready.size, int)))[order_]
    records = chunk(event_id=np.arange(both.size), ready_at=both[order_], dispatch_at=both[order_])
    dispatch = ideal_bus_dispatch(s.bus, lines(list(dest)), records)[0]
    window = (dispatch >= 20) & (dispatch < 60)
    assert ((dest == 0) & window).sum() / 40 == pytest.approx(a_rate, rel=0.01)
    assert ((dest == 1) & window).sum() / 40 == pytest.approx(b_rate, rel=0.01)
    for rate, burst, keep in ((100, 100, dest == 0), (300, 300, dest == 1), (300, 300, dest >= 0)):
        earliest, _ = policy.gcra_schedule(0.0, rate, burst, np.sort(records["ready_at"][keep]))
        assert (np.sort(dispatch[keep]) >= earliest - 1e-9).all()  # no bucket ever exceeded
    assert (dispatch >= records["ready_at"] - 1e-12).all()


def test_the_account_serves_oldest_eligible_first_ties_in_destination_order() -> None:
    s = bus(a=None, b=None, account=1)  # one token a second, burst 1
    records = chunk(
        event_id=[1, 2, 3, 4],
        ready_at=[0.5, 0.0, 0.0, 1.5],
        dispatch_at=[1.0, 1.0, 1.0, 1.0],  # sent
    )
    ideal = ideal_bus_dispatch(s.bus, lines([1, 1, 0, 0]), records)[0]
    # ties at 0.0: `a` (row 2) first; then `b`'s row 1 (ready 0) at the next token, 1.0; then
    # `b`'s row 0, eligible from 1.0 (its line's last grant), before `a`'s row 3 (ready 1.5)
    np.testing.assert_allclose(ideal, [2.0, 1.0, 0.0, 3.0])


def test_the_re_timing_chains_each_deliverys_attempts_through_both_buckets() -> None:
    """Account 1/s (burst 1), destinations unlimited. Delivery 1 (to `a`): a 503 after 0.1 s
    then a 200, 0.5 s of backoff between; delivery 2 (to `b`): one 200. Live the core was
    late by 10-20 ms; the ideal core sends 1 at 0, 2 at 1 (the next token, older than 1's
    retry, ready at 0.6), the retry at 2."""
    s = bus(a=None, b=None, account=1)
    records = chunk(
        event_id=[1, 2, 1],
        attempt=[1, 1, 2],
        arrival_at=[0.0, 0.0, 0.0],
        ready_at=[0.0, 0.0, 0.62],
        dispatch_at=[0.01, 1.02, 2.02],
        complete_at=[0.12, 1.08, 2.09],
        next_ready_at=[0.62, NAN, NAN],
        status=[503, 200, 200],
        outcome=[policy.RETRY, policy.DELIVERED, policy.DELIVERED],
        final=[policy.NO_FINAL, policy.FINAL_DELIVERED, policy.FINAL_DELIVERED],
    )
    excess = np.array([0.01, 0.0, 0.0])  # the client saw 0.11 s; the endpoint spent 0.10 s
    out = corrected_bus_records(s.bus, lines([0, 1, 0], [0, 1, 0]), records, excess)
    np.testing.assert_allclose(out["dispatch_at"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(out["complete_at"], [0.1, 1.06, 2.07])
    np.testing.assert_allclose(out["ready_at"], [0.0, 0.0, 0.6])
    np.testing.assert_allclose(out["next_ready_at"][:1], [0.6])
    # waits for the account after the destination let it go: 2 from 0 to 1; the retry, eligible
    # at 0.6, from 0.6 to 2
    np.testing.assert_allclose(out["account_wait_s"], [0.0, 1.0, 1.4])


# --- the core's conformance on a bus ------------------------------------------------------------


def bus_live(s: Scenario, records: Chunk, rules: dict[int, str]) -> LiveRun:
    n = records["event_id"].size
    return LiveRun(
        scenario=s,
        replication=0,
        scheduled_at=np.zeros(n),
        submitted_at=np.zeros(n),
        arrival_times=records["arrival_at"],
        records=records,
        requests=[],
        event_of_delivery={},
        wall_s=0.0,
        matches=np.ones((n, 3), dtype=bool),
        rule_of_delivery=rules,
    )


def test_a_core_that_ignores_the_account_quota_does_not_conform() -> None:
    s = bus()
    ready = np.arange(0, 10, 1 / 300)  # 300/s to each: `a` passes 100/s, `b` 300/s: 400 > 300/s
    both = np.sort(np.concatenate((ready, ready)), kind="stable")
    dest = np.tile([0, 1], ready.size)
    rule_names = {0: "to-a", 1: "to-b"}
    ids = np.arange(both.size)
    ideal_records = chunk(event_id=ids, ready_at=both, dispatch_at=both)
    ideal = ideal_bus_dispatch(s.bus, lines(list(dest)), ideal_records)[0]
    conforming = chunk(event_id=ids, ready_at=both, dispatch_at=ideal)
    rules = {int(i): rule_names[int(d)] for i, d in zip(ids, dest, strict=True)}
    assert bus_conformance(bus_live(s, conforming, rules)).ok
    no_quota = with_overrides(s, {"account.invocation_limit_per_second": None})
    greedy = ideal_bus_dispatch(no_quota.bus, lines(list(dest)), ideal_records)[0]
    check = bus_conformance(
        bus_live(s, chunk(event_id=ids, ready_at=both, dispatch_at=greedy), rules)
    )
    assert not check.ok and check.ahead > 0
    assert "ahead of the token bucket" in check.problems()[0]


# --- what is compared -----------------------------------------------------------------------------


def test_a_bus_observation_is_the_whole_bus_plus_each_destination_and_rule() -> None:
    s = bus(a=None, b=None, account=None)
    rng = np.random.default_rng(4)
    n = 600
    rule = rng.integers(0, 3, n)
    arrival = np.sort(rng.uniform(0, 55, n))
    status = np.where(rng.uniform(size=n) < 0.1, 400, 200)
    records = chunk(
        event_id=np.arange(n),
        attempt=np.ones(n),
        arrival_at=arrival,
        ready_at=arrival,
        dispatch_at=arrival + 0.5,
        complete_at=arrival + 0.6,
        status=status,
        outcome=np.where(status == 200, policy.DELIVERED, policy.FAILED),
        final=np.where(status == 200, policy.FINAL_DELIVERED, policy.FINAL_DROPPED),
        final_reason=np.where(status == 200, policy.NO_REASON, policy.NOT_RETRYABLE),
    )
    arrivals = [arrival[rule == r] for r in range(3)]
    obs = observe_bus(s, 0, records, rule, arrivals)
    parts = {"destinations.a": [0], "destinations.b": [1, 2]}
    for metric in ("events_arrived", "attempts.delivered", "attempts.failed", "events_dropped"):
        total = obs.scalars[metric]
        assert total == sum(obs.scalars[f"destinations.{d}.{metric}"] for d in "ab")
        assert total == sum(obs.scalars[f"rules.{r.name}.{metric}"] for r in s.bus.rules)
        assert obs.scalars[f"{next(iter(parts))}.{metric}"] == obs.scalars[f"rules.to-a.{metric}"]
    assert obs.scalars["rules.to-b.events_arrived"] == (rule == 1).sum()
    for name in SERIES:
        np.testing.assert_array_equal(
            obs.series[name],
            obs.series[f"destinations.a.{name}"] + obs.series[f"destinations.b.{name}"],
        )
    items = items_of([obs])
    assert items.names[: len(SCALARS)] == list(SCALARS)  # the whole bus reads as one destination
    assert (
        "destinations.b.backlog[10s]" in items.names
        and "rules.more-b.events_dropped" in items.names
    )


def test_the_single_forms_items_are_unchanged() -> None:
    from tests.support.builders import scenario as single

    s = single(horizon=20, sample_every=5)
    obs = observe(s, 0, [np.array([1.0, 2.0])], [chunk(event_id=[])])
    names = list(SCALARS)
    for series in SERIES:
        names += [f"{series}[{t:g}s]" for t in obs.bin_end_s]
    assert items_of([obs]).names == names


# --- sim validate on a bus ------------------------------------------------------------------------


def test_the_models_bus_observation_counts_each_rules_matches_and_adds_up() -> None:
    """The model side of a bus validation (`observe_bus_replication`): the model's records
    carry their rule, its sink reports each rule's matches, and the parts add up to the bus."""
    s = with_overrides(bus(), {"horizon": 30})
    obs = observe_bus_replication(s, 0)
    events = obs.scalars["events_arrived"]
    rules = [obs.scalars[f"rules.{r.name}.events_arrived"] for r in s.bus.rules]
    assert (
        events == sum(rules) == sum(obs.scalars[f"destinations.{d}.events_arrived"] for d in "ab")
    )
    bus_events = rules[2]  # `more-b` matches every event: Poisson 10/s over 30 s
    assert abs(bus_events - 300) <= 4 * np.sqrt(300)
    for matched, rule in zip(rules[:2], s.bus.rules[:2], strict=True):  # binomial shares
        expected = bus_events * rule.match_fraction
        assert abs(matched - expected) <= 4 * np.sqrt(expected * (1 - rule.match_fraction))
    for name in ("attempts.delivered", "events_delivered", "backlog_peak"):
        assert f"destinations.b.{name}" in obs.scalars and f"rules.to-a.{name}" in obs.scalars
    assert obs.scalars["attempts.delivered"] == sum(
        obs.scalars[f"rules.{r.name}.attempts.delivered"] for r in s.bus.rules
    )
    assert obs.scalars["attempts.delivered"] > 0.9 * events
    live_names = observe_bus(s, 0, chunk(event_id=[]), np.zeros(0, int), [np.zeros(0)] * 3)
    assert items_of([obs]).names == items_of([live_names]).names  # the live run's items
    assert obs.scalars["account.throttled_fraction"] == 0.0  # 300/s: never binds at ~21/s
    tight = observe_bus_replication(
        with_overrides(s, {"account.invocation_limit_per_second": 5}), 0
    )
    assert tight.scalars["account.throttled_fraction"] > 0.5  # ~21 deliveries/s against 5/s
    assert tight.scalars["account.peak_rps"] <= 5 + 5  # the quota and its one-second burst
    items = items_of([tight])
    floor = dict(zip(items.names, items.floors, strict=True))
    # a part's delays are delays (1 ms), a fraction is a fraction (0.001), a count a count (1)
    assert floor["destinations.a.delivery_delay_s.p99"] == floor["delivery_delay_s.p99"] == 0.001
    assert floor["rules.more-b.delivery_delay_s.p50"] == 0.001
    assert floor["account.throttled_fraction"] == 0.001
    assert floor["destinations.b.backlog_peak"] == floor["account.peak_rps"] == 1.0
    no_quota = with_overrides(s, {"account.invocation_limit_per_second": None})
    quota_less = observe_bus_replication(no_quota, 0)  # a quota-less model: the same items
    assert items_of([quota_less]).names == items.names
    assert quota_less.scalars["account.throttled_fraction"] == 0.0


def test_sim_validate_accepts_a_bus_and_checks_it_before_any_live_run(monkeypatch) -> None:
    def no_live_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no live run for refused input")

    monkeypatch.setattr(pipeline, "run_live", no_live_run)
    pipeline.check_validatable(build_scenario_file(BUS_YAML))  # accepted: no error
    result = CliRunner().invoke(
        app, ["validate", str(BUS_YAML), "--model-set", "rules.nowhere.match_fraction=0.5"]
    )
    assert result.exit_code == 2
    lines_ = result.output.strip().splitlines()
    assert len(lines_) == 1 and lines_[0].startswith("error: ") and "nowhere" in lines_[0]


def test_a_bus_the_core_cannot_run_is_refused_naming_the_key() -> None:
    s = with_overrides(bus(), {"destinations.1.timeout": 9})
    with pytest.raises(Exception) as caught:
        pipeline.check_validatable(s)
    assert getattr(caught.value, "key", None) == "destinations.1.timeout"
