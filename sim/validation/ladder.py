"""The deviation ladder of `sim validate --power`: deliberately wrong models, one setting at a time.

Each `Deviation` is a model-only override (`--model-set`) of one setting by a fixed step away
from the model being validated: rate limit ±2/5/10 %, burst capacity ×½, −10 %, +10 %, ×2,
backoff base ×½/×2/×4/×10, cap ×½/×2, multiplier ×0.75/×1.5, the other jitter kinds, client
timeout ±20 %, endpoint latency ±10/25 % (the whole distribution scaled, shape kept), each
error status's share and the hang share ±25/50 % (the difference taken from or given to the
largest 2xx share), Retry-After ignored, and the other throttle order. A setting the scenario
does not have (no Retry-After, no rate limit, an empirical latency) is skipped with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sim.scenario.model import Latency, Scenario

RATE = "destination.invocation_rate_limit_per_second"
BURST = "destination.burst_capacity"
ORDER = "destination.throttle_order"
TIMEOUT = "destination.timeout"
BASE = "retry_policy.backoff.base"
CAP = "retry_policy.backoff.cap"
MULTIPLIER = "retry_policy.backoff.multiplier"
JITTER = "retry_policy.backoff.jitter"
LATENCY = "endpoint.latency"
RESPONSES = "endpoint.responses"
HANGS = "endpoint.timeout_probability"
RETRY_AFTER = "endpoint.retry_after"

PERCENT_STEPS = {RATE: (0.02, 0.05, 0.10), TIMEOUT: (0.20,), LATENCY: (0.10, 0.25)}
SHARE_STEPS = (0.25, 0.50)
FACTORS = {
    BURST: (0.5, 0.9, 1.1, 2.0),
    BASE: (0.5, 2.0, 4.0, 10.0),
    CAP: (0.5, 2.0),
    MULTIPLIER: (0.75, 1.5),
}
JITTERS = ("full", "equal", "none", "decorrelated")
SETTINGS = (RATE, BURST, ORDER, BASE, CAP, MULTIPLIER, JITTER, TIMEOUT, LATENCY, RESPONSES, HANGS,
            RETRY_AFTER)  # fmt: skip
"""Every setting of the ladder, in its order."""


@dataclass(frozen=True)
class Deviation:
    """One wrong model: `overrides` applied to the validated model (model only)."""

    setting: str  # the scenario key it changes (for a response share: endpoint.responses.503)
    label: str  # how far: "-5%", "x2", "lifo", "ignored"
    value: str  # the deviated model's value, for people
    overrides: dict[str, Any] = field(hash=False)
    factor: float | None = None  # numeric deviations: new value / validated value

    @property
    def side(self) -> str:
        """`below` or `above` the validated value; empty for a categorical change."""
        if self.factor is None:
            return ""
        return "below" if self.factor < 1 else "above"

    @property
    def size(self) -> float:
        """How far from the validated model (|log factor|; categorical changes count as 1)."""
        return 1.0 if self.factor is None else abs(math.log(self.factor))


def percent(step: float) -> str:
    return f"{step * 100:+.0f}%"


def times(factor: float) -> str:
    return f"x{factor:g}"


def ladder(
    model: Scenario, settings: Collection[str] | None = None
) -> tuple[list[Deviation], dict[str, str]]:
    """The deviations of `model` (in a fixed order) and the settings skipped, with why.

    `settings`: keep only the deviations of these settings (`endpoint.responses` selects every
    response share); an unknown name is a ValueError.
    """
    deviations, skipped = _ladder(model)
    if settings is None:
        return deviations, skipped
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"no such setting in the ladder: {', '.join(sorted(unknown))}")

    def chosen(setting: str) -> bool:
        return setting in settings or setting.rsplit(".", 1)[0] in settings

    return [d for d in deviations if chosen(d.setting)], {
        k: why for k, why in skipped.items() if chosen(k)
    }


def _ladder(model: Scenario) -> tuple[list[Deviation], dict[str, str]]:
    out: list[Deviation] = []
    skipped: dict[str, str] = {}
    destination, backoff = model.destination, model.retry_policy.backoff
    rate = destination.invocation_rate_limit_per_second
    if rate is None:
        for key in (RATE, BURST, ORDER):
            skipped[key] = "no rate limit: no token bucket"
    else:
        burst = destination.burst
        for step in _both(PERCENT_STEPS[RATE]):
            # the bucket is pinned: without burst_capacity it would follow the rate
            new = rate * (1 + step)
            out.append(Deviation(RATE, percent(step), f"{new:g}/s",
                                 {RATE: new, BURST: burst}, 1 + step))  # fmt: skip
        for factor in FACTORS[BURST]:
            new = max(1.0, burst * factor)
            if new != burst:
                label = times(factor) if factor in (0.5, 2.0) else percent(factor - 1)
                out.append(Deviation(BURST, label, f"{new:g}", {BURST: new}, new / burst))
        other = "lifo" if destination.throttle_order == "fifo" else "fifo"
        out.append(Deviation(ORDER, other, other, {ORDER: other}))
    for key, current in ((BASE, backoff.base), (CAP, backoff.cap)):
        for factor in FACTORS[key]:
            out.append(Deviation(key, times(factor), _seconds(current * factor),
                                 {key: current * factor}, factor))  # fmt: skip
    for factor in FACTORS[MULTIPLIER]:
        new = backoff.multiplier * factor
        if new >= 1:
            out.append(Deviation(MULTIPLIER, times(factor), f"{new:g}", {MULTIPLIER: new}, factor))
    for kind in JITTERS:
        if kind != backoff.jitter:
            out.append(Deviation(JITTER, kind, kind, {JITTER: kind}))
    for step in _both(PERCENT_STEPS[TIMEOUT]):
        new = destination.timeout * (1 + step)
        out.append(Deviation(TIMEOUT, percent(step), _seconds(new), {TIMEOUT: new}, 1 + step))
    out += _latency(model, skipped)
    out += _shares(model, skipped)
    out += _retry_after(model, skipped)
    return out, skipped


def _both(steps: tuple[float, ...]) -> list[float]:
    """-steps (largest first) then +steps (smallest first): the ladder in value order."""
    return [-s for s in reversed(steps)] + list(steps)


def _seconds(value: float) -> str:
    return f"{value * 1e3:g} ms" if value < 1 else f"{value:g} s"


def _scaled(latency: Latency, factor: float) -> dict[str, Any] | None:
    """The latency distribution scaled by `factor` (every quantile), or None if it cannot be."""
    kind = latency.kind
    if kind == "constant":
        return {"kind": kind, "value": latency.value * factor}  # type: ignore[union-attr]
    if kind == "gamma":
        return {"kind": kind, "mean": latency.mean * factor, "cv": latency.cv}  # type: ignore[union-attr]
    if kind == "lognormal":
        if latency.median is not None and latency.p99 is not None:  # type: ignore[union-attr]
            return {"kind": kind, "median": latency.median * factor, "p99": latency.p99 * factor}  # type: ignore[union-attr]
        mu, sigma = latency.log_params  # type: ignore[union-attr]
        return {"kind": kind, "mu": mu + math.log(factor), "sigma": sigma}
    return None  # empirical samples: no parameter to scale


def _latency(model: Scenario, skipped: dict[str, str]) -> list[Deviation]:
    endpoint = model.endpoint
    latencies = {LATENCY: endpoint.latency}
    for i, incident in enumerate(endpoint.incidents):
        if incident.latency is not None:
            latencies[f"endpoint.incidents.{i}.latency"] = incident.latency
    out = []
    for step in _both(PERCENT_STEPS[LATENCY]):
        overrides = {key: _scaled(latency, 1 + step) for key, latency in latencies.items()}
        if any(value is None for value in overrides.values()):
            skipped[LATENCY] = "an empirical latency distribution has no median to scale"
            return []
        median = _median_s(endpoint.latency) * (1 + step)
        out.append(Deviation(LATENCY, percent(step), f"median {_seconds(median)}",
                             overrides, 1 + step))  # fmt: skip
    return out


def _median_s(latency: Latency) -> float:
    if latency.kind == "constant":
        return latency.value  # type: ignore[union-attr]
    if latency.kind == "lognormal":
        return math.exp(latency.log_params[0])  # type: ignore[union-attr]
    if latency.kind == "gamma":
        from scipy import stats

        shape = 1 / latency.cv**2  # type: ignore[union-attr]
        return float(stats.gamma.median(shape, scale=latency.mean / shape))  # type: ignore[union-attr]
    return math.nan


def _shares(model: Scenario, skipped: dict[str, str]) -> list[Deviation]:
    """Each error status's share, and the hang share, ±25/50 %, against the largest 2xx share."""
    responses = dict(model.endpoint.responses)
    ok = [s for s in responses if 200 <= s <= 299]
    errors = [s for s, p in responses.items() if p > 0 and not 200 <= s <= 299]
    if not errors:
        skipped[RESPONSES] = "the response mix has no error status" + _not_varied(model)
    elif not ok:
        skipped[RESPONSES] = "no 2xx share to take the difference from"
    if not errors or not ok:
        errors = []
    donor = max(ok, key=lambda s: responses[s]) if ok else 200
    out = []
    for status in sorted(errors):
        share = responses[status]
        for step in _both(SHARE_STEPS):
            delta = share * step
            if responses[donor] - delta < 0:
                continue
            mix = {**responses, status: share + delta, donor: responses[donor] - delta}
            out.append(Deviation(f"{RESPONSES}.{status}", percent(step), f"{share + delta:.4g}",
                                 {RESPONSES: mix}, 1 + step))  # fmt: skip
    hangs = model.endpoint.timeout_probability
    if hangs == 0:
        in_incidents = any(i.timeout_probability for i in model.endpoint.incidents)
        skipped[HANGS] = "timeout_probability is 0" + (
            " (incidents' hangs are not varied)" if in_incidents else ""
        )
    else:
        for step in _both(SHARE_STEPS):
            new = hangs * (1 + step)
            if new < 1:
                out.append(Deviation(HANGS, percent(step), f"{new:.4g}", {HANGS: new}, 1 + step))
    return out


