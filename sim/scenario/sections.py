"""The sections of a scenario (design §4), as typed, frozen, strictly validated models.

Arrivals, the endpoint, the destination, the retry policy and the SLO, with the value types they
share (durations, probabilities, status codes) and the limits that keep a run feasible. The
whole scenario — single-destination or bus form — is `sim.scenario.model.Scenario`, which
re-exports every name here. Durations are float seconds once validated (the YAML may say
`250ms`, `2h`, `1d`); they are written back in the largest exact unit when a scenario is dumped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.scenario.csv_inputs import read_counts, read_metric_counts, read_samples
from sim.scenario.durations import format_duration, parse_duration
from sim.scenario.metric_data import is_metric_data_json

MAX_DURATION_S = 1e9
"""Longest duration anywhere in a scenario (about 31 years): longer ones cannot be shown back."""


def _duration(value: object) -> float:
    """`parse_duration`, refusing numbers too large for a float and durations over 1e9 s."""
    try:
        seconds = parse_duration(value)
    except OverflowError:
        raise ValueError("the number is too large for a duration") from None
    if abs(seconds) > MAX_DURATION_S:
        raise ValueError(f"{seconds:.3g} s is longer than {MAX_DURATION_S:.0e} s (about 31 years)")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(format_duration)]
PositiveDuration = Annotated[Duration, Field(gt=0)]
NonNegativeDuration = Annotated[Duration, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
StatusCode = Annotated[int, Field(ge=100, le=599)]

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MIN_EVENT_AGE_S = 60.0
MAX_EVENT_AGE_S = 86400.0
MAX_RETRY_ATTEMPTS = 185
MAX_RATE_PER_SECOND = 1e6
"""Largest arrival rate of one source: beyond it a run cannot draw or hold its arrivals."""
MAX_CONCURRENCY = 100_000
MAX_HORIZON_S = 31 * 86400.0
"""Longest horizon: a month (checks and runs hold per-second arrays over the horizon)."""
Rate = Annotated[float, Field(ge=0, le=MAX_RATE_PER_SECOND)]
DEFAULT_COUNTS_METRIC = "MatchedEvents"
"""The series a `counts` source reads from a GetMetricData file unless `metric` says otherwise."""


class LocatedError(ValueError):
    """A problem a model validator finds at a key path below it (`rules.2.target`), so the
    one-line error names that key (`sim.scenario.loading.validation_error` reads `loc`)."""

    def __init__(self, loc: tuple[str | int, ...], problem: str) -> None:
        super().__init__(problem)
        self.loc = loc


class Strict(BaseModel):
    """Base for every scenario section: unknown keys are errors, numbers are finite, instances
    are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Loaded:
    """Arrays read from a CSV, attached to a frozen model; equal when their contents are equal."""

    def __init__(self, *arrays: np.ndarray) -> None:
        self.arrays = arrays

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loaded) and all(
            np.array_equal(a, b) for a, b in zip(self.arrays, other.arrays, strict=True)
        )


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _absolute_path(value: Any, info: ValidationInfo) -> Any:
    """CSV paths are relative to the scenario file; store them absolute so a resolved copy still works."""
    if isinstance(value, str) and value:
        return str((_base_dir(info) / value).resolve())
    return value


CsvPath = Annotated[str, BeforeValidator(_absolute_path), Field(min_length=1)]


# --- arrivals -------------------------------------------------------------------------------


class ConstantArrivals(Strict):
    """Poisson arrivals at a constant rate over the whole horizon."""

    kind: Literal["constant"]
    rate_per_second: Rate


class BurstArrivals(Strict):
    """Poisson arrivals at `rate_per_second` from `start` for `duration`."""

    kind: Literal["burst"]
    start: NonNegativeDuration
    duration: PositiveDuration
    rate_per_second: Rate


class DiurnalArrivals(Strict):
    """Poisson arrivals whose rate follows a cosine: mean·(1 + amplitude·cos(2π(t − peak_at)/period))."""

    kind: Literal["diurnal"]
    mean_per_second: Rate
    amplitude: Probability = 0.5
    peak_at: NonNegativeDuration = 14 * 3600.0
    period: PositiveDuration = 86400.0


