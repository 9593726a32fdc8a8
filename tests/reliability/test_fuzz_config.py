"""Fuzzing live-core configs (design §5, §9): a `CoreConfig` or one error line, never a secret.

Hypothesis mutates a valid config with all three connection types, an input transformer,
HTTP parameters and the `sim:` section, and feeds documents that are not configs at all
(random text and bytes, deep JSON and YAML, alias bombs, huge files). A secret planted through
`${env:NAME}` must never appear in an error. Through `sim core run`, a bad config exits with
code 2 and one line naming the file and key, before any database is created.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.live.config.loading import CoreConfig, build_config, load_config
from sim.scenario.loading import set_path
from tests.support.processes import all_finite, assert_one_error_line, fuzz_settings, run_sim

pytestmark = pytest.mark.slow

runner = CliRunner()
FUZZ = fuzz_settings(150)
PLANTED = "planted-Secret-4417"
ENVIRON = {"SIM_FUZZ_SECRET": PLANTED}

BASE: dict[str, Any] = {
    "Connections": [
        {
            "Name": "key",
            "AuthorizationType": "API_KEY",
            "AuthParameters": {
                "ApiKeyAuthParameters": {
                    "ApiKeyName": "x-api-key",
                    "ApiKeyValue": "${env:SIM_FUZZ_SECRET}",
                },
                "InvocationHttpParameters": {
                    "HeaderParameters": [
                        {"Key": "x-tenant", "Value": "acme", "IsValueSecret": False}
                    ],
                    "QueryStringParameters": [{"Key": "sig", "Value": "${env:SIM_FUZZ_SECRET}"}],
                },
            },
        },
        {
            "Name": "basic",
            "AuthorizationType": "BASIC",
            "AuthParameters": {
                "BasicAuthParameters": {"Username": "u", "Password": "${env:SIM_FUZZ_SECRET}"}
            },
        },
        {
            "Name": "oauth",
            "AuthorizationType": "OAUTH_CLIENT_CREDENTIALS",
            "AuthParameters": {
                "OAuthParameters": {
                    "AuthorizationEndpoint": "https://auth.example.com/oauth/token",
                    "HttpMethod": "POST",
                    "ClientParameters": {
                        "ClientID": "id",
                        "ClientSecret": "${env:SIM_FUZZ_SECRET}",
                    },
                }
            },
        },
    ],
    "ApiDestinations": [
        {
            "Name": "orders",
            "ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/key/abc",
            "InvocationEndpoint": "https://partner.example.com/orders/*",
            "HttpMethod": "POST",
            "InvocationRateLimitPerSecond": 50,
        },
        {
            "Name": "billing",
            "ConnectionArn": "oauth",
            "InvocationEndpoint": "https://billing.example.com/hook",
            "HttpMethod": "PUT",
        },
    ],
    "Rules": [
        {
            "Name": "orders",
            "EventPattern": {"source": ["shop"], "detail": {"total": [{"numeric": [">", 0]}]}},
            "Targets": [
                {
                    "Id": "orders",
                    "Arn": "orders",
                    "HttpParameters": {
                        "PathParameterValues": ["$.detail.id"],
                        "HeaderParameters": {"x-order": "$.detail.id"},
                        "QueryStringParameters": {"src": "$.source"},
                    },
                    "InputTransformer": {
                        "InputPathsMap": {"id": "$.detail.id"},
                        "InputTemplate": '{"order": <id>}',
                    },
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 5},
                    "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
                },
                {"Id": "billing", "Arn": "billing", "InputPath": "$.detail"},
            ],
        }
    ],
    "sim": {
        "burst_capacity": 10,
        "timeout": "2s",
        "backoff": {"base": "1s", "multiplier": 2, "cap": "1m", "jitter": "equal"},
        "retry_statuses": [409, 429, "5xx"],
        "throttle_order": "fifo",
        "region": "eu-west-1",
        "account": "111122223333",
        "seed": 3,
    },
}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**30, -(10**30), 1e308, 0, -1, 86401, 59, 186, 2**63]),
    st.text(max_size=20),
    st.sampled_from(
        ["", "${env:SIM_FUZZ_SECRET}", "${env:NOT_SET_ANYWHERE}", "x${env:SIM_FUZZ_SECRET}y",
         "${env:}", "${env:1BAD}", "CONNECT", "trace", "GET", "https://127.0.0.1/",
         "http://example.com/", "https://user:${env:SIM_FUZZ_SECRET}@example.com/",
         "https://example.com:${env:SIM_FUZZ_SECRET}/", "$.detail", "$..x", "a\r\nb", "5xx",
         "2xx", "fifo", "lifo", "*", "arn:aws:events:us-east-1:1:api-destination/none"]
    ),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        yield from _paths(item, path)


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = sorted(_paths(data))
        kind = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        try:
            if kind == "set":
                set_path(data, path, draw(VALUES))
            elif kind == "delete":
                parent, _, last = path.rpartition(".")
                node = _get(data, parent) if parent else data
                node.pop(int(last) if isinstance(node, list) else last)
            else:
                mappings = [""] + [p for p in paths if isinstance(_get(data, p), dict)]
                parent = draw(st.sampled_from(mappings))
                set_path(data, f"{parent}.Extra" if parent else "Extra", draw(SCALARS))
        except (InputError, LookupError, TypeError, ValueError, AttributeError):
            continue  # an earlier mutation replaced a parent of this path
    return data


def check_config(path: Path, folder: Path) -> CoreConfig | InputError:
    """Load a config file: a config with finite numbers, or one error line without the secret."""
    try:
        config = _load(path)
    except InputError as err:
        assert err.source == str(path), err
        assert "\n" not in err.line() and err.problem.strip()
        assert PLANTED not in err.line()
        db = folder / "core.db"
        result = runner.invoke(
            app, ["core", "run", str(path), "--db", str(db), "--until-idle"], env=ENVIRON
        )
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, str(path))
        assert PLANTED not in result.output
        assert not db.exists()
        return err
    assert isinstance(config, CoreConfig)
    assert all_finite(config.model_dump()) and PLANTED not in repr(config)
    return config


def _load(path: Path) -> CoreConfig:
    import os

    saved = os.environ.get("SIM_FUZZ_SECRET")
    os.environ["SIM_FUZZ_SECRET"] = PLANTED
    try:
        return load_config(path)
    finally:
        if saved is None:
            del os.environ["SIM_FUZZ_SECRET"]
        else:
            os.environ["SIM_FUZZ_SECRET"] = saved


def test_the_base_config_is_valid() -> None:
    config = build_config(copy.deepcopy(BASE), source="base", environ=ENVIRON)
    assert PLANTED in config.secrets and PLANTED not in repr(config)


@FUZZ
@given(data=mutated_configs(), as_json=st.booleans())
def test_mutated_configs_load_or_fail_with_one_line(
    tmp_path: Path, data: dict[str, Any], as_json: bool
) -> None:
    path = tmp_path / ("core.json" if as_json else "core.yaml")
    text = json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    check_config(path, tmp_path)


@fuzz_settings(80)
@given(blob=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".json"]))
def test_any_bytes_are_a_config_or_one_error_line(tmp_path: Path, blob: bytes, suffix: str) -> None:
    path = tmp_path / f"core{suffix}"
    path.write_bytes(blob)
    check_config(path, tmp_path)


def _deep_pattern(depth: int) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    pattern: dict[str, Any] = {"source": ["shop"]}
    node = pattern
    for _ in range(depth):
        node["detail"] = {}
        node = node["detail"]
    node["x"] = [1]
    data["Rules"][0]["EventPattern"] = pattern
    return data


def _alias_bomb() -> str:
    lines = [
        yaml.safe_dump(BASE),
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


DOCUMENTS = {
    "deep-json-array.json": "[" * 100_000 + "]" * 100_000,
    "deep-json-object.json": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "deep-yaml.yaml": "[" * 100_000 + "]" * 100_000,
    "deep-event-pattern.json": json.dumps(_deep_pattern(900)),
    "deep-event-pattern.yaml": json.dumps(_deep_pattern(900)),  # JSON is YAML too
    "alias-bomb.yaml": _alias_bomb(),
    "huge-string.yaml": f"Extra: {'x' * 2_000_000}\n",
    "many-rules.yaml": yaml.safe_dump(
        {
            **BASE,
            "Rules": [
                {"Name": f"r{i}", "EventPattern": {"source": ["x"]}, "Targets": []}
                for i in range(2_000)
            ],
        }
    ),
    "nan.json": json.dumps({**BASE, "sim": {"timeout": float("nan")}}),
    "infinite-rate.yaml": yaml.safe_dump(
        {
            **BASE,
            "ApiDestinations": [
                BASE["ApiDestinations"][0],
                {**BASE["ApiDestinations"][1], "InvocationRateLimitPerSecond": float("inf")},
            ],
        }
    ),
    "not-a-mapping.yaml": "- a\n- b\n",
    "int-over-4300-digits.json": '{"Extra": ' + "9" * 5_000 + "}",
    "int-over-4300-digits.yaml": "Extra: " + "9" * 5_000 + "\n",
    "latin-1.yaml": "Extra: caf\xe9\n",
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_documents_that_are_not_configs(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(DOCUMENTS[name].encode("latin-1" if "latin" in name else "utf-8"))
    started = time.monotonic()
    result = check_config(path, tmp_path)
    assert isinstance(result, InputError), result
    assert time.monotonic() - started < 20  # refused, not expanded or recursed into


def test_deep_json_through_a_real_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "core.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    code, out, err = run_sim("core", "run", str(path), "--db", str(tmp_path / "db"))
    assert code == 2 and out == ""
    assert_one_error_line(err, str(path))
    assert not (tmp_path / "db").exists()


def test_an_endpoint_error_through_a_real_subprocess_never_shows_the_secret(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    endpoint = "https://partner.example.com:${env:SIM_FUZZ_SECRET}/x"
    data["ApiDestinations"][0]["InvocationEndpoint"] = endpoint
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_sim("core", "run", str(path), "--db", str(tmp_path / "db"), env=ENVIRON)
    assert code == 2 and out == ""
    assert_one_error_line(err, str(path), "ApiDestinations.0.InvocationEndpoint")
    assert PLANTED not in err and not (tmp_path / "db").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ApiDestinations.0.ConnectionArn", "${env:SIM_FUZZ_SECRET}"),
        ("Rules.0.Targets.0.Arn", "${env:SIM_FUZZ_SECRET}"),
        ("Connections.2.AuthParameters.OAuthParameters.AuthorizationEndpoint",
         "https://auth.example.com:${env:SIM_FUZZ_SECRET}/"),
    ],
)  # fmt: skip
def test_reference_errors_never_show_a_secret(key: str, value: str) -> None:
    data = copy.deepcopy(BASE)
    set_path(data, key, value)
    with pytest.raises(InputError) as caught:
        build_config(data, source="core.yaml", environ=ENVIRON)
    assert caught.value.key == key and PLANTED not in caught.value.line()


def test_env_values_in_plain_fields_never_show_in_the_configs_repr() -> None:
    data = copy.deepcopy(BASE)
    target = data["Rules"][0]["Targets"][0]
    target["HttpParameters"]["HeaderParameters"]["x-token"] = "${env:SIM_FUZZ_SECRET}"
    data["Rules"][0]["Description"] = "owner ${env:SIM_FUZZ_SECRET}"
    config = build_config(data, source="core.yaml", environ=ENVIRON)
    assert PLANTED not in repr(config) and PLANTED not in str(config)
    assert config.Rules[0].Targets[0].HttpParameters.HeaderParameters["x-token"] == PLANTED


@pytest.mark.parametrize("key", ["a\nb", "a\rb", " \x85", "a\u2028b", "\x1b[31mred"])
def test_an_unknown_key_with_line_breaks_or_escapes_stays_on_one_line(
    tmp_path: Path, key: str
) -> None:
    path = tmp_path / "core.json"
    path.write_text(json.dumps({**copy.deepcopy(BASE), key: 1}), encoding="utf-8")
    args = ["core", "run", str(path), "--db", str(tmp_path / "db")]
    result = runner.invoke(app, args, env=ENVIRON)
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr, str(path))
    assert line.isprintable() and line.endswith(": unknown key (got 1)"), line
