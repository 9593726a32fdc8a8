"""Core config in AWS shapes: loading, `${env:}` secrets, S15 validation, scenario configs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sim.errors import InputError
from sim.live.config.loading import build_config, config_for_scenario, load_config
from sim.scenario.loading import load_scenario
from sim.scenario.model import Destination, RetryPolicy
from tests.support import ROOT

EXAMPLE = ROOT / "examples" / "core.yaml"

BASE: dict[str, Any] = {
    "Connections": [
        {
            "Name": "conn",
            "AuthorizationType": "BASIC",
            "AuthParameters": {
                "BasicAuthParameters": {"Username": "user", "Password": "${env:CORE_PW}"}
            },
        }
    ],
    "ApiDestinations": [
        {
            "Name": "dest",
            "ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/conn/0a1b",
            "InvocationEndpoint": "https://api.example.com/v1/*",
            "HttpMethod": "post",
            "InvocationRateLimitPerSecond": 50,
        }
    ],
    "Rules": [
        {
            "Name": "rule",
            "EventPattern": '{"source": ["shop"]}',
            "Targets": [
                {
                    "Id": "t1",
                    "Arn": "arn:aws:events:us-east-1:123456789012:api-destination/dest/9f8e",
                    "HttpParameters": {"PathParameterValues": ["$.detail.id"]},
                }
            ],
        }
    ],
}
ENV = {"CORE_PW": "s3cr3t-value"}


def _build(changes: dict[str, Any] | None = None, environ: dict[str, str] = ENV) -> Any:
    data = copy.deepcopy(BASE)
    for key, value in (changes or {}).items():
        node: Any = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return build_config(data, source="core.yaml", environ=environ)


_DELETE = object()


def _error(changes: dict[str, Any], environ: dict[str, str] = ENV) -> InputError:
    with pytest.raises(InputError) as caught:
        _build(changes, environ)
    return caught.value


def test_the_example_config_loads() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PARTNER_API_KEY", "example-key")
        config = load_config(EXAMPLE)
    (rule,) = config.Rules
    assert config.destination_of(rule.Targets[0]).Name == "partner-webhook"
    assert "example-key" in config.secrets


def test_references_by_arn_resolve_and_defaults_match_the_scenario_model() -> None:
    config = _build()
    target = config.Rules[0].Targets[0]
    destination = config.destination_of(target)
    assert destination.Name == "dest" and destination.HttpMethod == "POST"
    assert config.connection_of(destination).Name == "conn"
    assert config.rule_arn(config.Rules[0]) == "arn:aws:events:us-east-1:123456789012:rule/rule"
    policy = config.retry_policy(target)
    assert policy == RetryPolicy()  # 24 h, 185 retries, the scenario's backoff and statuses
    assert config.sim.timeout == Destination().timeout
    assert config.sim.throttle_order == Destination().throttle_order
    assert config.burst(destination) == 50  # one second of rate, as Destination.burst


def test_env_secrets_are_substituted_and_never_printed() -> None:
    config = _build()
    password = config.Connections[0].AuthParameters.BasicAuthParameters.Password
    assert password.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in str(config)
    assert config.redact("got s3cr3t-value back") == "got *** back"


def test_a_missing_environment_variable_names_the_key() -> None:
    err = _error({}, environ={})
    assert str(err) == (
        "core.yaml: Connections.0.AuthParameters.BasicAuthParameters.Password: "
        "environment variable CORE_PW is not set"
    )


def test_an_invalid_secret_value_is_not_echoed() -> None:
    err = _error({"Connections.0.AuthParameters.BasicAuthParameters.Password": 12345678})
    assert err.key == "Connections.0.AuthParameters.BasicAuthParameters.Password"
    assert "12345678" not in str(err)


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"ApiDestinations.0.Name": "bad name!"}, "ApiDestinations.0.Name", "1-64 characters"),
        ({"Rules.0.Name": "x" * 65}, "Rules.0.Name", "1-64 characters"),
        ({"ApiDestinations.0.HttpMethod": "CONNECT"}, "ApiDestinations.0.HttpMethod", "CONNECT"),
        ({"ApiDestinations.0.HttpMethod": "trace"}, "ApiDestinations.0.HttpMethod", "TRACE"),
        (
            {"ApiDestinations.0.InvocationEndpoint": "http://api.example.com/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "https",
        ),
        (
            {"ApiDestinations.0.InvocationEndpoint": "https://127.0.0.1/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "loopback",
        ),
        (
            {"ApiDestinations.0.InvocationEndpoint": "https://10.1.2.3/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "private",
        ),
        (
            {"ApiDestinations.0.InvocationEndpoint": "https://localhost/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "private",
        ),
        (
            {"ApiDestinations.0.InvocationEndpoint": "https://[::1]/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "private",
        ),
        (
            {"ApiDestinations.0.InvocationEndpoint": "https://u:p@api.example.com/*"},
            "ApiDestinations.0.InvocationEndpoint",
            "credentials",
        ),
        ({"ApiDestinations.0.ConnectionArn": "nope"}, "ApiDestinations.0.ConnectionArn", "nope"),
        ({"Rules.0.Targets.0.Arn": "other"}, "Rules.0.Targets.0.Arn", "other"),
        (
            {"Rules.0.Targets.0.HttpParameters.PathParameterValues": []},
            "Rules.0.Targets.0.HttpParameters.PathParameterValues",
            "1 '*' wildcard",
        ),
        ({"Rules.0.EventPattern": {"source": "shop"}}, "Rules.0.EventPattern", "not valid"),
        ({"Rules.0.Targets.0.Input": "{oops"}, "Rules.0.Targets.0", "not valid JSON"),
        (
            {"Rules.0.Targets.0.RetryPolicy": {"MaximumRetryAttempts": 186}},
            "Rules.0.Targets.0.RetryPolicy.MaximumRetryAttempts",
            "185",
        ),
        (
            {"Rules.0.Targets.0.RetryPolicy": {"MaximumEventAgeInSeconds": 59}},
            "Rules.0.Targets.0.RetryPolicy.MaximumEventAgeInSeconds",
            "60",
        ),
        ({"Rules.0.Targets.0.Colour": "red"}, "Rules.0.Targets.0.Colour", "unknown key"),
        (
            {"Rules.0.Targets.0.HttpParameters.HeaderParameters": {"Bad Name": "v"}},
            "Rules.0.Targets.0.HttpParameters.HeaderParameters",
            "header name",
        ),
        (
            {"Rules.0.Targets.0.HttpParameters.HeaderParameters": {"X-A": "a\r\nb"}},
            "Rules.0.Targets.0.HttpParameters.HeaderParameters",
            "CR, LF",
        ),
        ({"Connections.0.AuthorizationType": "API_KEY"}, "Connections.0", "ApiKeyAuthParameters"),
        ({"sim": {"retry_statuses": [200]}}, "sim.retry_statuses", "delivered"),
    ],
)
def test_invalid_resources_are_rejected_with_key_and_reason(
    changes: dict[str, Any], key: str, words: str
) -> None:
    err = _error(changes)
    assert err.source == "core.yaml"
    assert err.key == key
    assert words in err.problem
    assert "\n" not in str(err)


def test_private_endpoints_are_allowed_only_when_the_operator_says_so() -> None:
    local = {"ApiDestinations.0.InvocationEndpoint": "http://127.0.0.1:8080/*"}
    assert _error(local).key == "ApiDestinations.0.InvocationEndpoint"
    config = _build({**local, "sim": {"allow_private_endpoints": True}})
    assert config.ApiDestinations[0].InvocationEndpoint == "http://127.0.0.1:8080/*"


def test_duplicate_names_are_rejected() -> None:
    data = copy.deepcopy(BASE)
    data["ApiDestinations"].append(copy.deepcopy(data["ApiDestinations"][0]))
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ=ENV)
    assert caught.value.key == "ApiDestinations.1.Name"


def test_json_config_files_load_and_bad_json_names_the_position(tmp_path: Path) -> None:
    good = tmp_path / "core.json"
    good.write_text(json.dumps(BASE))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORE_PW", "x")
        assert load_config(good).Rules[0].Name == "rule"
    bad = tmp_path / "bad.json"
    bad.write_text('{"Rules": [}')
    with pytest.raises(InputError) as caught:
        load_config(bad)
    assert str(caught.value).startswith(f"{bad}: invalid JSON: line 1, column 12")


def test_config_for_scenario_mirrors_the_scenario_destination_and_policy() -> None:
    scenario = load_scenario(
        ROOT / "scenarios" / "steady.yaml",
        {
            "destination.invocation_rate_limit_per_second": 40,
            "destination.burst_capacity": 5,
            "destination.timeout": "2s",
            "retry_policy.maximum_retry_attempts": 7,
            "retry_policy.maximum_event_age": "10m",
            "retry_policy.backoff": {"base": "250ms", "cap": "4s", "jitter": "equal"},
            "retry_policy.retry_statuses": [429, "5xx"],
            "dead_letter_queue": True,
        },
    )
    config = config_for_scenario(scenario, "http://127.0.0.1:9999/hook")
    (destination,) = config.ApiDestinations
    assert destination.InvocationEndpoint == "http://127.0.0.1:9999/hook"
    assert destination.InvocationRateLimitPerSecond == 40
    assert config.burst(destination) == scenario.destination.burst == 5
    assert config.sim.timeout == 2.0
    (target,) = config.Rules[0].Targets
    assert config.retry_policy(target) == scenario.retry_policy
    assert target.DeadLetterConfig is not None
    assert config.Rules[0].pattern.matches({"source": "anything", "detail": {}})


def test_config_for_scenario_keeps_an_unlimited_rate_unlimited() -> None:
    scenario = load_scenario(
        ROOT / "scenarios" / "steady.yaml",
        {"destination.invocation_rate_limit_per_second": None, "dead_letter_queue": False},
    )
    config = config_for_scenario(scenario, "http://127.0.0.1:9999/")
    assert config.ApiDestinations[0].InvocationRateLimitPerSecond is None
    assert config.Rules[0].Targets[0].DeadLetterConfig is None
