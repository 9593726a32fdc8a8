"""The bus: several rules and destinations under the account's invocation quota (docs/bus.md).

The bus form of a scenario has three sections — `account` (the quota every target invocation
of the account takes), `destinations` (API destinations, each with its own token bucket and
endpoint) and `rules` (each matching an independent share of the bus's events and invoking one
destination with its own retry policy and dead-letter queue). `Bus` is the one normalized view
of a scenario that the engines read: a single-destination scenario is a bus of one destination,
one rule matching every event and no account quota (`single_bus`). `check_bus` holds the
cross-references the sections cannot check alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field

from sim.scenario.sections import (
    NAME_PATTERN,
    Destination,
    Endpoint,
    LocatedError,
    Probability,
    RetryPolicy,
    Strict,
)

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
MAX_BUS_ITEMS = 3000
"""Most destinations, and most rules, a bus may have (the default API destinations quota)."""
SINGLE_RULE = "all-events"
"""Name of the one rule a single-destination scenario stands for (the live core's catch-all)."""
AccountOrder = Literal["after_destination", "before_destination"]


class Account(Strict):
    """The account's invocation quota: Service Quotas L-5540C5E3, "Invocations throttle limit in
    transactions per second". One token bucket, taken by every attempt of every target; over
    it, invocations are delayed, not rejected. `null` = unlimited.

    ASSUMPTIONS (AWS documents neither): the bucket holds `burst_capacity` tokens (default one
    second of the quota, as for destinations), and `order` says where it sits relative to a
    destination's own bucket (docs/bus.md).
    """

    invocation_limit_per_second: Annotated[float, Field(gt=0)] | None
    burst_capacity: Annotated[float, Field(ge=1)] | None = None
    order: AccountOrder = "after_destination"

    @property
    def burst(self) -> float:
        """Effective bucket capacity: `burst_capacity`, else one second of the quota, at least 1."""
        if self.burst_capacity is not None:
            return self.burst_capacity
        return max(1.0, self.invocation_limit_per_second or 1.0)


class BusDestination(Destination):
    """One API destination of a bus: the single form's `destination` plus its own `endpoint`.

    Its token bucket is shared by every rule that targets it (S2).
    """

    name: Name
    endpoint: Endpoint


class BusRule(Strict):
    """One rule target of a bus: matches a share of the bus's events and invokes `target`.

    `match_fraction` is the share of bus events the rule's pattern matches, drawn independently
    per rule; an event matching several rules becomes one invocation per rule (fan-out). Each
    rule has its own retry policy and dead-letter queue (S6-S9).
    """

    name: Name
    match_fraction: Probability
    target: Name
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    dead_letter_queue: bool = False


@dataclass(frozen=True)
class Bus:
    """The normalized view of a scenario: every engine reads this, whatever form the file used.

    `destinations` and `rules` keep the file's order; `targets[i]` is the index in
    `destinations` of rule i's destination.
    """

    account: Account
    destinations: tuple[BusDestination, ...]
    rules: tuple[BusRule, ...]

    @cached_property
    def targets(self) -> tuple[int, ...]:
        """For each rule, the index of the destination it invokes."""
        index = {d.name: i for i, d in enumerate(self.destinations)}
        return tuple(index[rule.target] for rule in self.rules)

    @property
    def burst(self) -> float:
        """The backlog one burst absorbs on the whole bus: the destinations' burst capacities
        summed, at most the account's when it has a quota."""
        total = float(sum(d.burst for d in self.destinations))
        if self.account.invocation_limit_per_second is not None:
            total = min(total, self.account.burst)
        return total

    def destination(self, name: str) -> BusDestination:
        """The destination called `name` (KeyError if there is none)."""
        for destination in self.destinations:
            if destination.name == name:
                return destination
        raise KeyError(name)

    def rules_for(self, destination: str) -> tuple[BusRule, ...]:
        """The rules that invoke a destination, in file order (they share its token bucket)."""
        return tuple(rule for rule in self.rules if rule.target == destination)

    def invocations_per_event(self, destination: str | None = None) -> float:
        """Expected first attempts per bus event: to one destination, or in all (the fan-out)."""
        rules = self.rules if destination is None else self.rules_for(destination)
        return sum(rule.match_fraction for rule in rules)

    def first_attempt_rates(self, events_per_second: float) -> dict[str, float]:
        """First attempts per second each destination is offered at an event rate (no retries)."""
        return {
            d.name: events_per_second * self.invocations_per_event(d.name)
            for d in self.destinations
        }

    @property
    def is_single(self) -> bool:
        """One destination, one rule matching every event and no account quota: exactly what a
        single-destination scenario means."""
        return (
            len(self.destinations) == 1
            and len(self.rules) == 1
            and self.rules[0].match_fraction == 1
            and self.account.invocation_limit_per_second is None
        )


def single_bus(
    destination: Destination, endpoint: Endpoint, retry_policy: RetryPolicy, dead_letter_queue: bool
) -> Bus:
    """The bus a single-destination scenario stands for: its destination, one rule
    (`all-events`) matching every event with its retry policy and DLQ, no account quota."""
    fields = {name: getattr(destination, name) for name in Destination.model_fields}
    return Bus(
        account=Account(invocation_limit_per_second=None),
        destinations=(BusDestination.model_validate({**fields, "endpoint": endpoint}),),
        rules=(
            BusRule(
                name=SINGLE_RULE,
                match_fraction=1.0,
                target=destination.name,
                retry_policy=retry_policy,
                dead_letter_queue=dead_letter_queue,
            ),
        ),
    )


def check_bus(destinations: Sequence[BusDestination], rules: Sequence[BusRule]) -> None:
    """Unique names, every rule's target a destination, every destination some rule's target;
    LocatedError naming the key path otherwise."""
    _unique([d.name for d in destinations], "destinations", "destination")
    _unique([r.name for r in rules], "rules", "rule")
    names = [d.name for d in destinations]
    for i, rule in enumerate(rules):
        if rule.target not in names:
            raise LocatedError(
                ("rules", i, "target"),
                f"no destination named {rule.target!r} (destinations: {_listing(names)})",
            )
    targeted = {rule.target for rule in rules}
    for i, name in enumerate(names):
        if name not in targeted:
            raise LocatedError(
                ("destinations", i),
                f"no rule targets destination {name!r}: add a rule with `target: {name}` "
                "or remove the destination",
            )


def _unique(names: Sequence[str], section: str, what: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            raise LocatedError(
                (section, i, "name"),
                f"duplicate {what} name {name!r} (also {section}.{first[name]}.name)",
            )
        first[name] = i


def _listing(names: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
