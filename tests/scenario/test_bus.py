"""The bus form of a scenario: strict validation with key paths, the one normalized `bus` view
(also of the single form), resolved output, assumptions and `--set` by name."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.scenario.bus import SINGLE_RULE, Account, Bus, BusDestination
from sim.scenario.loading import build_scenario, load_scenario, set_path, with_overrides
from sim.scenario.model import Destination, Scenario
from tests.support import ROOT
from tests.support.processes import assert_one_error_line

runner = CliRunner()

ENDPOINT = {"latency": {"kind": "constant", "value": "10ms"}}
BUS: dict[str, Any] = {
    "name": "bus",
    "horizon": "1h",
    "seed": 4,
    "arrivals": [{"kind": "constant", "rate_per_second": 100}],
    "account": {"invocation_limit_per_second": 500},
    "destinations": [
        {"name": "a", "invocation_rate_limit_per_second": 300, "endpoint": ENDPOINT},
        {
            "name": "b",
            "invocation_rate_limit_per_second": 100,
            "burst_capacity": 5,
            "throttle_order": "lifo",
            "endpoint": {**ENDPOINT, "responses": {200: 0.9, 503: 0.1}},
        },
    ],
    "rules": [
        {"name": "orders-to-a", "match_fraction": 0.6, "target": "a"},
        {
            "name": "orders-to-b",
            "match_fraction": 0.6,
            "target": "b",
            "retry_policy": {"maximum_event_age": "1h", "maximum_retry_attempts": 3},
            "dead_letter_queue": True,
        },
        {"name": "customers-to-b", "match_fraction": 0.25, "target": "b"},
    ],
}
SINGLE: dict[str, Any] = {
    "name": "single",
    "horizon": "1h",
    "arrivals": [{"kind": "constant", "rate_per_second": 10}],
    "destination": {"name": "partner", "invocation_rate_limit_per_second": 50},
    "endpoint": ENDPOINT,
    "retry_policy": {"maximum_retry_attempts": 7},
    "dead_letter_queue": True,
}


def bus(**changes: Any) -> Scenario:
    data = copy.deepcopy(BUS)
    data.update(changes)
    return build_scenario(data, source="bus.yaml")


def write(tmp_path: Path, data: dict[str, Any], name: str = "bus.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the normalized view ----------------------------------------------------------------------


def test_bus_view_keeps_file_order_and_links_rules_to_destinations():
    view = bus().bus
    assert [d.name for d in view.destinations] == ["a", "b"]
    assert [r.name for r in view.rules] == ["orders-to-a", "orders-to-b", "customers-to-b"]
    assert view.targets == (0, 1, 1)
    assert [r.name for r in view.rules_for("b")] == ["orders-to-b", "customers-to-b"]
    assert view.destination("b").burst == 5 and view.destination("a").burst == 300
    assert view.invocations_per_event("b") == pytest.approx(0.85)
    assert view.invocations_per_event() == pytest.approx(1.45)
    assert view.first_attempt_rates(100) == pytest.approx({"a": 60.0, "b": 85.0})
    assert view.account.burst == 500 and view.account.order == "after_destination"
    assert not view.is_single
    with pytest.raises(KeyError):
        view.destination("c")


def test_each_rule_keeps_its_own_retry_policy_and_dlq():
    rules = {r.name: r for r in bus().bus.rules}
    assert rules["orders-to-b"].retry_policy.maximum_retry_attempts == 3
    assert rules["orders-to-b"].retry_policy.maximum_event_age == 3600
    assert rules["orders-to-b"].dead_letter_queue is True
    assert rules["customers-to-b"].retry_policy.maximum_retry_attempts == 185  # AWS default
    assert rules["customers-to-b"].dead_letter_queue is False


def test_single_form_is_a_bus_of_one_destination_one_rule_and_no_quota():
    s = build_scenario(copy.deepcopy(SINGLE), source="single.yaml")
    assert not s.is_bus
    view = s.bus
    assert isinstance(view, Bus) and view.is_single
    assert view.account == Account(invocation_limit_per_second=None)
    (destination,) = view.destinations
    assert isinstance(destination, BusDestination) and isinstance(destination, Destination)
    assert destination.name == "partner" and destination.invocation_rate_limit_per_second == 50
    assert destination.burst == s.destination.burst == 50
    assert destination.endpoint == s.endpoint
    (rule,) = view.rules
    assert rule.name == SINGLE_RULE and rule.match_fraction == 1 and rule.target == "partner"
    assert rule.retry_policy == s.retry_policy and rule.retry_policy.maximum_retry_attempts == 7
    assert rule.dead_letter_queue is True
    assert view.targets == (0,) and view.invocations_per_event() == 1


def test_single_form_defaults_are_unchanged(tmp_path):
    data = copy.deepcopy(SINGLE)
    for key in ("destination", "retry_policy", "dead_letter_queue"):
        data.pop(key)
    s = load_scenario(write(tmp_path, data, "minimal.yaml"))
    assert s.destination == Destination() and s.dead_letter_queue is False
    assert s.retry_policy.maximum_retry_attempts == 185
    assert s.bus.destinations[0].name == "destination" and s.bus.rules[0].target == "destination"


def test_single_form_reads_back_as_written_and_dumps_its_own_keys(tmp_path):
    s = build_scenario(copy.deepcopy(SINGLE), source="single.yaml")
    dumped = s.model_dump()
    assert {"destination", "endpoint", "retry_policy", "dead_letter_queue"} <= set(dumped)
    assert not {"single_destination", "single_endpoint"} & set(dumped)
    resolved = s.resolved()
    assert not {"account", "destinations", "rules"} & set(resolved)
    assert resolved["destination"]["burst_capacity"] == 50
    copy_path = tmp_path / "resolved.yaml"
    copy_path.write_text(yaml.safe_dump(resolved))
    again = load_scenario(copy_path)
    assert again.resolved() == resolved and again.bus.rules == s.bus.rules
    assert Scenario.model_validate(dumped) == s  # the other form's null keys count as absent


def test_a_shipped_single_scenario_keeps_its_assumptions_and_view():
    s = load_scenario(ROOT / "scenarios" / "burst.yaml")
    assert list(s.assumptions()) == [
        "destination.burst_capacity",
        "destination.throttle_order",
        "retry_policy.backoff.base",
        "retry_policy.backoff.multiplier",
        "retry_policy.backoff.cap",
        "retry_policy.backoff.jitter",
    ]
    assert s.bus.destinations[0].endpoint == s.endpoint and s.bus.is_single


# --- outputs of a bus -------------------------------------------------------------------------


def test_bus_resolves_in_its_own_form_with_effective_bursts_and_round_trips(tmp_path):
    s = bus()
    resolved = s.resolved()
    assert list(resolved)[:5] == ["name", "horizon", "seed", "replications", "arrivals"]
    assert {"account", "destinations", "rules"} <= set(resolved)
    assert not {"destination", "endpoint", "retry_policy", "dead_letter_queue"} & set(resolved)
    assert resolved["account"]["burst_capacity"] == 500
    assert [d["burst_capacity"] for d in resolved["destinations"]] == [300, 5]
    assert resolved["destinations"][1]["endpoint"]["responses"] == {200: 0.9, 503: 0.1}
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(resolved, sort_keys=False))
    again = load_scenario(path)
    assert again.resolved() == resolved
    assert again.bus.rules == s.bus.rules and again.bus.account.burst == s.bus.account.burst


def test_unlimited_account_and_destination_stay_null_when_resolved():
    data = copy.deepcopy(BUS)
    data["account"] = {"invocation_limit_per_second": None}
    data["destinations"][0]["invocation_rate_limit_per_second"] = None
    resolved = build_scenario(data, source="bus.yaml").resolved()
    assert resolved["account"] == {
        "invocation_limit_per_second": None,
        "order": "after_destination",
    }
    assert resolved["destinations"][0]["invocation_rate_limit_per_second"] is None
    assert "burst_capacity" not in resolved["destinations"][0]


def test_bus_assumptions_name_the_account_bucket_and_every_section_by_name():
    found = bus().assumptions()
    assert found["account.burst_capacity"] == 500
    assert found["account.order"] == "after_destination"
    assert found["destinations.b.burst_capacity"] == 5
    assert found["destinations.b.throttle_order"] == "lifo"
    assert found["rules.orders-to-b.retry_policy.backoff.jitter"] == "full"
    assert found["rules.customers-to-b.retry_policy.backoff.cap"] == "15m"
    assert list(found)[:2] == ["account.burst_capacity", "account.order"]
    unlimited = bus(account={"invocation_limit_per_second": None}).assumptions()
    assert unlimited["account.burst_capacity"] == "none (no account quota)"
    assert "account.order" not in unlimited


def test_account_order_is_a_setting_with_two_values():
    assert (
        bus(
            account={"invocation_limit_per_second": 9, "order": "before_destination"}
        ).bus.account.order
        == "before_destination"
    )
    with pytest.raises(InputError, match="account.order"):
        bus(account={"invocation_limit_per_second": 9, "order": "whenever"})


# --- strict validation: one line naming the key path -----------------------------------------


def _rename_destination(data: dict[str, Any]) -> None:
    data["destinations"][1]["name"] = "a"


BAD_BUSES = [
    ("unknown_target", lambda d: d["rules"][2].update(target="c"), "rules.2.target",
     "no destination named 'c' (destinations: a, b)"),
    ("untargeted_destination", lambda d: d["destinations"].append(
        {"name": "c", "endpoint": ENDPOINT}), "destinations.2", "no rule targets destination 'c'"),
    ("duplicate_destination", _rename_destination, "destinations.1.name",
     "duplicate destination name 'a' (also destinations.0.name)"),
    ("duplicate_rule", lambda d: d["rules"][2].update(name="orders-to-a"), "rules.2.name",
     "duplicate rule name 'orders-to-a' (also rules.0.name)"),
    ("mixed_endpoint", lambda d: d.update(endpoint=ENDPOINT), "endpoint",
     "belongs to the single-destination form"),
    ("mixed_destination", lambda d: d.update(destination={"name": "x"}), "destination",
     "belongs to the single-destination form"),
    ("mixed_retry_policy", lambda d: d.update(retry_policy={}), "retry_policy",
     "rules.N.retry_policy"),
    ("mixed_dlq", lambda d: d.update(dead_letter_queue=True), "dead_letter_queue",
     "rules.N.dead_letter_queue"),
    ("missing_account", lambda d: d.pop("account"), "account", "required key is missing"),
    ("missing_rules", lambda d: d.pop("rules"), "rules", "required key is missing"),
    ("missing_destinations", lambda d: d.pop("destinations"), "destinations",
     "required key is missing"),
    ("missing_quota", lambda d: d.update(account={}), "account.invocation_limit_per_second",
     "required key is missing"),
    ("quota_zero", lambda d: d.update(account={"invocation_limit_per_second": 0}),
     "account.invocation_limit_per_second", "greater than 0"),
    ("account_burst", lambda d: d["account"].update(burst_capacity=0.5),
     "account.burst_capacity", "greater than or equal to 1"),
    ("fraction_high", lambda d: d["rules"][0].update(match_fraction=1.5),
     "rules.0.match_fraction", "less than or equal to 1"),
    ("fraction_missing", lambda d: d["rules"][1].pop("match_fraction"),
     "rules.1.match_fraction", "required key is missing"),
    ("rule_unknown_key", lambda d: d["rules"][0].update(destination="a"),
     "rules.0.destination", "unknown key"),
    ("endpoint_missing", lambda d: d["destinations"][0].pop("endpoint"),
     "destinations.0.endpoint", "required key is missing"),
    ("endpoint_bad_mix", lambda d: d["destinations"][1]["endpoint"].update(
        responses={200: 0.5}), "destinations.1.endpoint.responses", "sum to 0.5"),
    ("latency_tag", lambda d: d["destinations"][0]["endpoint"]["latency"].update(
        kind="lognormal", value=None), "destinations.0.endpoint.latency.value", "unknown key"),
    ("name_pattern", lambda d: d["destinations"][0].update(name="a b"),
     "destinations.0.name", "1-64 characters"),
    ("no_destinations", lambda d: d.update(destinations=[]), "destinations", "at least 1"),
    ("rule_age", lambda d: d["rules"][1]["retry_policy"].update(maximum_event_age="30s"),
     "rules.1.retry_policy.maximum_event_age", "greater than or equal to 60"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [case[1:] for case in BAD_BUSES],
    ids=[case[0] for case in BAD_BUSES],
)
def test_bad_bus_is_one_line_naming_the_key_path(tmp_path, mutate, key, problem):
    data = copy.deepcopy(BUS)
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    assert caught.value.source == str(path) and caught.value.key == key
    assert problem in caught.value.problem
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, str(path), key)
    assert problem in line


def test_an_account_in_a_single_destination_scenario_is_a_mixture(tmp_path):
    data = {**copy.deepcopy(SINGLE), "account": {"invocation_limit_per_second": 750}}
    path = write(tmp_path, data, "single.yaml")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr, str(path), "account")
    assert "belongs to the bus form" in line


def test_single_form_still_requires_its_endpoint(tmp_path):
    data = copy.deepcopy(SINGLE)
    data.pop("endpoint")
    with pytest.raises(InputError) as caught:
        load_scenario(write(tmp_path, data, "single.yaml"))
    assert (caught.value.key, caught.value.problem) == ("endpoint", "required key is missing")


# --- overrides --------------------------------------------------------------------------------


def test_set_reaches_bus_items_by_index_and_by_name(tmp_path):
    path = write(tmp_path, copy.deepcopy(BUS))
    s = load_scenario(
        path,
        [
            "destinations.0.invocation_rate_limit_per_second=200",
            "destinations.b.timeout=2s",
            "rules.customers-to-b.match_fraction=0.5",
            "rules.orders-to-b.retry_policy.maximum_retry_attempts=9",
            "account.order=before_destination",
        ],
    )
    assert s.bus.destination("a").invocation_rate_limit_per_second == 200
    assert s.bus.destination("b").timeout == 2
    rules = {r.name: r for r in s.bus.rules}
    assert rules["customers-to-b"].match_fraction == 0.5
    assert rules["orders-to-b"].retry_policy.maximum_retry_attempts == 9
    assert s.bus.account.order == "before_destination"


def test_with_overrides_on_a_bus_by_name_keeps_everything_else():
    s = bus()
    changed = with_overrides(
        s,
        {
            "destinations.a.invocation_rate_limit_per_second": 250,
            "account.invocation_limit_per_second": None,
        },
    )
    assert changed.bus.destination("a").invocation_rate_limit_per_second == 250
    assert changed.bus.account.invocation_limit_per_second is None
    assert changed.bus.rules == s.bus.rules and changed.bus.destination("b") == s.bus.destination(
        "b"
    )
    assert with_overrides(changed, {"destinations.a.invocation_rate_limit_per_second": 300, "account.invocation_limit_per_second": 500}) == s  # fmt: skip


def test_set_by_name_handles_dotted_names():
    data = {"items": [{"name": "partner.eu", "x": 1}, {"name": "other", "x": 2}]}
    set_path(data, "items.partner.eu.x", 5)
    set_path(data, "items.other.x", 6)
    set_path(data, "items.1.y", 7)  # an index still works
    assert data == {"items": [{"name": "partner.eu", "x": 5}, {"name": "other", "x": 6, "y": 7}]}


def test_set_by_name_errors_name_the_key():
    data = {"items": [{"name": "a"}, {"name": "a.b"}]}
    with pytest.raises(InputError, match="ambiguous") as caught:
        set_path(data, "items.a.b", 1, source="f.yaml")
    assert caught.value.key == "items.a"
    with pytest.raises(InputError, match=r"no list item named 'zz' \(names: a, a.b\)") as caught:
        set_path(data, "items.zz.x", 1, source="f.yaml")
    assert caught.value.key == "items.zz"
    with pytest.raises(InputError, match="no names: give an index"):
        set_path({"arrivals": [{"kind": "constant"}]}, "arrivals.first.rate_per_second", 1)
    with pytest.raises(InputError, match=r"no list item 5 \(the list has 2\)"):
        set_path(data, "items.5.x", 1)


def test_set_on_the_wrong_form_is_a_mixture_error(tmp_path):
    path = write(tmp_path, copy.deepcopy(BUS))
    result = runner.invoke(
        app, ["check", str(path), "--set", "destination.invocation_rate_limit_per_second=150"]
    )
    assert result.exit_code == 2
    assert "belongs to the single-destination form" in assert_one_error_line(
        result.stderr, str(path), "destination"
    )


# --- what runs the single form only -----------------------------------------------------------


def test_single_form_accessors_refuse_a_bus_with_one_clear_error():
    s = bus()
    for name in ("destination", "endpoint", "retry_policy", "dead_letter_queue"):
        with pytest.raises(InputError) as caught:
            getattr(s, name)
        assert caught.value.key == "destinations"
        assert "a bus of 2 destinations and 3 rules" in caught.value.problem
        assert "sim check" in caught.value.problem


def test_input_errors_survive_pickling_as_worker_processes_send_them():
    err = InputError("bus.yaml", "destinations", "a bus")
    copy_ = pickle.loads(pickle.dumps(err))
    assert isinstance(copy_, InputError)
    assert (copy_.source, copy_.key, copy_.problem, str(copy_)) == (
        "bus.yaml",
        "destinations",
        "a bus",
        "bus.yaml: destinations: a bus",
    )


@pytest.mark.parametrize(
    ("command", "says"),
    [(["size", "--slo", "max_dropped_fraction=0"], "--destination NAME"),
     (["sensitivity"], "sim sensitivity takes the single-destination form only")],
    ids=["size-without-target", "sensitivity"],
)  # fmt: skip
def test_model_commands_refuse_a_bus_with_one_line_and_write_nothing(tmp_path, command, says):
    path = write(tmp_path, copy.deepcopy(BUS))
    out = tmp_path / "report"
    result = runner.invoke(app, [command[0], str(path), *command[1:], "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = assert_one_error_line(result.stderr, str(path), "destinations")
    assert says in line
    assert not out.exists()


def test_shipped_bus_scenario_checks_and_shows_the_quota_binding_at_the_peak():
    path = ROOT / "scenarios" / "bus.yaml"
    s = load_scenario(path)
    assert (
        s.is_bus
        and len(s.bus.destinations) == 5
        and s.bus.account.invocation_limit_per_second == 750
    )
    assert len(s.bus.rules_for("crm")) == 2  # one destination shared by two rules
    policies = [r.retry_policy for r in s.bus.rules_for("crm")]
    assert len({(p.maximum_event_age, p.maximum_retry_attempts) for p in policies}) == 2
    text = path.read_text()
    assert "WHICH PARTNER'S EVENTS WAIT, AND FOR HOW LONG, WHEN THE" in text.splitlines()[0]
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    account = [line for line in result.stdout.splitlines() if line.startswith("#   account")]
    assert len(account) == 1 and "over the quota" in account[0]
