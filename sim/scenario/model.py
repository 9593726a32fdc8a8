"""The scenario: one typed, frozen, strictly validated model of design §4. Defaults live only here.

A scenario is written in one of two forms (docs/scenarios.md, docs/bus.md):

* the **single-destination form** — `destination`, `endpoint`, `retry_policy`,
  `dead_letter_queue` — one API destination and one rule matching every event;
* the **bus form** — `account`, `destinations`, `rules` — several rules and destinations under
  the account's invocation quota, with fan-out.

Mixing them is an error naming the key. Whatever the form, `Scenario.bus` is the one
normalized view (`sim.scenario.bus.Bus`). `destination`, `endpoint`, `retry_policy` and
`dead_letter_queue` read the single form (a bus scenario raises InputError there: the model
runs the single form until its bus engine lands). The sections live in
`sim.scenario.sections` and are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from sim.errors import InputError
from sim.scenario.bus import (
    MAX_BUS_ITEMS,
    Account,
    Bus,
    BusDestination,
    BusRule,
    check_bus,
    single_bus,
)
from sim.scenario.durations import format_duration
from sim.scenario.sections import (
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_EVENT_AGE_S,
    MAX_HORIZON_S,
    MAX_RATE_PER_SECOND,
    MAX_RETRY_ATTEMPTS,
    MIN_EVENT_AGE_S,
    NAME_PATTERN,
    Arrivals,
    Backoff,
    BurstArrivals,
    Capacity,
    ConstantArrivals,
    ConstantLatency,
    CountsArrivals,
    CsvPath,
    Destination,
    DiurnalArrivals,
    Duration,
    EmpiricalLatency,
    Endpoint,
    GammaLatency,
    Incident,
    Latency,
    Loaded,
    LocatedError,
    LognormalLatency,
    NonNegativeDuration,
    PositiveDuration,
    Probability,
    Rate,
    ResponseMix,
    RetryAfter,
    RetryPolicy,
    Slo,
    StatusCode,
    Strict,
    TraceArrivals,
)

__all__ = [
    "Account",
    "Arrivals",
    "Backoff",
    "BurstArrivals",
    "Bus",
    "BusDestination",
    "BusRule",
    "Capacity",
    "ConstantArrivals",
    "ConstantLatency",
    "CountsArrivals",
    "CsvPath",
    "Destination",
    "DiurnalArrivals",
    "Duration",
    "EmpiricalLatency",
    "Endpoint",
    "GammaLatency",
    "Incident",
    "Latency",
    "Loaded",
    "LocatedError",
    "LognormalLatency",
    "MAX_CONCURRENCY",
    "MAX_DURATION_S",
    "MAX_EVENT_AGE_S",
    "MAX_HORIZON_S",
    "MAX_RATE_PER_SECOND",
    "MAX_RETRY_ATTEMPTS",
    "MIN_EVENT_AGE_S",
    "NAME_PATTERN",
    "NonNegativeDuration",
    "PositiveDuration",
    "Probability",
    "Rate",
    "ResponseMix",
    "RetryAfter",
    "RetryPolicy",
    "Scenario",
    "Slo",
    "StatusCode",
    "Strict",
    "TraceArrivals",
]

_T = TypeVar("_T")

SINGLE_KEYS = ("destination", "endpoint", "retry_policy", "dead_letter_queue")
"""Top-level keys of the single-destination form."""
BUS_KEYS = ("account", "destinations", "rules")
"""Top-level keys of the bus form."""
_SINGLE_DEFAULTS: dict[str, Any] = {
    "destination": dict,
    "retry_policy": dict,
    "dead_letter_queue": False,
}
"""Defaults of the single form's optional keys (factories for the mappings)."""
_IN_A_BUS = {
    "destination": "list the bus's destinations under `destinations`",
    "endpoint": "each destination of a bus has its own (`destinations.N.endpoint`)",
    "retry_policy": "each rule of a bus has its own (`rules.N.retry_policy`)",
    "dead_letter_queue": "each rule of a bus has its own (`rules.N.dead_letter_queue`)",
}