def _not_varied(model: Scenario) -> str:
    """What the share ladder leaves alone, when the scenario has it."""
    parts = []
    if model.endpoint.capacity is not None:
        parts.append("overload answers")
    if model.endpoint.incidents:
        parts.append("incidents")
    return f" ({' and '.join(parts)} are not varied)" if parts else ""


def _retry_after(model: Scenario, skipped: dict[str, str]) -> list[Deviation]:
    """Retry-After ignored: the endpoint's headers removed (in force and in every incident)."""
    endpoint = model.endpoint
    overrides: dict[str, Any] = {}
    if endpoint.retry_after:
        overrides[RETRY_AFTER] = {}
    for i, incident in enumerate(endpoint.incidents):
        if incident.retry_after:
            overrides[f"endpoint.incidents.{i}.retry_after"] = {}
    if not overrides:
        skipped[RETRY_AFTER] = "the endpoint sends no Retry-After"
        return []
    return [Deviation(RETRY_AFTER, "ignored", "ignored", overrides)]


def current_value(model: Scenario, setting: str) -> str:
    """The validated model's value of a ladder setting, for people."""
    destination, backoff, endpoint = model.destination, model.retry_policy.backoff, model.endpoint
    if setting.startswith(f"{RESPONSES}."):
        return f"{endpoint.responses.get(int(setting.rsplit('.', 1)[1]), 0.0):.4g}"
    rate = destination.invocation_rate_limit_per_second
    values: dict[str, Any] = {
        RATE: "unlimited" if rate is None else f"{rate:g}/s",
        BURST: f"{destination.burst:g}",
        ORDER: destination.throttle_order,
        TIMEOUT: _seconds(destination.timeout),
        BASE: _seconds(backoff.base),
        CAP: _seconds(backoff.cap),
        MULTIPLIER: f"{backoff.multiplier:g}",
        JITTER: backoff.jitter,
        LATENCY: f"median {_seconds(_median_s(endpoint.latency))}",
        HANGS: f"{endpoint.timeout_probability:.4g}",
        RETRY_AFTER: "honoured",
    }
    return str(values.get(setting, ""))