class CountsArrivals(Strict):
    """Non-homogeneous Poisson arrivals from binned counts: a CSV (e.g. a per-minute metrics
    export; `time_column`, `count_column`) or a GetMetricData JSON file (`.json`; `metric`,
    default MatchedEvents, and `rule` when it holds several rules; missing minutes are zero)."""

    kind: Literal["counts"]
    path: CsvPath
    time_column: str | None = None
    count_column: str | None = None
    metric: str | None = None
    rule: str | None = None
    bin: PositiveDuration | None = None
    scale: Annotated[float, Field(ge=0)] = 1.0
    _bins: Loaded = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> CountsArrivals:
        path = Path(self.path)
        if is_metric_data_json(path):
            if self.time_column is not None or self.count_column is not None:
                raise ValueError(
                    "a GetMetricData JSON file has no columns: select its series with `metric` "
                    "(default MatchedEvents) and `rule`"
                )
            metric = self.metric or DEFAULT_COUNTS_METRIC
            self._bins = Loaded(*read_metric_counts(path, metric, self.rule, self.bin))
        else:
            if self.metric is not None or self.rule is not None:
                raise ValueError(
                    "`metric` and `rule` select a series of a GetMetricData JSON file (.json); "
                    "a CSV takes `time_column` and `count_column`"
                )
            if self.time_column is None or self.count_column is None:
                raise ValueError("a counts CSV needs `time_column` and `count_column`")
            self._bins = Loaded(*read_counts(path, self.time_column, self.count_column, self.bin))
        peak = float(self.bins[1].max())
        if peak > MAX_RATE_PER_SECOND:
            raise ValueError(
                f"{self.path}: the busiest bin is {peak:.3g} events/s with scale {self.scale:g}; "
                f"at most {MAX_RATE_PER_SECOND:g}/s can be simulated"
            )
        return self

    @property
    def bins(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin start times s since the first row, rate per second in each bin), scale applied."""
        edges, rates = self._bins.arrays
        return edges, rates * self.scale


class TraceArrivals(Strict):
    """Exact replay of arrival times (seconds since start, or timestamps) from a CSV column."""

    kind: Literal["trace"]
    path: CsvPath
    column: str
    _times: Loaded = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> TraceArrivals:
        self._times = Loaded(np.sort(read_samples(Path(self.path), self.column, times=True)))
        return self

    @property
    def times(self) -> np.ndarray:
        """Sorted arrival times, seconds since the run started."""
        return self._times.arrays[0]


Arrivals = Annotated[
    ConstantArrivals | BurstArrivals | DiurnalArrivals | CountsArrivals | TraceArrivals,
    Field(discriminator="kind"),
]


# --- endpoint -------------------------------------------------------------------------------


class ConstantLatency(Strict):
    kind: Literal["constant"]
    value: NonNegativeDuration


class LognormalLatency(Strict):
    """Lognormal service time, given by `median` and `p99`, or by `mu` and `sigma` of log-seconds."""

    kind: Literal["lognormal"]
    median: PositiveDuration | None = None
    p99: PositiveDuration | None = None
    mu: float | None = None
    sigma: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_parametrization(self) -> LognormalLatency:
        by_quantiles = self.median is not None and self.p99 is not None
        by_moments = self.mu is not None and self.sigma is not None
        given = {k for k in ("median", "p99", "mu", "sigma") if getattr(self, k) is not None}
        if by_quantiles == by_moments or len(given) != 2:
            raise ValueError("give either median and p99, or mu and sigma")
        if by_quantiles and self.p99 <= self.median:  # type: ignore[operator]
            raise ValueError("p99 must be greater than median")
        return self

    @property
    def log_params(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal, in log-seconds."""
        if self.mu is not None and self.sigma is not None:
            return self.mu, self.sigma
        z99 = 2.3263478740408408  # standard normal 0.99 quantile
        mu = math.log(self.median)  # type: ignore[arg-type]
        return mu, (math.log(self.p99) - mu) / z99  # type: ignore[arg-type]


class GammaLatency(Strict):
    kind: Literal["gamma"]
    mean: PositiveDuration
    cv: Annotated[float, Field(ge=1e-6, le=1e6)]  # beyond, the shape 1/cv² over/underflows


class EmpiricalLatency(Strict):
    """Service times resampled from a CSV column (in seconds, or milliseconds with `unit: ms`)."""

    kind: Literal["empirical"]
    path: CsvPath
    column: str
    unit: Literal["s", "ms"] = "s"
    _samples: Loaded = PrivateAttr()

    @model_validator(mode="after")
    def _load(self) -> EmpiricalLatency:
        values = read_samples(Path(self.path), self.column, times=False)
        self._samples = Loaded(np.sort(values * (0.001 if self.unit == "ms" else 1.0)))
        return self

    @property
    def samples(self) -> np.ndarray:
        """Sorted service times in seconds."""
        return self._samples.arrays[0]


Latency = Annotated[
    ConstantLatency | LognormalLatency | GammaLatency | EmpiricalLatency,
    Field(discriminator="kind"),
]


