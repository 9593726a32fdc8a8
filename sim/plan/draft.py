"""A bus scenario drafted from a core config or CloudFormation template (`sim scenario`).

What the config says goes in as it is: each API destination's rate limit, each rule target's
retry policy and dead-letter queue, and the `sim:` settings (burst capacity, timeout, throttle
order, backoff, retry statuses). Each rule target becomes one rule of the scenario (a rule
with several targets fans out to each). With sample events, each rule's `match_fraction` is
measured by running its real event pattern (`sim.plan.matching`); without, it is 1 and
marked TODO. What no config can say — arrivals, the endpoints' behaviour — is a neutral
placeholder marked `# TODO: from your metrics` (no traffic; an endpoint answering 200 at
once), never a number presented as a fact. The text is validated before it is returned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.errors import InputError
from sim.live.config.loading import load_config
from sim.live.config.resources import ApiDestination, CoreConfig, Rule, Target
from sim.plan.matching import Matches, measure, read_sample
from sim.scenario.durations import format_duration
from sim.scenario.loading import build_scenario, parse_yaml
from sim.scenario.model import NAME_PATTERN, Scenario

TODO = "TODO: from your metrics"
DEFAULT_QUOTAS = {"us-east-1": 18750.0, "us-west-2": 18750.0, "eu-west-1": 18750.0}
"""The account invocation quota's default where it is highest (the AWS quotas page)."""
LOWEST_DEFAULT_QUOTA = 750.0
"""The lowest Regional default of the quota: the placeholder elsewhere, marked TODO."""
COMMENT_COLUMN = 44
UNSET = "sim-unset-env"
"""What `${env:NAME}` reads when NAME is not set."""
_BLOCK = object()
"""A key whose value is the block of lines that follows."""


@dataclass(frozen=True)
class Draft:
    """The scenario file's text (with its comments) and the Scenario it validates to."""

    text: str
    scenario: Scenario


class PlanEnvironment(Mapping[str, str]):
    """The process environment, with `unset` for every variable it lacks: a plan needs no
    credentials, so `${env:NAME}` never stops one (the values stay secrets, never written)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        return self._environ.get(name, UNSET)

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def draft_from_files(config_path: Path, events_path: Path | None = None) -> Draft:
    """Read a config (as `sim core run` does) and optional sample events; draft the scenario."""
    config = load_config(config_path, environ=PlanEnvironment(os.environ))
    sample = read_sample(events_path, config) if events_path is not None else None
    return draft_scenario(
        config,
        config_source=str(config_path),
        name=scenario_name(config_path.stem),
        sample=sample,
        sample_source=None if events_path is None else str(events_path),
    )


def write_draft(draft: Draft, path: Path, *, force: bool = False) -> Path:
    """Write the draft to `path` atomically; an existing file (perhaps edited since) is kept
    unless `force`. Problems are InputErrors naming the `out_file` parameter."""
    if path.exists() and not force:
        raise InputError(None, "out_file", f"{path} exists (use --force to replace it)")
    if path.is_dir():
        raise InputError(None, "out_file", f"{path} is a folder")
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.write_text(draft.text, encoding="utf-8")
        os.replace(staging, path)
    except OSError as err:
        staging.unlink(missing_ok=True)
        raise InputError(None, "out_file", f"cannot write {path}: {err.strerror}") from None
    return path


def scenario_name(text: str) -> str:
    """A valid scenario name from a file name (`core-cloudformation`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:64]
    return name or "bus"


def draft_scenario(
    config: CoreConfig,
    *,
    config_source: str,
    name: str,
    sample: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    sample_source: str | None = None,
) -> Draft:
    """The bus scenario a config stands for; match fractions measured on `sample` if given."""
    routes = _routes(config)
    if not routes:
        raise InputError(config_source, "Rules", "no enabled rule: there is no bus to plan")
    matches = measure(config, sample) if sample is not None else None
    lines = _Lines()
    _header(lines, config_source, sample_source, matches)
    lines.blank()
    lines.key(0, "name", name)
    lines.key(0, "horizon", "1d", "how long to simulate")
    lines.key(0, "seed", 0)
    lines.key(0, "replications", 10)
    lines.blank()
    lines.key(0, "arrivals", comment="events put on the bus (every bus these rules are on)")
    lines.item(2, {"kind": "constant", "rate_per_second": 0}, f"{TODO}: events per second")
    lines.comment(4, "(a `counts` source reads a per-minute export: docs/scenarios.md)")
    _account(lines, config)
    used = {config.destination_of(target).Name for _, _, target in routes}
    lines.blank()
    lines.key(0, "destinations")
    for destination in config.ApiDestinations:
        if destination.Name in used:
            _destination(lines, config, destination)
    lines.blank()
    lines.key(0, "rules")
    for rule_name, rule, target in routes:
        _rule(lines, config, rule_name, rule, target, matches)
    _footer(lines, config, used, matches)
    text = lines.text()
    try:
        scenario = build_scenario(parse_yaml(text, "draft"), source=name)
    except InputError as err:  # the draft is ours: an invalid one is a bug, not bad input
        raise RuntimeError(f"sim scenario drafted an invalid scenario: {err}") from err
    return Draft(text, scenario)


