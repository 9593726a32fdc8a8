"""The endpoint behind an access log, as a scenario's `endpoint:` block (design S9a).

* **Hangs** (`timeout_probability`): requests that got no response (nginx 444/499, ALB 460 or
  no target response), that were answered 504 (a gateway's timeout) or that took the client
  timeout or longer. The client saw a timeout in each case.
* **Status mix** (`responses`): the share of each status among the other (answered) requests.
* **Latency**: a lognormal fitted to the answered requests by maximum likelihood (the mean and
  standard deviation of log latency), written as its median and p99; the KS distance between
  the data and the fit says how well it fits. With `empirical`, the latencies themselves.
* **Retry-After**: the median of the values logged per status, when the log has them.
* **Peak concurrency**: the most requests in progress at once, from each request's end time
  and latency (with times to the second only, the busiest second's average). The endpoint
  served at least that many at once, so it is a lower bound of its capacity, no more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.errors import InputError
from sim.fit.requests import NO_RESPONSE, Requests

HANG_STATUSES = (504,)
"""Statuses counted as hangs: the gateway timed out, so the client timed out first."""
LATENCY_FLOOR_S = 0.0005
"""Latencies are logged to the millisecond: 0.000 is taken as half a millisecond."""
Z99 = 2.3263478740408408


@dataclass
class EndpointFit:
    """The fitted endpoint and the evidence behind it."""

    n_requests: int
    n_hangs: int
    status_counts: dict[int, int]  # answered requests by status
    timeout_s: float
    latencies_s: np.ndarray  # sorted latencies of answered requests (1xx excluded)
    mu: float
    sigma: float
    ks_distance: float
    retry_after_s: dict[int, float]
    peak_concurrency: int | None
    time_resolution_s: float | None
    window: tuple[float, float] | None  # first start, last end (epoch s)
    n_informational: int = 0
    notes: list[str] = field(default_factory=list)
    source: str = ""  # the files and how they were read, for reports
    lines_read: int = 0
    skipped: int = 0  # malformed lines skipped
    first_skipped: str = ""
    filtered: int = 0  # requests outside the path prefix

    def report(self) -> list[str]:
        """The fit report, one line each: counts, the mix, the latency fit, hangs, concurrency."""
        return report_lines(self)

    @property
    def n_answered(self) -> int:
        return sum(self.status_counts.values())

    @property
    def timeout_probability(self) -> float:
        return self.n_hangs / self.n_requests

    @property
    def mix(self) -> dict[int, float]:
        """Share of each status among answered requests, summing to exactly 1 (6 decimals)."""
        total = self.n_answered
        shares = {s: round(n / total, 6) for s, n in sorted(self.status_counts.items())}
        largest = max(shares, key=lambda s: shares[s])
        shares[largest] = round(shares[largest] + 1.0 - sum(shares.values()), 6)
        return {s: p for s, p in shares.items() if p > 0}

    @property
    def lognormal(self) -> bool:
        return self.sigma > 0

    @property
    def median_s(self) -> float:
        return math.exp(self.mu)

    @property
    def p99_s(self) -> float:
        return math.exp(self.mu + Z99 * self.sigma)

    def data_quantile(self, q: float) -> float:
        return float(np.quantile(self.latencies_s, q))

    def endpoint_block(self, empirical_csv: str | None = None) -> dict[str, Any]:
        """The `endpoint:` block (plain data; durations as strings like `80.2ms`)."""
        if empirical_csv is not None:
            latency: dict[str, Any] = {
                "kind": "empirical",
                "path": empirical_csv,
                "column": "latency_s",
            }
        elif self.lognormal:
            latency = {
                "kind": "lognormal",
                "median": duration(self.median_s),
                "p99": duration(self.p99_s),
            }
        else:
            latency = {"kind": "constant", "value": duration(self.median_s)}
        block: dict[str, Any] = {"latency": latency, "responses": self.mix}
        if self.n_hangs:
            block["timeout_probability"] = round(self.timeout_probability, 6)
        retry_after = {s: f"{round(v):d}s" for s, v in self.retry_after_s.items() if s in self.mix}
        if retry_after:
            block["retry_after"] = retry_after
        return block


def duration(seconds: float) -> str:
    """Seconds as a duration string with 4 significant digits: `80.12ms`, `1.25s`."""
    millis = seconds * 1000.0
    if millis < 10_000:
        return f"{float(f'{millis:.4g}'):g}ms"
    return f"{float(f'{seconds:.4g}'):g}s"


def fit_requests(
    requests: Requests, timeout_s: float = 5.0, time_resolution_s: float | None = None
) -> EndpointFit:
    """Fit the endpoint to the requests read from its logs (see the module docstring);
    `time_resolution_s`: how precise the logged times are (for the concurrency's caveat)."""
    if requests.size == 0:
        raise InputError(", ".join(requests.sources) or None, None, "no request to fit")
    status, latency = requests.status, requests.latency_s
    with np.errstate(invalid="ignore"):
        late = latency >= timeout_s
    hang = (status == NO_RESPONSE) | np.isin(status, HANG_STATUSES) | late
    informational = ~hang & (status < 200)
    answered = ~hang & ~informational
    if not answered.any():
        raise InputError(
            ", ".join(requests.sources),
            None,
            f"every request hung or took the timeout ({timeout_s:g} s) or longer: "
            "there is no response to fit",
        )
    codes, counts = np.unique(status[answered], return_counts=True)
    timed = np.sort(latency[answered & np.isfinite(latency)])
    if timed.size == 0:
        raise InputError(", ".join(requests.sources), None, "no answered request has a latency")
    logs = np.log(np.maximum(timed, LATENCY_FLOOR_S))
    mu, sigma = float(logs.mean()), float(logs.std())
    retry_after = _retry_after(status[answered], requests.retry_after_s[answered])
    fit = EndpointFit(
        n_requests=int(requests.size - informational.sum()),
        n_hangs=int(hang.sum()),
        status_counts={int(c): int(n) for c, n in zip(codes, counts, strict=True)},
        timeout_s=timeout_s,
        latencies_s=timed,
        mu=mu,
        sigma=sigma,
        ks_distance=_ks_distance(timed, mu, sigma),
        retry_after_s=retry_after,
        peak_concurrency=peak_concurrency(requests.start_at, requests.end_at, time_resolution_s),
        time_resolution_s=time_resolution_s,
        window=_window(requests.start_at, requests.end_at),
        n_informational=int(informational.sum()),
        lines_read=requests.lines_read,
        skipped=requests.skipped,
        first_skipped=requests.first_skipped,
        filtered=requests.filtered,
    )
    if fit.n_informational:
        fit.notes.append(f"{fit.n_informational} 1xx answers left out (not final responses)")
    if timed.size < answered.sum():
        fit.notes.append(
            f"{int(answered.sum()) - timed.size} answers without a latency left out of the latency fit"
        )
    return fit


def _ks_distance(sorted_latencies: np.ndarray, mu: float, sigma: float) -> float:
    """Largest gap between the data's CDF and the fitted lognormal's (0 for a constant fit).

    Latencies logged to the millisecond (nginx) are rounded: a value v stands for
    [v - 0.5 ms, v + 0.5 ms), so the fit's CDF is taken at those edges, and rounding alone
    adds no distance.
    """
    if sigma <= 0:
        return 0.0
    from scipy.special import ndtr

    values, last = np.unique(sorted_latencies, return_index=True)
    counts = np.diff(np.append(last, sorted_latencies.size))
    after = np.cumsum(counts) / sorted_latencies.size
    before = after - counts / sorted_latencies.size
    half = _quantum(values) / 2

    def cdf(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return ndtr((np.log(np.maximum(x, 0.0)) - mu) / sigma)

    return float(
        max(np.abs(after - cdf(values + half)).max(), np.abs(before - cdf(values - half)).max())
    )


def _quantum(values: np.ndarray) -> float:
    """0.001 when every value is a whole number of milliseconds (a log's rounding), else 0."""
    millis = values * 1000.0
    return 0.001 if np.all(np.abs(millis - np.round(millis)) < 1e-6) else 0.0


def _retry_after(status: np.ndarray, retry_after: np.ndarray) -> dict[int, float]:
    """Median Retry-After (seconds) per status, where one was logged."""
    logged = np.isfinite(retry_after)
    return {
        int(code): float(np.median(retry_after[logged & (status == code)]))
        for code in np.unique(status[logged])
    }


def peak_concurrency(
    start_at: np.ndarray, end_at: np.ndarray, resolution_s: float | None = None
) -> int | None:
    """Most requests in progress at once (None when the log has no times).

    With times to the second (`resolution_s` >= 1), instants are not known: the busiest
    second's average number in progress (each request centred in its logged second), rounded
    up, which the true peak is at least.
    """
    known = np.isfinite(start_at) & np.isfinite(end_at)
    if not known.any():
        return None
    starts, ends = start_at[known], np.maximum(end_at[known], start_at[known])
    coarse = resolution_s is not None and resolution_s >= 1.0
    if coarse:
        assert resolution_s is not None
        starts, ends = starts + resolution_s / 2, ends + resolution_s / 2
    times = np.concatenate((starts, ends))
    steps = np.concatenate((np.ones(starts.size), -np.ones(ends.size)))
    order = np.lexsort((steps, times))  # at a tie, an end before a start
    times, in_progress = times[order], np.cumsum(steps[order])
    if not coarse:
        return int(in_progress.max())
    assert resolution_s is not None
    area = np.concatenate(([0.0], np.cumsum(in_progress[:-1] * np.diff(times))))  # at each event
    edges = np.arange(np.floor(times[0]), times[-1] + resolution_s, resolution_s)
    average = np.diff(np.interp(edges, times, area)) / resolution_s
    return int(math.ceil(average.max() - 1e-9))


def _window(start_at: np.ndarray, end_at: np.ndarray) -> tuple[float, float] | None:
    known = np.isfinite(start_at) & np.isfinite(end_at)
    if not known.any():
        return None
    return float(start_at[known].min()), float(end_at[known].max())


def concurrency_caveat(fit: EndpointFit) -> str:
    """How the peak concurrency was measured, when it is only approximate."""
    if fit.time_resolution_s is not None and fit.time_resolution_s >= 1.0:
        return " (on average over the busiest second: the log's times are to the second)"
    return ""


def report_lines(fit: EndpointFit) -> list[str]:
    """The fit report for the terminal: counts, the mix, latency fit, hangs, concurrency."""
    out = [f"read {fit.lines_read:,} lines of {fit.source}"]
    if fit.skipped:
        out.append(f"skipped {fit.skipped:,} malformed lines; the first: {fit.first_skipped}")
    if fit.filtered:
        out.append(f"left out {fit.filtered:,} requests outside the path")
    out += [
        f"requests: {fit.n_requests:,} ({fit.n_answered:,} answered, {fit.n_hangs:,} hung: "
        f"{100 * fit.timeout_probability:.2f} %)",
        "status mix: "
        + ", ".join(
            f"{status} {100 * share:.2f} % ({fit.status_counts[status]:,})"
            for status, share in fit.mix.items()
        ),
        f"latency of answered requests: median {duration(fit.data_quantile(0.5))}, "
        f"p90 {duration(fit.data_quantile(0.9))}, p99 {duration(fit.data_quantile(0.99))}",
    ]
    if fit.lognormal:
        out.append(
            f"lognormal fit: median {duration(fit.median_s)}, p99 {duration(fit.p99_s)} "
            f"(sigma {fit.sigma:.3f}); KS distance {fit.ks_distance:.3f}"
            + ("  -- a poor fit: consider --empirical" if fit.ks_distance > 0.05 else "")
        )
    if fit.retry_after_s:
        out.append(
            "Retry-After: " + ", ".join(f"{s}: {v:g} s" for s, v in fit.retry_after_s.items())
        )
    if fit.peak_concurrency is not None:
        out.append(
            f"observed peak concurrency: {fit.peak_concurrency}, a lower bound of the capacity"
            f"{concurrency_caveat(fit)}"
        )
    out.extend(f"note: {note}" for note in fit.notes)
    return out