def _check_mix(mix: dict[int, float] | None) -> dict[int, float] | None:
    if mix is None:
        return None
    if not mix:
        raise ValueError("the response mix is empty")
    informational = sorted(s for s in mix if s < 200)
    if informational:
        raise ValueError(
            f"{informational[0]} is not a final response; an endpoint cannot answer with 1xx"
        )
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"response probabilities sum to {total:.6g}, they must sum to 1")
    return mix


ResponseMix = Annotated[dict[StatusCode, Probability], Field()]


def _whole_seconds(value: float) -> float:
    if value != int(value):
        raise ValueError(f"{value:g} s: Retry-After carries whole seconds")
    return value


RetryAfter = Annotated[
    dict[StatusCode, Annotated[Duration, AfterValidator(_whole_seconds)]], Field()
]


class Capacity(Strict):
    """The endpoint as an M/G/c/K server: `concurrency` in service, `queue` more waiting (FIFO)."""

    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]
    queue: Annotated[int, Field(ge=0)] = 0
    overload_status: StatusCode = 503


class Incident(Strict):
    """A time window in which responses, latency, timeouts, Retry-After or capacity are replaced."""

    start: NonNegativeDuration
    duration: PositiveDuration
    responses: ResponseMix | None = None
    latency: Latency | None = None
    timeout_probability: Probability | None = None
    retry_after: RetryAfter | None = None
    capacity: Capacity | None = None

    _mix = field_validator("responses")(_check_mix)

    @model_validator(mode="after")
    def _overrides_something(self) -> Incident:
        keys = ("responses", "latency", "timeout_probability", "retry_after", "capacity")
        if all(getattr(self, k) is None for k in keys):
            raise ValueError(f"an incident must override at least one of: {', '.join(keys)}")
        return self

    @property
    def end(self) -> float:
        return self.start + self.duration


class Endpoint(Strict):
    """How the receiving endpoint behaves (design S9a)."""

    latency: Latency
    responses: ResponseMix = Field(default_factory=lambda: {200: 1.0})
    timeout_probability: Annotated[float, Field(ge=0, lt=1)] = 0.0
    retry_after: RetryAfter = Field(default_factory=dict)
    capacity: Capacity | None = None
    incidents: list[Incident] = Field(default_factory=list)

    _mix = field_validator("responses")(_check_mix)


# --- destination and retry policy ----------------------------------------------------------


class Destination(Strict):
    """The API destination: token-bucket rate limit (S2), client timeout (S4), queue order (S3)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] = "destination"
    invocation_rate_limit_per_second: Annotated[float, Field(gt=0)] | None = 300.0
    burst_capacity: Annotated[float, Field(ge=1)] | None = None
    timeout: PositiveDuration = 5.0
    throttle_order: Literal["fifo", "lifo"] = "fifo"

    @property
    def burst(self) -> float:
        """Effective bucket capacity: `burst_capacity`, else one second of rate, at least 1 (S2)."""
        if self.burst_capacity is not None:
            return self.burst_capacity
        return max(1.0, self.invocation_rate_limit_per_second or 1.0)


class Backoff(Strict):
    """Delay before retry k = jitter(min(cap, base·multiplier^(k−1))) (S7)."""

    base: PositiveDuration = 1.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    cap: PositiveDuration = 900.0
    jitter: Literal["full", "equal", "none", "decorrelated"] = "full"


_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def _check_retry_status(value: Any) -> int | str:
    if isinstance(value, str) and _STATUS_CLASS.match(value.strip().lower()):
        value = value.strip().lower()
        if value == "2xx":
            raise ValueError("2xx means delivered; it cannot be retried")
        return value
    try:
        code = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a status code (100-599) or a class like 5xx") from None
    if not 100 <= code <= 599:
        raise ValueError(f"{code} is not a status code (100-599)")
    if 200 <= code <= 299:
        raise ValueError(f"{code} means delivered; it cannot be retried")
    return code


class RetryPolicy(Strict):
    """RetryPolicy of S6 plus the backoff and the retryable statuses (S5, S7)."""

    maximum_event_age: Annotated[Duration, Field(ge=MIN_EVENT_AGE_S, le=MAX_EVENT_AGE_S)] = (
        MAX_EVENT_AGE_S
    )
    maximum_retry_attempts: Annotated[int, Field(ge=0, le=MAX_RETRY_ATTEMPTS)] = MAX_RETRY_ATTEMPTS
    backoff: Backoff = Field(default_factory=Backoff)
    retry_statuses: list[Annotated[int | str, BeforeValidator(_check_retry_status)]] = Field(
        default_factory=lambda: [409, 429, "5xx"]  # type: ignore[arg-type]
    )


class Slo(Strict):
    """Service-level objectives a run is judged against; unset objectives are not checked."""

    max_p99_delivery_delay: PositiveDuration | None = None
    max_dropped_fraction: Probability | None = None
    max_dlq_fraction: Probability | None = None
