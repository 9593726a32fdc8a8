"""Arrival processes of a scenario: event times window by window, and the expected rate.

Sources add up (superposition). Poisson sources draw a Poisson count per window and place
the events uniformly (per piece of constant rate); `diurnal` thins a Poisson stream at the
peak rate; `counts` is piecewise constant per CSV bin (0 where no row covers a time: zero-rate
pieces draw nothing); `trace` replays its times exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from sim.scenario.model import (
    Arrivals,
    BurstArrivals,
    ConstantArrivals,
    CountsArrivals,
    DiurnalArrivals,
    TraceArrivals,
)

WINDOW_S = 60.0
"""Arrivals are generated in windows of this many seconds (fixed, so results do not depend on it)."""


def _poisson_piece(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    if rate <= 0 or end <= start:
        return np.empty(0)
    count = rng.poisson(rate * (end - start))
    return start + rng.random(count) * (end - start)


def _diurnal_rate(source: DiurnalArrivals, t: np.ndarray) -> np.ndarray:
    phase = 2 * math.pi * (np.asarray(t, dtype=float) - source.peak_at) / source.period
    return source.mean_per_second * (1 + source.amplitude * np.cos(phase))


def source_times(
    source: Arrivals, rng: np.random.Generator, start: float, end: float
) -> np.ndarray:
    """Unsorted arrival times of one source in [start, end)."""
    if isinstance(source, ConstantArrivals):
        return _poisson_piece(rng, source.rate_per_second, start, end)
    if isinstance(source, BurstArrivals):
        lo, hi = max(start, source.start), min(end, source.start + source.duration)
        return _poisson_piece(rng, source.rate_per_second, lo, hi)
    if isinstance(source, DiurnalArrivals):
        peak = source.mean_per_second * (1 + source.amplitude)
        candidates = _poisson_piece(rng, peak, start, end)
        keep = rng.random(candidates.size) * peak < _diurnal_rate(source, candidates)
        return candidates[keep]
    if isinstance(source, CountsArrivals):
        edges, rates = source.bins
        first = max(int(np.searchsorted(edges, start, side="right")) - 1, 0)
        last = int(np.searchsorted(edges, end, side="left"))
        pieces = [
            _poisson_piece(rng, rates[i], max(start, edges[i]), min(end, edges[i + 1]))
            for i in range(first, min(last, rates.size))
        ]
        return np.concatenate(pieces) if pieces else np.empty(0)
    if isinstance(source, TraceArrivals):
        times = source.times
        return times[np.searchsorted(times, start) : np.searchsorted(times, end)]
    raise TypeError(f"unknown arrival source {source!r}")


def arrival_windows(
    sources: Sequence[Arrivals], rng: np.random.Generator, horizon_s: float
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (window start, window end, sorted arrival times) covering [0, horizon)."""
    start = 0.0
    while start < horizon_s:
        end = min(start + WINDOW_S, horizon_s)
        times = np.concatenate([source_times(s, rng, start, end) for s in sources])
        times.sort()  # floats: any sort gives the same array, and the default is the fastest
        yield start, end, times
        start = end


def expected_rate(sources: Sequence[Arrivals], t: np.ndarray) -> np.ndarray:
    """Expected arrivals per second at times t (a trace counts its events per second)."""
    t = np.asarray(t, dtype=float)
    total = np.zeros_like(t)
    for source in sources:
        if isinstance(source, ConstantArrivals):
            total += source.rate_per_second
        elif isinstance(source, BurstArrivals):
            inside = (t >= source.start) & (t < source.start + source.duration)
            total += np.where(inside, source.rate_per_second, 0.0)
        elif isinstance(source, DiurnalArrivals):
            total += _diurnal_rate(source, t)
        elif isinstance(source, CountsArrivals):
            edges, rates = source.bins
            index = np.searchsorted(edges, t, side="right") - 1
            valid = (index >= 0) & (index < rates.size)
            total += np.where(valid, rates[np.clip(index, 0, rates.size - 1)], 0.0)
        elif isinstance(source, TraceArrivals):
            seconds = np.floor(t)
            total += np.searchsorted(source.times, seconds + 1) - np.searchsorted(
                source.times, seconds
            )
    return total


def expected_count(sources: Sequence[Arrivals], horizon_s: float) -> float:
    """Expected number of arrivals over [0, horizon), integrating each source's rate exactly."""
    total = 0.0
    for source in sources:
        if isinstance(source, ConstantArrivals):
            total += source.rate_per_second * horizon_s
        elif isinstance(source, BurstArrivals):
            inside = min(horizon_s, source.start + source.duration) - min(horizon_s, source.start)
            total += source.rate_per_second * inside
        elif isinstance(source, DiurnalArrivals):
            omega = 2 * math.pi / source.period
            swing = math.sin(omega * (horizon_s - source.peak_at)) - math.sin(
                -omega * source.peak_at
            )
            total += source.mean_per_second * (horizon_s + source.amplitude * swing / omega)
        elif isinstance(source, CountsArrivals):
            edges, rates = source.bins
            widths = np.clip(edges[1:], None, horizon_s) - np.clip(edges[:-1], None, horizon_s)
            total += float(np.sum(rates * widths))
        elif isinstance(source, TraceArrivals):
            total += float(np.searchsorted(source.times, horizon_s))
    return total