class Scenario(Strict):
    """A complete what-if: arrivals, destinations with their endpoints, rules, outputs.

    Read `bus` for the normalized view; the `single_*` fields hold the single-destination
    form as written (the YAML keys `destination`, `endpoint`, ...), the bus fields the bus form.
    """

    model_config = ConfigDict(serialize_by_alias=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    horizon: Annotated[PositiveDuration, Field(le=MAX_HORIZON_S)]
    seed: Annotated[int, Field(ge=0)] = 0
    replications: Annotated[int, Field(ge=1, le=100_000)] = 10
    arrivals: Annotated[list[Arrivals], Field(min_length=1)]
    # the single-destination form; defaults filled in by `_one_form`
    single_destination: Destination | None = Field(None, alias="destination")
    single_endpoint: Endpoint | None = Field(None, alias="endpoint")
    single_retry_policy: RetryPolicy | None = Field(None, alias="retry_policy")
    single_dead_letter_queue: bool | None = Field(None, alias="dead_letter_queue")
    # the bus form
    account: Account | None = None
    destinations: (
        Annotated[list[BusDestination], Field(min_length=1, max_length=MAX_BUS_ITEMS)] | None
    ) = None
    rules: Annotated[list[BusRule], Field(min_length=1, max_length=MAX_BUS_ITEMS)] | None = None
    sample_every: PositiveDuration = 60.0
    slo: Slo = Field(default_factory=Slo)
    _source: str = PrivateAttr(default="")  # the file it came from, for error messages
    _bus: Bus = PrivateAttr()

    def __eq__(self, other: object) -> bool:  # the same what-if, wherever it was read from
        return type(other) is type(self) and self.__dict__ == other.__dict__

    @property
    def source(self) -> str:
        """Where the scenario came from (its file), as error messages name it."""
        return self._source or f"scenario {self.name!r}"

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        """One form or the other, never both; the single form's defaults filled in. A null
        top-level key counts as absent (a dumped scenario holds the other form's keys as null)."""
        if not isinstance(data, dict):
            return data
        single = [k for k in SINGLE_KEYS if data.get(k) is not None]
        bus = [k for k in BUS_KEYS if data.get(k) is not None]
        if single and bus:
            if "destinations" in bus or "rules" in bus:
                keys = " and ".join(f"`{k}`" for k in bus if k != "account")
                problem = "belongs to the single-destination form, but this scenario is a bus "
                raise LocatedError(
                    (single[0],), f"{problem}(it has {keys}): {_IN_A_BUS[single[0]]}"
                )
            raise LocatedError(
                ("account",),
                "the account quota belongs to the bus form: write the scenario as a bus "
                "(`destinations` and `rules`; one destination is a bus of one) to plan it",
            )
        unused = SINGLE_KEYS if bus else BUS_KEYS
        data = {k: v for k, v in data.items() if not (k in unused and v is None)}
        if not bus:
            for key, default in _SINGLE_DEFAULTS.items():
                if data.get(key) is None:
                    data[key] = default() if callable(default) else default
        return data

    @model_validator(mode="after")
    def _normalize(self) -> Scenario:
        """Check the form's cross-references and build the normalized `bus` view."""
        if all(getattr(self, key) is None for key in BUS_KEYS):
            if self.single_endpoint is None:
                raise LocatedError(("endpoint",), "required key is missing")
            self._bus = single_bus(
                self._given(self.single_destination),
                self.single_endpoint,
                self._given(self.single_retry_policy),
                bool(self.single_dead_letter_queue),
            )
            return self
        for key in BUS_KEYS:
            if getattr(self, key) is None:
                problem = "required key is missing (a bus gives account, destinations and rules)"
                raise LocatedError((key,), problem)
        account, destinations, rules = self.account, self.destinations, self.rules
        assert account is not None and destinations is not None and rules is not None
        check_bus(destinations, rules)
        self._bus = Bus(account, tuple(destinations), tuple(rules))
        return self

    @model_validator(mode="after")
    def _sample_within_horizon(self) -> Scenario:
        if self.sample_every > self.horizon:
            raise ValueError("sample_every is longer than the horizon")
        return self

    # --- the two views -------------------------------------------------------------------------

    @property
    def is_bus(self) -> bool:
        """True when the scenario is written in the bus form (`account`, `destinations`, `rules`)."""
        return self.destinations is not None

    @property
    def bus(self) -> Bus:
        """The normalized view, whatever the form: account, destinations and rules."""
        return self._bus

    def require_single(self, what: str | None = None) -> None:
        """Raise InputError for a bus scenario: what reads `destination`, `endpoint`,
        `retry_policy` or `dead_letter_queue` runs the single form only. `what` names the
        command or option that cannot take a bus (default: a generic line)."""
        if self.is_bus:
            bus = self.bus
            refused = (
                f"{what} takes the single-destination form only"
                if what
                else "this reads the single-destination form only"
            )
            raise InputError(
                self.source,
                "destinations",
                f"a bus of {_count(bus.destinations, 'destination')} and "
                f"{_count(bus.rules, 'rule')}: {refused}; `sim check`, `sim run`, `sim sweep` and "
                "`sim size --destination/--account` take a bus (docs/bus.md)",
            )

    @property
    def destination(self) -> Destination:
        """The single form's destination (InputError for a bus: read `bus.destinations`)."""
        self.require_single()
        return self._given(self.single_destination)

    @property
    def endpoint(self) -> Endpoint:
        """The single form's endpoint (InputError for a bus: each destination has one)."""
        self.require_single()
        return self._given(self.single_endpoint)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The single form's retry policy (InputError for a bus: each rule has one)."""
        self.require_single()
        return self._given(self.single_retry_policy)

    @property
    def dead_letter_queue(self) -> bool:
        """The single form's DLQ setting (InputError for a bus: each rule has one)."""
        self.require_single()
        return bool(self.single_dead_letter_queue)

    @staticmethod
    def _given(value: _T | None) -> _T:
        assert value is not None, "filled in by _one_form for the single form"
        return value

    # --- outputs -------------------------------------------------------------------------------

    def assumptions(self) -> dict[str, Any]:
        """The ASSUMPTION settings (not documented by AWS) this scenario runs with, by key path
        (bus sections by name: `destinations.partner-a.burst_capacity`)."""
        if not self.is_bus:
            return {
                **_bucket_assumptions("destination", self.destination),
                **_backoff_assumptions("retry_policy", self.retry_policy),
            }
        account = self.bus.account
        found: dict[str, Any] = {"account.burst_capacity": "none (no account quota)"}
        if account.invocation_limit_per_second is not None:
            found = {"account.burst_capacity": account.burst, "account.order": account.order}
        for destination in self.bus.destinations:
            found.update(_bucket_assumptions(f"destinations.{destination.name}", destination))
        for rule in self.bus.rules:
            found.update(_backoff_assumptions(f"rules.{rule.name}.retry_policy", rule.retry_policy))
        return found

    def resolved(self) -> dict[str, Any]:
        """The scenario with every default filled in, as plain data (durations in readable units),
        in the form it was written in."""
        data = _drop_unset(self.model_dump())
        if not self.is_bus:
            if self.destination.invocation_rate_limit_per_second is not None:
                data["destination"]["burst_capacity"] = self.destination.burst
            return data
        destinations = data["destinations"]
        for i, destination in enumerate(self.bus.destinations):
            if destination.invocation_rate_limit_per_second is not None:
                destinations[i] = _after(
                    destinations[i], "invocation_rate_limit_per_second", destination.burst
                )
        if self.bus.account.invocation_limit_per_second is not None:
            data["account"] = _after(
                data["account"], "invocation_limit_per_second", self.bus.account.burst
            )
        return data


def _after(mapping: dict[str, Any], key: str, burst: float) -> dict[str, Any]:
    """`mapping` with `burst_capacity` set right after `key` (the rate it goes with)."""
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        if name != "burst_capacity":
            out[name] = value
        if name == key:
            out["burst_capacity"] = burst
    return out


def _bucket_assumptions(key: str, destination: Destination) -> dict[str, Any]:
    limited = destination.invocation_rate_limit_per_second is not None
    return {
        f"{key}.burst_capacity": destination.burst if limited else "none (no rate limit)",
        f"{key}.throttle_order": destination.throttle_order,
    }


def _backoff_assumptions(key: str, retry_policy: RetryPolicy) -> dict[str, Any]:
    backoff = retry_policy.backoff
    return {
        f"{key}.backoff.base": format_duration(backoff.base),
        f"{key}.backoff.multiplier": backoff.multiplier,
        f"{key}.backoff.cap": format_duration(backoff.cap),
        f"{key}.backoff.jitter": backoff.jitter,
    }


def _count(items: tuple[Any, ...], what: str) -> str:
    return f"{len(items)} {what}{'' if len(items) == 1 else 's'}"


_KEEP_NULL = ("invocation_rate_limit_per_second", "invocation_limit_per_second")
"""Keys where null means something (unlimited) and is written out."""


def _drop_unset(value: Any) -> Any:
    """Remove None-valued optional keys, except the rate limits, where null means unlimited."""
    if isinstance(value, dict):
        return {k: _drop_unset(v) for k, v in value.items() if v is not None or k in _KEEP_NULL}
    if isinstance(value, list):
        return [_drop_unset(v) for v in value]
    return value
