"""How often each rule matches: the rules' real event patterns run on sample events.

The events are read as `sim core run --events` reads them (`sim.live.ingest`: PutEvents
entries or full events, one JSON object per line, each on its bus), and matched as the core
matches them (`DeliveryCore.match`): the enabled rules of the event's bus whose pattern
matches. An event matching a rule becomes one invocation per target of the rule (fan-out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import InputError
from sim.live.config.resources import CoreConfig, Rule
from sim.live.ingest import Envelope, read_event_file

RuleKey = tuple[str, str]
"""(event bus, rule name): how a rule is named in a config."""


@dataclass(frozen=True)
class Matches:
    """What the sample shows: events per rule, and how many targets each event reached."""

    events: int
    by_rule: Mapping[RuleKey, int]
    targets_per_event: Mapping[int, int]  # number of targets invoked -> number of events

    def fraction(self, rule: Rule) -> float:
        """The share of sample events the (enabled) rule matched."""
        return self.by_rule.get((rule.EventBusName, rule.Name), 0) / self.events

    @property
    def mean_fan_out(self) -> float:
        """Invocations per event on average (first attempts)."""
        return sum(n * count for n, count in self.targets_per_event.items()) / self.events

    def share_reaching(self, at_least: int = 0, at_most: int | None = None) -> float:
        """The share of events that reached between `at_least` and `at_most` targets."""
        top = max(self.targets_per_event, default=0) if at_most is None else at_most
        hits = sum(c for n, c in self.targets_per_event.items() if at_least <= n <= top)
        return hits / self.events


def read_sample(path: Path, config: CoreConfig) -> list[tuple[str, dict[str, Any]]]:
    """The sample events of a JSONL file, as `sim core run --events` reads them: (bus, event)."""
    events = read_event_file(path, Envelope(config.sim.account, config.sim.region))
    if not events:
        raise InputError(str(path), None, "no events: the sample needs at least one")
    return events


def measure(config: CoreConfig, events: Sequence[tuple[str, Mapping[str, Any]]]) -> Matches:
    """Run every enabled rule's pattern on every event of its bus."""
    rules: dict[str, list[Rule]] = {}
    for rule in config.Rules:
        if rule.State == "ENABLED":
            rules.setdefault(rule.EventBusName, []).append(rule)
    by_rule: Counter[RuleKey] = Counter()
    reached: Counter[int] = Counter()
    for bus, event in events:
        targets = 0
        for rule in rules.get(bus, []):
            if rule.pattern.matches(event):
                by_rule[(bus, rule.Name)] += 1
                targets += len(rule.Targets)
        reached[targets] += 1
    return Matches(len(events), dict(by_rule), dict(reached))