def _routes(config: CoreConfig) -> list[tuple[str, Rule, Target]]:
    """(scenario rule name, rule, target) for every target of every enabled rule; a rule with
    one target keeps its name, others become `rule.target-id`; buses prefix clashing names."""
    pairs = [
        (rule, target)
        for rule in config.Rules
        if rule.State == "ENABLED"
        for target in rule.Targets
    ]
    names = [r.Name if len(r.Targets) == 1 else f"{r.Name}.{t.Id}" for r, t in pairs]
    clash = {n for n in names if names.count(n) > 1}
    names = [
        f"{r.EventBusName}.{n}" if n in clash else n for n, (r, _) in zip(names, pairs, strict=True)
    ]
    unique: list[str] = []
    for i, candidate in enumerate(names):
        if config.redact(candidate) != candidate:  # built from an ${env:} value: a secret
            candidate = f"rule-{i + 1}"
        if not re.match(NAME_PATTERN, candidate) or candidate in unique:
            candidate = f"{candidate[:56]}.{i + 1}"
        unique.append(candidate)
    return [(n, r, t) for n, (r, t) in zip(unique, pairs, strict=True)]


def _destination_names(config: CoreConfig) -> dict[str, str]:
    """The name each API destination gets in the scenario: its own, unless an `${env:}` value
    (a secret) is part of it."""
    return {
        d.Name: d.Name if config.redact(d.Name) == d.Name else f"destination-{i + 1}"
        for i, d in enumerate(config.ApiDestinations)
    }


def _header(
    lines: _Lines, config_source: str, sample_source: str | None, matches: Matches | None
) -> None:
    measured = (
        f"Measured: each rule's match_fraction, on the {matches.events:,} sample events of "
        f"{sample_source}."
        if matches is not None and sample_source is not None
        else "Not measured: match_fraction (1, marked TODO); give sample events with --events."
    )
    for text in (
        f"A bus scenario drafted by `sim scenario` from {config_source}.",
        "From the config: each API destination's InvocationRateLimitPerSecond, each rule "
        "target's RetryPolicy and DeadLetterConfig, and the `sim:` settings (burst capacity, "
        "timeout, throttle order, backoff, retry statuses: ASSUMPTIONs AWS does not document).",
        measured,
        f"Values marked `{TODO}` are neutral placeholders, not measurements: no traffic, an "
        "endpoint answering 200 at once. Replace them before you trust a result, then check "
        "the file with `sim check FILE` (docs/bus.md).",
    ):
        lines.paragraph(text)


def _account(lines: _Lines, config: CoreConfig) -> None:
    region, settings = config.sim.region, config.sim
    lines.blank()
    lines.key(0, "account", comment="the account's invocation quota, shared by every target")
    if settings.account_invocation_limit_per_second is not None:  # the config says
        quota = settings.account_quota
        origin = "sim.account_invocation_limit_per_second"
        lines.key(2, "invocation_limit_per_second", quota.invocation_limit_per_second, origin)
        if settings.account_burst_capacity is not None:
            lines.key(2, "burst_capacity", quota.burst, "sim.account_burst_capacity (ASSUMPTION)")
        lines.key(2, "order", quota.order, "sim.account_order (ASSUMPTION: docs/bus.md)")
        return
    if region in DEFAULT_QUOTAS:
        quota_s = DEFAULT_QUOTAS[region]
        note = f"{region}'s default; TODO: your quota (it may have been raised)"
    else:
        quota_s = LOWEST_DEFAULT_QUOTA
        note = f"TODO: your quota in {region}; {quota_s:g}/s is only the lowest Regional default"
    lines.key(2, "invocation_limit_per_second", quota_s, note)
    lines.comment(4, "(Service Quotas L-5540C5E3, 'Invocations throttle limit in transactions")
    lines.comment(4, "per second'; if other targets share it, give what is left for these)")
    lines.key(2, "order", "after_destination", "ASSUMPTION: docs/bus.md")


def _destination(lines: _Lines, config: CoreConfig, destination: ApiDestination) -> None:
    rate = destination.InvocationRateLimitPerSecond
    lines.named(2, _destination_names(config)[destination.Name])
    given = "InvocationRateLimitPerSecond" in destination.model_fields_set
    origin = "InvocationRateLimitPerSecond" + ("" if given else " (not set: the AWS default)")
    lines.key(4, "invocation_rate_limit_per_second", rate, origin)
    if rate is not None:
        origin = (
            "sim.burst_capacity"
            if config.sim.burst_capacity is not None
            else "one second of the limit"
        )
        lines.key(4, "burst_capacity", config.burst(destination), f"{origin} (ASSUMPTION)")
    lines.key(4, "timeout", format_duration(config.sim.timeout), "sim.timeout")
    lines.key(4, "throttle_order", config.sim.throttle_order, "sim.throttle_order (ASSUMPTION)")
    endpoint = config.redact(destination.InvocationEndpoint)
    lines.key(4, "endpoint", comment=f"{TODO}: how {endpoint} answers")
    lines.key(6, "latency", {"kind": "constant", "value": "0s"}, f"{TODO} (docs/scenarios.md)")
    lines.key(6, "responses", {200: 1.0}, f"{TODO}: the share of each status")


