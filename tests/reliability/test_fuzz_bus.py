"""Fuzzing the bus: every mutated bus scenario is a valid model or one error line naming a key,
and every valid core config drafts a valid bus scenario (`sim scenario`), whatever its names,
buses and targets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.live.config.loading import build_config
from sim.plan.draft import draft_scenario
from sim.scenario.loading import load_scenario, set_path
from tests.support.processes import all_finite, assert_one_error_line, fuzz_settings

pytestmark = pytest.mark.slow

runner = CliRunner()
ENDPOINT = {"latency": {"kind": "lognormal", "median": "100ms", "p99": "1s"}}
BASE: dict[str, Any] = {
    "name": "fuzz-bus",
    "horizon": "10m",
    "arrivals": [{"kind": "constant", "rate_per_second": 50}],
    "account": {"invocation_limit_per_second": 80, "burst_capacity": 10, "order": "after_destination"},
    "destinations": [
        {"name": "a", "invocation_rate_limit_per_second": 50, "endpoint": ENDPOINT},
        {"name": "b.eu", "invocation_rate_limit_per_second": None, "endpoint": ENDPOINT},
    ],
    "rules": [
        {"name": "r1", "match_fraction": 0.5, "target": "a"},
        {"name": "r2", "match_fraction": 1, "target": "b.eu", "dead_letter_queue": True,
         "retry_policy": {"maximum_event_age": "1h", "maximum_retry_attempts": 3}},
    ],
}  # fmt: skip
KEYS = [
    "account", "account.invocation_limit_per_second", "account.order", "account.burst_capacity",
    "destinations", "destinations.0", "destinations.0.name", "destinations.1.endpoint",
    "destinations.b.eu.invocation_rate_limit_per_second", "destinations.a.endpoint.latency",
    "rules", "rules.0", "rules.0.target", "rules.r2.match_fraction", "rules.1.name",
    "rules.r1.retry_policy", "destination", "endpoint", "retry_policy", "dead_letter_queue",
]  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "b.eu", "c", "", "after_destination", "1h", {}, [], [{}], ENDPOINT]),
    st.dictionaries(st.sampled_from(["name", "target", "endpoint", "x"]), st.text(max_size=4)),
)


@fuzz_settings(120)
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_mutated_bus_loads_or_fails_with_one_line(tmp_path_factory, changes):
    data = copy.deepcopy(BASE)
    for key, value in changes:
        try:
            set_path(data, key, copy.deepcopy(value))
        except InputError:
            continue  # an earlier change removed this path
    path = tmp_path_factory.mktemp("bus") / "bus.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        scenario = load_scenario(path)
    except InputError as err:
        assert err.source == str(path) and "\n" not in err.line()
        result = runner.invoke(app, ["check", str(path)])
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, str(path))
        return
    assert all_finite(scenario.model_dump())
    bus = scenario.bus
    assert len(bus.targets) == len(bus.rules)
    assert {d.name for d in bus.destinations} == {r.target for r in bus.rules}
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output


SECRET = "fuzz-api-key-7f3a9c1e5b"  # long, as real keys are: a name never holds it by chance
NAMES = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid core config: 1-4 destinations, 1-5 rules of 1-5 targets on 1-2 buses."""
    destinations = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    rules = []
    for bus in draw(st.lists(st.sampled_from(["default", "audit"]), min_size=1, max_size=5)):
        targets = [
            {
                "Id": target_id,
                "Arn": draw(st.sampled_from(destinations)),
                "RetryPolicy": {"MaximumRetryAttempts": draw(st.integers(0, 185))},
            }
            for target_id in draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
        ]
        rules.append(
            {
                "Name": draw(NAMES),
                "EventBusName": bus,
                "State": draw(st.sampled_from(["ENABLED", "ENABLED", "DISABLED"])),
                "EventPattern": {"source": ["shop"]},
                "Targets": targets,
            }
        )
    unique_rules = {(r["EventBusName"], r["Name"]): r for r in rules}  # names unique per bus
    return {
        "Connections": [
            {
                "Name": "c",
                "AuthorizationType": "API_KEY",
                "AuthParameters": {
                    "ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": SECRET}
                },
            }
        ],
        "ApiDestinations": [
            {
                "Name": name,
                "ConnectionArn": "c",
                "InvocationEndpoint": "https://example.com/",
                "HttpMethod": "POST",
                "InvocationRateLimitPerSecond": draw(st.sampled_from([None, 1, 300, 0.5])),
            }
            for name in destinations
        ],
        "Rules": list(unique_rules.values()),
    }


@fuzz_settings(120)
@given(data=configs(), shop=st.integers(0, 3))
def test_every_valid_config_drafts_a_valid_bus(data, shop):
    config = build_config(data, source="fuzz.yaml", environ={})
    enabled = [(r, t) for r in config.Rules if r.State == "ENABLED" for t in r.Targets]
    events = [("default", {"source": "shop"})] * shop + [("audit", {"source": "other"})]
    try:
        draft = draft_scenario(config, config_source="fuzz.yaml", name="fuzz", sample=events)
    except InputError as err:
        assert not enabled and err.key == "Rules"
        return
    rules = draft.scenario.bus.rules
    assert len(rules) == len(enabled)  # one scenario rule per enabled rule target
    for rule, (source_rule, _) in zip(rules, enabled, strict=True):
        expected = shop / (shop + 1) if source_rule.EventBusName == "default" else 0
        assert rule.match_fraction == pytest.approx(expected, rel=1e-3)
    targeted = {config.destination_of(t).Name for _, t in enabled}
    assert {d.name for d in draft.scenario.bus.destinations} == targeted


def test_the_shipped_examples_are_in_the_fuzzers_reach(tmp_path: Path) -> None:
    """BASE itself is valid: the fuzzer starts from a scenario that loads."""
    path = tmp_path / "bus.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    assert load_scenario(path).bus.destination("b.eu").invocation_rate_limit_per_second is None
