"""The live core's configuration file: loading, `${env:NAME}` secrets, references, S15 checks.

A config file (YAML or JSON) lists `Connections`, `ApiDestinations` and `Rules` in their AWS
shapes plus a small `sim:` section (models in `sim.live.config.resources`), or is a CloudFormation
template with those resources (`sim.live.config.cloudformation`). Any string may contain
`${env:NAME}`; such values and every credential are secrets: they are never printed, and
error messages are scrubbed of them. Every problem is one `InputError` naming the file and
key path. `config_for_scenario` builds the config that does what a scenario describes (its
destinations, rules, retry policies, DLQs and account quota), for validation against local
endpoints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sim.errors import InputError
from sim.live.config.cloudformation import TemplateLoader, from_template, is_template
from sim.live.config.from_scenario import CATCH_ALL_PATTERN, EndpointUrls, config_data
from sim.live.config.resources import (
    SECRET_KEYS,
    ApiDestination,
    Connection,
    ConnectionHttpParameters,
    CoreConfig,
    Rule,
    SimSettings,
    Target,
    TargetHttpParameters,
    redact,
)
from sim.live.eventbridge.checks import check_endpoint, reference_name
from sim.scenario.loading import read_yaml, validation_error
from sim.scenario.model import Scenario

__all__ = [
    "ApiDestination",
    "Connection",
    "ConnectionHttpParameters",
    "CoreConfig",
    "Rule",
    "SimSettings",
    "Target",
    "TargetHttpParameters",
    "CATCH_ALL_PATTERN",
    "build_config",
    "config_for_scenario",
    "load_config",
    "redact",
]

_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_DEPTH = 100
"""Deepest nesting of lists and mappings a config may have."""
MAX_VALUES = 1_000_000
"""Most values a config may hold, counting a YAML alias each time it is used."""


# --- loading ---------------------------------------------------------------------------------


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> CoreConfig:
    """Read, substitute `${env:NAME}` (from `environ`, default the process environment) and
    validate a config file (YAML, or JSON by suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(path), None, "no such file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(str(path), None, f"cannot read: {err}") from None
        except json.JSONDecodeError as err:
            problem = f"invalid JSON: line {err.lineno}, column {err.colno}: {err.msg}"
            raise InputError(str(path), None, problem) from None
        except RecursionError:
            raise InputError(str(path), None, "invalid JSON: nested too deeply") from None
        except ValueError as err:  # an integer over Python's 4,300-digit limit
            problem = str(err).split("; use sys.set_int_max_str_digits")[0]
            raise InputError(str(path), None, f"invalid JSON: {problem}") from None
    else:
        data = read_yaml(path, loader=TemplateLoader)
    return build_config(data, source=str(path), environ=environ)


def build_config(data: Any, *, source: str, environ: Mapping[str, str] | None = None) -> CoreConfig:
    """Validate plain data into a CoreConfig, or raise one InputError naming source and key."""
    if not isinstance(data, dict):
        raise InputError(source, None, "a core config must be a mapping of keys")
    _check_size(data, source)
    if not is_template(data):
        return _validate(data, source, environ)
    shape = from_template(data, source)
    try:
        return _validate(shape.data, source, environ)
    except InputError as err:  # name the key as the template has it
        raise InputError(err.source, shape.template_key(err.key), err.problem) from None


def _validate(data: dict[str, Any], source: str, environ: Mapping[str, str] | None) -> CoreConfig:
    """Substitute `${env:NAME}`, validate the models and check references (API-shaped data)."""
    secrets: set[str] = set()
    data = _substitute(data, os.environ if environ is None else environ, source, (), secrets)
    secrets.update(_raw_secrets(data))
    try:
        config = CoreConfig.model_validate(data)
    except ValidationError as err:
        first = validation_error(err, source)
        problem = first.problem
        if first.key and first.key.split(".")[-1] in (*SECRET_KEYS, "Value"):
            problem = problem.split(" (got ")[0]  # never echo a secret's value
        raise InputError(first.source, first.key, redact(problem, secrets)) from None
    secrets.update(_config_secrets(config))
    config._secrets = frozenset(s for s in secrets if s)
    try:
        _check_references(config, source)
    except InputError as err:  # a reference or URL may hold a secret: never echo it
        raise InputError(err.source, err.key, config.redact(err.problem)) from None
    return config


def _check_size(data: Any, source: str) -> None:
    """Refuse documents too deep or too big to walk (deep nesting, YAML alias bombs)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            problem = f"more than {MAX_VALUES:,} values (YAML aliases count at each use)"
            raise InputError(source, None, problem)
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InputError(source, None, f"nested more than {MAX_DEPTH} levels deep")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def _substitute(
    value: Any, environ: Mapping[str, str], source: str, path: tuple[Any, ...], secrets: set[str]
) -> Any:
    """Replace `${env:NAME}` in every string; the substituted values become secrets."""
    if isinstance(value, dict):
        return {k: _substitute(v, environ, source, (*path, k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, environ, source, (*path, i), secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${env:" not in value:
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            key = ".".join(str(p) for p in path)
            raise InputError(source, key or None, f"environment variable {name} is not set")
        secrets.add(environ[name])
        return environ[name]

    result = _ENV.sub(lookup, value)
    secrets.add(result)
    return result


def _raw_secrets(value: Any, key: str = "") -> Iterable[str]:
    """Every value held under a secret key in the raw data, for scrubbing validation messages."""
    if isinstance(value, dict):
        if "Key" in value and "Value" in value and value.get("IsValueSecret") is not False:
            yield str(value["Value"])
        for name, item in value.items():
            yield from _raw_secrets(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _raw_secrets(item, key)
    elif key in SECRET_KEYS and value is not None:
        yield str(value)


def _config_secrets(config: CoreConfig) -> Iterable[str]:
    yield from config.sim.ingest_secrets().values()
    for connection in config.Connections:
        auth = connection.AuthParameters
        if auth.BasicAuthParameters:
            yield auth.BasicAuthParameters.Password.get_secret_value()
        if auth.ApiKeyAuthParameters:
            yield auth.ApiKeyAuthParameters.ApiKeyValue.get_secret_value()
        params = [auth.InvocationHttpParameters]
        if auth.OAuthParameters:
            yield auth.OAuthParameters.ClientParameters.ClientSecret.get_secret_value()
            params.append(auth.OAuthParameters.OAuthHttpParameters)
        for group in params:
            every = group.HeaderParameters + group.QueryStringParameters + group.BodyParameters
            for param in every:
                if param.IsValueSecret:
                    yield param.Value.get_secret_value()


def _check_references(config: CoreConfig, source: str) -> None:
    """Unique names, resolvable ARNs/names, S15 endpoints and path wildcard counts."""
    _unique(config.Connections, "Connections", source)
    _unique(config.ApiDestinations, "ApiDestinations", source)
    allow = config.sim.allow_private_endpoints
    for i, connection in enumerate(config.Connections):
        oauth = connection.AuthParameters.OAuthParameters
        if oauth is not None:
            problem = check_endpoint(oauth.AuthorizationEndpoint, allow, wildcards=False)
            if problem:
                key = f"Connections.{i}.AuthParameters.OAuthParameters.AuthorizationEndpoint"
                raise InputError(source, key, problem)
    for i, destination in enumerate(config.ApiDestinations):
        key = f"ApiDestinations.{i}"
        name = reference_name(destination.ConnectionArn, "connection")
        if name not in config.connections:
            raise InputError(source, f"{key}.ConnectionArn", f"no connection named {name!r}")
        problem = check_endpoint(destination.InvocationEndpoint, allow, wildcards=True)
        if problem:
            raise InputError(source, f"{key}.InvocationEndpoint", problem)
    rule_keys = [(r.EventBusName, r.Name) for r in config.Rules]
    for i, rule in enumerate(config.Rules):
        if rule_keys.index((rule.EventBusName, rule.Name)) != i:
            raise InputError(source, f"Rules.{i}.Name", f"duplicate rule name {rule.Name!r}")
        for j, target in enumerate(rule.Targets):
            key = f"Rules.{i}.Targets.{j}"
            name = reference_name(target.Arn, "api-destination")
            if name not in config.destinations:
                raise InputError(source, f"{key}.Arn", f"no ApiDestination named {name!r}")
            wildcards = config.destinations[name].InvocationEndpoint.count("*")
            given = len(target.HttpParameters.PathParameterValues)
            if given != wildcards:
                raise InputError(
                    source,
                    f"{key}.HttpParameters.PathParameterValues",
                    f"the endpoint has {wildcards} '*' wildcard(s) but {given} value(s) are given",
                )


def _unique(items: list[Any], section: str, source: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.Name in seen:
            raise InputError(source, f"{section}.{i}.Name", f"duplicate name {item.Name!r}")
        seen.add(item.Name)


# --- a config matching a scenario, for validation ---------------------------------------------


def config_for_scenario(scenario: Scenario, endpoint_url: EndpointUrls) -> CoreConfig:
    """A core config doing what the scenario describes, aimed at local endpoints.

    Single form: one API destination (the scenario's) at `endpoint_url` and one rule on the
    default bus matching every event, with the scenario's retry policy and DLQ. Bus form: one
    API destination per bus destination — at `endpoint_url[name]`, or at `endpoint_url/NAME`
    when one URL is given — one rule per bus rule (events list the rules they match in
    `detail.sim-rules`), the account quota in `sim:` (`sim.live.config.from_scenario`). One
    API_KEY connection (a fixed, non-secret test key); private and loopback endpoints are
    allowed, since the endpoints are local. A bus whose destinations or rules differ in a
    setting the core takes once (`sim.timeout`, ...) is an InputError naming the key.
    """
    data = config_data(scenario, endpoint_url)
    return build_config(data, source=f"scenario {scenario.name}", environ={})