def _rule(
    lines: _Lines,
    config: CoreConfig,
    name: str,
    rule: Rule,
    target: Target,
    matches: Matches | None,
) -> None:
    origin = [f"rule {rule.Name}"]
    if rule.EventBusName != "default":
        origin.append(f"on bus {rule.EventBusName}")
    if len(rule.Targets) > 1:
        origin.append(f"target {target.Id}")
    lines.named(2, name, "" if origin == [f"rule {name}"] else ", ".join(origin))
    if matches is None:
        fraction: float = 1
        note = "TODO: the share of bus events the rule matches (measure it with --events)"
    else:
        fraction = float(f"{matches.fraction(rule):.4g}")
        count = matches.by_rule.get((rule.EventBusName, rule.Name), 0)
        note = f"matched {count:,} of {matches.events:,} sample events"
    lines.key(4, "match_fraction", fraction, note)
    lines.key(4, "target", _destination_names(config)[config.destination_of(target).Name])
    policy = config.retry_policy(target)
    lines.key(4, "retry_policy", comment="RetryPolicy; backoff and statuses from `sim:`")
    lines.key(6, "maximum_event_age", format_duration(policy.maximum_event_age))
    lines.key(6, "maximum_retry_attempts", policy.maximum_retry_attempts)
    lines.key(6, "backoff", policy.backoff.model_dump(), "ASSUMPTION")
    lines.key(6, "retry_statuses", list(policy.retry_statuses))
    dlq = target.DeadLetterConfig
    lines.key(
        4,
        "dead_letter_queue",
        dlq is not None,
        "DeadLetterConfig" if dlq is not None else "no DeadLetterConfig: failures are dropped",
    )


def _footer(lines: _Lines, config: CoreConfig, used: set[str], matches: Matches | None) -> None:
    left_out = [
        f"rule {rule.Name} (bus {rule.EventBusName}) is DISABLED"
        for rule in config.Rules
        if rule.State != "ENABLED"
    ]
    left_out += [
        f"API destination {d.Name}: no enabled rule targets it"
        for d in config.ApiDestinations
        if d.Name not in used
    ]
    if left_out or matches is not None:
        lines.blank()
    if left_out:
        lines.paragraph("Left out: " + "; ".join(left_out) + ".")
    if matches is not None:
        lines.paragraph(
            f"Fan-out on the sample: {matches.mean_fan_out:.3g} invocations per event on "
            f"average (the sum of the match fractions); {matches.share_reaching(2):.1%} of "
            f"the events went to two targets or more, {matches.share_reaching(0, 0):.1%} to "
            "none. The model draws each rule's matches independently: that keeps the mean, "
            "not which rules match together (docs/bus.md)."
        )


class _Lines:
    """YAML written line by line, so every value can carry its comment."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def key(self, indent: int, key: str, value: Any = _BLOCK, comment: str = "") -> None:
        """`key: value  # comment`; without a value, a mapping whose keys follow."""
        head = f"{' ' * indent}{key}:" + ("" if value is _BLOCK else f" {_flow(value)}")
        self._add(head, comment)

    def item(self, indent: int, value: Mapping[str, Any], comment: str = "") -> None:
        """A list item as one flow mapping (`- {kind: constant, ...}`)."""
        self._add(f"{' ' * indent}- {_flow(dict(value))}", comment)

    def named(self, indent: int, name: str, comment: str = "") -> None:
        """A list item `- name: NAME` whose other keys follow at `indent + 2`."""
        self._add(f"{' ' * indent}- name: {_flow(name)}", comment)

    def blank(self) -> None:
        self._lines.append("")

    def comment(self, indent: int, text: str) -> None:
        self._lines.append(f"{' ' * indent}# {text}")

    def paragraph(self, text: str, width: int = 96) -> None:
        line = "#"
        for word in text.split():
            if len(line) + 1 + len(word) > width:
                self._lines.append(line)
                line = "#"
            line += " " + word
        self._lines.append(line)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"

    def _add(self, head: str, comment: str) -> None:
        if comment:
            head = f"{head.ljust(COMMENT_COLUMN - 1)} # {comment}"
        self._lines.append(head)


def _flow(value: Any) -> str:
    """One value as flow-style YAML (`{kind: constant, value: 0s}`, `'true'` for the string);
    whole floats as integers (`300`, not `300.0`)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()
