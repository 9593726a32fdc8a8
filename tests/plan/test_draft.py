"""`sim.plan`: a bus scenario drafted from a core config or CloudFormation template, with each
rule's match fraction measured by its real event pattern on sample events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sim.errors import InputError
from sim.live.eventbridge.patterns import compile_pattern
from sim.plan.draft import (
    LOWEST_DEFAULT_QUOTA,
    TODO,
    draft_from_files,
    scenario_name,
    write_draft,
)
from sim.scenario.loading import parse_yaml
from tests.support import ROOT

CORE = ROOT / "examples" / "core.yaml"
TEMPLATE = ROOT / "examples" / "core-cloudformation.yaml"
SAMPLE = ROOT / "examples" / "events-sample.jsonl"
PLANTED = "planted-secret-4711"

# Two destinations and a third nobody targets; a rule with two targets (one per destination),
# a rule on a second bus, a disabled rule; the partner key is never set in the environment.
SHOP = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Auth:
    Type: AWS::Events::Connection
    Properties:
      AuthorizationType: API_KEY
      AuthParameters:
        ApiKeyAuthParameters: {ApiKeyName: x-api-key, ApiKeyValue: "${env:SIM_TEST_UNSET_KEY}"}
  Crm:
    Type: AWS::Events::ApiDestination
    Properties:
      ConnectionArn: !GetAtt Auth.Arn
      InvocationEndpoint: https://crm.example.com/hook
      HttpMethod: POST
      InvocationRateLimitPerSecond: 100
  Pay:
    Type: AWS::Events::ApiDestination
    Properties: {ConnectionArn: !GetAtt Auth.Arn, InvocationEndpoint: "https://pay.example.com/",
                 HttpMethod: POST}
  Legacy:
    Type: AWS::Events::ApiDestination
    Properties: {ConnectionArn: !GetAtt Auth.Arn, InvocationEndpoint: "https://old.example.com/",
                 HttpMethod: POST, InvocationRateLimitPerSecond: 10}
  Orders:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [shop.orders]}
      Targets:
        - Id: crm
          Arn: !GetAtt Crm.Arn
          RetryPolicy: {MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 3600}
        - Id: pay
          Arn: !GetAtt Pay.Arn
          DeadLetterConfig: {Arn: "arn:aws:sqs:eu-central-1:123456789012:dlq"}
  Big:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [shop.orders], detail: {total: [{numeric: [">", 100]}]}}
      Targets: [{Id: crm, Arn: !GetAtt Crm.Arn}]
  Old:
    Type: AWS::Events::Rule
    Properties:
      State: DISABLED
      EventPattern: {source: [shop.orders]}
      Targets: [{Id: old, Arn: !GetAtt Legacy.Arn}]
  AuditBig:
    Type: AWS::Events::Rule
    Properties:
      Name: Big
      EventBusName: audit
      EventPattern: {source: [{prefix: ""}]}
      Targets: [{Id: pay, Arn: !GetAtt Pay.Arn}]
sim:
  region: eu-central-1
  burst_capacity: 20
  timeout: 3s
  backoff: {base: 2s, multiplier: 3, cap: 5m, jitter: equal}
"""
SHOP_EVENTS = [
    {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"total": 120})},
    {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"total": 12})},
    {"source": "shop.orders", "detail-type": "OrderPlaced", "detail": {"total": 101}},
    {"Source": "shop.billing", "DetailType": "Paid", "Detail": "{}"},
    {"Source": "shop.billing", "DetailType": "Paid", "Detail": "{}", "EventBusName": "audit"},
]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("SIM_TEST_UNSET_KEY", raising=False)
    template = tmp_path / "shop-stack.yaml"
    template.write_text(SHOP)
    events = tmp_path / "sample.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in SHOP_EVENTS))
    return template, events


def prose(text: str) -> str:
    """The draft's lines as one line of words, comment marks removed (comments wrap anywhere)."""
    return " ".join(
        word for line in text.splitlines() for word in line.lstrip().removeprefix("#").split()
    )


def comment_of(text: str, needle: str) -> str:
    """The comment on the first line containing `needle`."""
    line = next(line for line in text.splitlines() if needle in line)
    return line.partition(" # ")[2]


# --- the shipped examples ---------------------------------------------------------------------


def test_core_config_without_events_takes_everything_the_config_says(monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)  # a plan needs no credentials
    draft = draft_from_files(CORE)
    s = draft.scenario
    assert s.is_bus and s.name == "core"
    (destination,) = s.bus.destinations
    assert destination.name == "partner-webhook"
    assert destination.invocation_rate_limit_per_second == 300 and destination.burst == 300
    assert destination.timeout == 5 and destination.throttle_order == "fifo"
    (rule,) = s.bus.rules
    assert (rule.name, rule.target, rule.match_fraction) == (
        "orders-to-partner",
        destination.name,
        1,
    )
    assert rule.retry_policy.maximum_event_age == 86400
    assert rule.retry_policy.maximum_retry_attempts == 185
    assert rule.dead_letter_queue is True
    assert s.bus.account.invocation_limit_per_second == 18750  # us-east-1's default
    assert "TODO" in comment_of(draft.text, "match_fraction:")
    assert "--events" in comment_of(draft.text, "match_fraction:")
    assert "TODO" in comment_of(draft.text, "invocation_limit_per_second:")


def test_placeholders_are_neutral_and_every_one_is_marked_todo(monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    draft = draft_from_files(CORE, SAMPLE)
    s = draft.scenario
    assert [a.model_dump() for a in s.arrivals] == [{"kind": "constant", "rate_per_second": 0.0}]
    endpoint = s.bus.destinations[0].endpoint
    assert endpoint.latency.model_dump() == {"kind": "constant", "value": "0s"}
    assert endpoint.responses == {200: 1.0}
    for needle in ("- {kind: constant, rate_per_second: 0}", "endpoint:", "latency:", "responses:"):
        assert comment_of(draft.text, needle).startswith(TODO), needle


def test_match_fractions_are_what_the_rules_real_pattern_says_on_the_sample(monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    draft = draft_from_files(TEMPLATE, SAMPLE)
    raw = yaml.safe_load(TEMPLATE.read_text().replace("!GetAtt", "").replace("!Sub", ""))
    pattern = compile_pattern(raw["Resources"]["OrdersToPartner"]["Properties"]["EventPattern"])
    events = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    full = [_as_event(e) for e in events]
    matched = sum(pattern.matches(e) for e in full)
    assert 0 < matched < len(full)  # the sample exercises both outcomes
    (rule,) = draft.scenario.bus.rules
    assert rule.match_fraction == pytest.approx(matched / len(full))
    assert comment_of(draft.text, "match_fraction:") == (
        f"matched {matched} of {len(full)} sample events"
    )
    assert f"on the {len(full)} sample events of {SAMPLE}" in prose(draft.text)


def _as_event(line: dict) -> dict:
    """A PutEvents entry as the event EventBridge builds (enough for matching)."""
    if "Source" not in line:
        return {"account": "1", "region": "us-east-1", **line}
    return {
        "source": line["Source"],
        "detail-type": line["DetailType"],
        "detail": json.loads(line["Detail"]),
        "account": "123456789012",
        "region": "us-east-1",
    }


def test_template_and_plain_config_of_the_same_resources_draft_the_same_bus(monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    plain = draft_from_files(CORE, SAMPLE).scenario
    template = draft_from_files(TEMPLATE, SAMPLE).scenario
    assert template.name == "core-cloudformation"
    assert template.bus == plain.bus


def test_secrets_from_the_environment_never_reach_the_draft(monkeypatch):
    monkeypatch.setenv("PARTNER_API_KEY", PLANTED)
    assert PLANTED not in draft_from_files(CORE, SAMPLE).text


# --- a whole bus --------------------------------------------------------------------------------


def test_every_target_of_every_enabled_rule_becomes_a_rule(shop):
    template, events = shop
    draft = draft_from_files(template, events)
    s = draft.scenario
    assert s.name == "shop-stack"
    assert [d.name for d in s.bus.destinations] == ["Crm", "Pay"]  # Legacy: no enabled rule
    rules = {r.name: r for r in s.bus.rules}
    assert list(rules) == ["Orders.crm", "Orders.pay", "default.Big", "audit.Big"]
    assert [rules[n].target for n in rules] == ["Crm", "Pay", "Crm", "Pay"]
    assert rules["Orders.crm"].retry_policy.maximum_retry_attempts == 3
    assert rules["Orders.crm"].retry_policy.maximum_event_age == 3600
    assert rules["Orders.crm"].dead_letter_queue is False
    assert rules["Orders.pay"].dead_letter_queue is True
    backoff = rules["audit.Big"].retry_policy.backoff
    assert (backoff.base, backoff.multiplier, backoff.cap, backoff.jitter) == (2, 3, 300, "equal")
    crm, pay = s.bus.destinations
    assert crm.burst == pay.burst == 20 and crm.timeout == 3
    assert pay.invocation_rate_limit_per_second == 300  # the AWS default, and the draft says so
    assert "not set: the AWS default" in comment_of(
        draft.text, "invocation_rate_limit_per_second: 300"
    )
    assert "rule Orders, target crm" == comment_of(draft.text, "- name: Orders.crm")
    assert "rule Big, on bus audit" == comment_of(draft.text, "- name: audit.Big")
    assert "rule Old (bus default) is DISABLED" in prose(draft.text)
    assert "API destination Legacy: no enabled rule targets it" in prose(draft.text)


def test_fractions_follow_each_bus_and_the_mean_fan_out_is_their_sum(shop):
    template, events = shop
    s = draft_from_files(template, events).scenario
    fractions = {r.name: r.match_fraction for r in s.bus.rules}
    # 3 of 5 events are orders on the default bus; 2 of them total over 100; 1 is on `audit`
    assert fractions == {"Orders.crm": 0.6, "Orders.pay": 0.6, "default.Big": 0.4, "audit.Big": 0.2}
    assert s.bus.invocations_per_event() == pytest.approx((3 * 2 + 2 + 1) / 5)
    text = prose(draft_from_files(template, events).text)
    assert "Fan-out on the sample: 1.8 invocations per event on average" in text
    assert "60.0% of the events went to two targets or more, 20.0% to none" in text


def test_account_quota_is_a_marked_placeholder_outside_the_18750_regions(shop):
    template, _ = shop
    draft = draft_from_files(template)
    assert draft.scenario.bus.account.invocation_limit_per_second == LOWEST_DEFAULT_QUOTA
    note = comment_of(draft.text, "invocation_limit_per_second:")
    assert note.startswith("TODO: your quota in eu-central-1")


# --- bad input and output files -------------------------------------------------------------


def test_events_problems_are_one_error_naming_the_file_and_line(shop, tmp_path):
    template, _ = shop
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no events") as caught:
        draft_from_files(template, empty)
    assert caught.value.source == str(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "detail-type": "b"}\n[1, 2]\n')
    with pytest.raises(InputError) as caught:
        draft_from_files(template, bad)
    assert (caught.value.source, caught.value.key) == (str(bad), "line 2")


def test_a_config_without_an_enabled_rule_has_no_bus_to_plan(tmp_path):
    path = tmp_path / "idle.yaml"
    text = CORE.read_text().replace("    EventBusName: default\n", "    State: DISABLED\n")
    path.write_text(text)
    with pytest.raises(InputError, match="no enabled rule") as caught:
        draft_from_files(path)
    assert (caught.value.source, caught.value.key) == (str(path), "Rules")


def test_config_errors_are_the_loaders_own(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "Rules: [{Name: r, EventPattern: {source: [a]}, Targets: [{Id: t, Arn: nope}]}]\n"
    )
    with pytest.raises(InputError) as caught:
        draft_from_files(path)
    assert caught.value.key == "Rules.0.Targets.0.Arn"


def test_write_draft_keeps_an_existing_file_unless_forced(tmp_path, monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    draft = draft_from_files(CORE)
    out = tmp_path / "plans" / "bus.yaml"
    assert write_draft(draft, out) == out and out.read_text() == draft.text
    out.write_text("# edited by hand\n")
    with pytest.raises(InputError, match="exists") as caught:
        write_draft(draft, out)
    assert caught.value.key == "out_file" and out.read_text() == "# edited by hand\n"
    write_draft(draft, out, force=True)
    assert out.read_text() == draft.text
    assert [p.name for p in out.parent.iterdir()] == ["bus.yaml"]  # no staging file left


def test_the_draft_text_is_the_scenario_it_returns(monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    draft = draft_from_files(TEMPLATE, SAMPLE)
    assert isinstance(parse_yaml(draft.text, "draft"), dict)
    assert draft.scenario.resolved()["rules"][0]["match_fraction"] == 0.5


@pytest.mark.parametrize(
    ("stem", "name"), [("core", "core"), ("my stack (prod)", "my-stack-prod"), ("***", "bus")]
)
def test_scenario_names_come_from_the_file_name(stem, name):
    assert scenario_name(stem) == name


def test_a_name_built_from_a_secret_is_replaced_everywhere(tmp_path, monkeypatch):
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)
    monkeypatch.setenv("SIM_TEST_STAGE", PLANTED)
    path = tmp_path / "staged.yaml"
    path.write_text(CORE.read_text().replace("partner-webhook", "${env:SIM_TEST_STAGE}-webhook"))
    draft = draft_from_files(path, SAMPLE)
    assert PLANTED not in draft.text
    (destination,) = draft.scenario.bus.destinations
    assert destination.name == "destination-1"
    assert draft.scenario.bus.rules[0].target == "destination-1"
