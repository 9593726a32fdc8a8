"""The comparison: is the live run a plausible draw from the model? One calibrated family test.

Every compared quantity — each scalar metric, each time bin of each series, and the KS distance
of the delivery-delay distribution — is an *item*. Each item is standardized against the model
replications: z = (x − median) / scale, with separate scales below and above the median (the
semi-deviations √(2·mean(min(x − median, 0)²)) and √(2·mean(max(x − median, 0)²)), equal to the
standard deviation for a symmetric distribution, at least a floor: one event, 1 ms, 0.001 of KS
distance), so skewed metrics, point masses (a rate pinned at the limit) and rare events are on
one footing. The family statistic is T = max |z| over all items.

T is calibrated on the model itself: each model replication in turn is held out, standardized
against the others (leave-one-out; its KS distance is taken against the pool of the others),
and its T recorded. Under the hypothesis that the live run is one more draw from the model,
the live T and these N values are exchangeable, so with c = the ⌈(1 − α)(N + 1)⌉-th smallest
of them, P(T_live > c) ≤ α: a correct model FAILs at most α = 5 % of the time, whatever the
number of items and however they are correlated. Each item's prediction interval is
median − c·scale_low … median + c·scale_high (simultaneous at 95 %), and the live value must
lie inside every one. Delays are tested this way (KS distance against the pooled model delays,
calibrated by held-out replications) because their autocorrelation within a run makes plain
KS p-values anti-conservative; the plain p-value is reported for information only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.validation.observe import Observation

ALPHA = 0.05
MIN_REPLICATIONS = 100
DELAY_FLOOR_S = 0.001
COUNT_FLOOR = 1.0
KS_FLOOR = 0.001
FRACTION_FLOOR = 0.001
KS_ITEM = "delivery_delay_s.ks_distance"


@dataclass
class Items:
    """Values of every compared item: one row per run, one column per item."""

    names: list[str]
    floors: np.ndarray
    one_sided: np.ndarray  # only values above the median are deviations (KS distance)
    values: np.ndarray  # (runs, items)


@dataclass
class Standard:
    """Median and lower/upper scales of each item across model replications."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, floors: np.ndarray) -> Standard:
        median = np.nanmedian(values, axis=0)
        dev = values - median
        with np.errstate(invalid="ignore"):
            low = np.sqrt(2 * np.nanmean(np.minimum(dev, 0.0) ** 2, axis=0))
            high = np.sqrt(2 * np.nanmean(np.maximum(dev, 0.0) ** 2, axis=0))
        return cls(median, np.fmax(low, floors), np.fmax(high, floors))

    def z(self, x: np.ndarray, one_sided: np.ndarray) -> np.ndarray:
        """Signed standardized deviations (0 where both are NaN, inf where only one is)."""
        with np.errstate(invalid="ignore"):
            dev = x - self.median
            z = np.where(dev >= 0, dev / self.high, dev / self.low)
        z = np.where(one_sided, np.maximum(z, 0.0), z)
        missing = np.isnan(x) | np.isnan(self.median)
        both = np.isnan(x) & np.isnan(self.median)
        return np.where(missing, np.where(both, 0.0, np.inf), z)


@dataclass
class ItemResult:
    """One compared item: live value, model spread, simultaneous interval and verdict."""

    name: str
    live: float
    median: float
    pi95: tuple[float, float]  # the model's marginal 95 % prediction interval (2.5 %, 97.5 %)
    interval: tuple[float, float]  # simultaneous interval (family level 1 − α)
    z: float
    tested: bool = True  # False: undefined in too many model runs, left out of T (see `calibrate`)
    undefined_share: float = 0.0  # share of model runs in which the item is undefined (NaN)

    @property
    def inside(self) -> bool:
        """In its interval (an untested item never FAILs: it is listed as undefined instead)."""
        if not self.tested:
            return True
        return bool(self.interval[0] <= self.live <= self.interval[1]) or (
            math.isnan(self.live) and math.isnan(self.median)
        )


@dataclass
class Comparison:
    """The verdict of one live observation against N model replications."""

    alpha: float
    replications: int
    critical: float  # c
    statistic: float  # T_live
    items: list[ItemResult]
    held_out: np.ndarray  # T of each held-out model replication
    ks_plain_p: float
    delay_cdf_model: np.ndarray  # pooled model CDF on DELAY_BINS[1:]
    delay_cdf_live: np.ndarray
    delay_band: np.ndarray = field(default_factory=lambda: np.empty((2, 0)))  # pointwise 2.5/97.5 %

    @property
    def passed(self) -> bool:
        """T ≤ c, with a finite c: a limit nothing can exceed is no test, so it never PASSes."""
        return bool(math.isfinite(self.critical) and self.statistic <= self.critical)

    def item(self, name: str) -> ItemResult:
        return next(i for i in self.items if i.name == name)

    def failed(self) -> list[str]:
        """Names of the items outside their simultaneous interval."""
        return [i.name for i in self.items if not i.inside]

    def undefined(self) -> list[str]:
        """Items left out of T: undefined (NaN) in too many model runs to be tested."""
        return [i.name for i in self.items if not i.tested]

    def series(self, name: str) -> list[ItemResult]:
        """The per-bin items of one series, in time order."""
        return [i for i in self.items if i.name.startswith(f"{name}[")]


def _floor(name: str) -> float:
    """The smallest scale of an item: 1 ms for delays (a bus part's too, e.g.
    `destinations.NAME.delivery_delay_s.p99`), 0.001 for a fraction or KS distance, else 1."""
    if name == KS_ITEM:
        return KS_FLOOR
    if name.startswith("delivery_delay_s") or ".delivery_delay_s." in name:
        return DELAY_FLOOR_S
    return FRACTION_FLOOR if name.endswith("_fraction") else COUNT_FLOOR


def items_of(observations: Sequence[Observation]) -> Items:
    """Scalars and series bins of each observation as an (runs, items) matrix (KS added later).

    The items are the first observation's, in its order: `SCALARS` and `SERIES` for one
    destination, followed by a bus's per-destination and per-rule ones (`bus_observe`).
    """
    first = observations[0]
    scalars, series_names = list(first.scalars), list(first.series)
    names = list(scalars)
    for series in series_names:
        names += [f"{series}[{t:g}s]" for t in first.bin_end_s]
    rows = [
        np.concatenate(([obs.scalars[n] for n in scalars], *(obs.series[s] for s in series_names)))
        for obs in observations
    ]
    floors = np.array([_floor(n) for n in names])
    return Items(names, floors, np.zeros(len(names), dtype=bool), np.array(rows, dtype=float))


def _cdf(histogram: np.ndarray) -> np.ndarray:
    total = histogram.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.cumsum(histogram, axis=-1) / total, 0.0)


def _ks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KS distance between histograms on one grid (rows of `a` against rows of `b`)."""
    return np.abs(_cdf(a) - _cdf(b)).max(axis=-1)


@dataclass
class Calibration:
    """The model side of the test, computed once: scales, critical value, pooled delays."""

    alpha: float
    names: list[str]
    floors: np.ndarray
    one_sided: np.ndarray
    values: np.ndarray  # (replications, items), KS distances last
    standard: Standard
    held_out: np.ndarray  # T of each held-out replication
    critical: float
    histograms: np.ndarray  # delay histogram per replication
    tested: np.ndarray  # items in T (the others are undefined in too many model runs)

    @property
    def replications(self) -> int:
        return int(self.values.shape[0])

    @property
    def pooled(self) -> np.ndarray:
        return self.histograms.sum(axis=0)

    def test(self, live: Observation) -> Comparison:
        """Compare one live observation with the model (see the module docstring)."""
        live_values = np.append(
            items_of([live]).values[0], _ks(live.delay_histogram.astype(float), self.pooled)
        )
        return self.test_values(live_values, live.delay_histogram)

    def test_values(
        self, live_values: np.ndarray, live_histogram: np.ndarray | None = None
    ) -> Comparison:
        """Compare one observation's item values (in `names` order) with the model."""
        z_live = self.standard.z(live_values, self.one_sided)
        pi = np.nanquantile(self.values, [0.025, 0.975], axis=0)
        median, c = self.standard.median, self.critical
        undefined = np.isnan(self.values).mean(axis=0)
        items = []
        for j, name in enumerate(self.names):
            # every item is a count, a delay or a distance: no lower limit below zero
            low = -math.inf if self.one_sided[j] else max(0.0, median[j] - c * self.standard.low[j])
            items.append(
                ItemResult(
                    name=name,
                    live=float(live_values[j]),
                    median=float(median[j]),
                    pi95=(float(pi[0, j]), float(pi[1, j])),
                    interval=(float(low), float(median[j] + c * self.standard.high[j])),
                    z=float(z_live[j]),
                    tested=bool(self.tested[j]),
                    undefined_share=float(undefined[j]),
                )
            )
        ks_p, cdf_model, cdf_live, band = math.nan, np.empty(0), np.empty(0), np.empty((2, 0))
        if live_histogram is not None and self.histograms.size:
            ks_p = _plain_ks_p(live_histogram, self.pooled)
            cdf_model, cdf_live = _cdf(self.pooled), _cdf(live_histogram.astype(float))
            band = np.nanquantile(_cdf(self.histograms), [0.025, 0.975], axis=0)
        return Comparison(
            alpha=self.alpha,
            replications=self.replications,
            critical=c,
            statistic=float(np.abs(z_live[self.tested]).max(initial=0.0)),
            items=items,
            held_out=self.held_out,
            ks_plain_p=ks_p,
            delay_cdf_model=cdf_model,
            delay_cdf_live=cdf_live,
            delay_band=band,
        )


def calibrate(model: Sequence[Observation], alpha: float = ALPHA) -> Calibration:
    """Scales and the critical value c from N model replications, each held out in turn."""
    n = len(model)
    if n < MIN_REPLICATIONS:
        raise ValueError(f"{n} model replications; at least {MIN_REPLICATIONS} are needed")
    items = items_of(model)
    histograms = np.array([obs.delay_histogram for obs in model], dtype=float)
    ks = _ks(histograms, histograms.sum(axis=0) - histograms)
    values = np.column_stack((items.values, ks))
    floors = np.append(items.floors, KS_FLOOR)
    one_sided = np.append(items.one_sided, True)
    names = [*items.names, KS_ITEM]
    return calibrate_items(Items(names, floors, one_sided, values), alpha, histograms)


def calibrate_items(
    items: Items, alpha: float = ALPHA, histograms: np.ndarray | None = None
) -> Calibration:
    """`calibrate` for any items: one row of values per model replication, each held out in
    turn (the backtest's per-period metrics use it; `histograms`: delay histograms, if any)."""
    values, floors, one_sided = items.values, items.floors, items.one_sided
    n = values.shape[0]
    if n < MIN_REPLICATIONS:
        raise ValueError(f"{n} model replications; at least {MIN_REPLICATIONS} are needed")
    k = math.ceil((1 - alpha) * (n + 1))
    tested = _defined_enough(values, n - k)
    held_out = np.empty(n)
    for i in range(n):
        standard = Standard.of(np.delete(values, i, axis=0), floors)
        held_out[i] = np.abs(standard.z(values[i], one_sided)[tested]).max(initial=0.0)
    return Calibration(
        alpha=alpha,
        names=list(items.names),
        floors=floors,
        one_sided=one_sided,
        values=values,
        standard=Standard.of(values, floors),
        held_out=held_out,
        critical=float(np.sort(held_out)[k - 1]),
        histograms=np.zeros((n, 0)) if histograms is None else histograms,
        tested=tested,
    )


def _defined_enough(values: np.ndarray, budget: int) -> np.ndarray:
    """Items to keep in T, so that at most `budget` held-out runs get T = inf.

    An item that is NaN in some model runs (delay quantiles of a run with no deliveries) and a
    number in others has z = inf wherever a run disagrees with the median about being defined.
    That is a real deviation when it is rare; but once more than α of the held-out runs have
    T = inf, c is infinite and nothing could ever FAIL. So the items with the most such
    disagreements are dropped from T, one at a time, until the held-out runs with an infinite
    T fit in the `budget` (n − k); they are reported as undefined, not tested.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        median_nan = np.isnan(np.nanmedian(values, axis=0))
    disagree = np.isnan(values) != median_nan
    tested = np.ones(values.shape[1], dtype=bool)
    while (disagree[:, tested].any(axis=1)).sum() > budget:
        counts = np.where(tested, disagree.sum(axis=0), -1)
        tested[int(np.argmax(counts))] = False
    return tested


def compare(model: Sequence[Observation], live: Observation, alpha: float = ALPHA) -> Comparison:
    """Test the live observation against model replications (see the module docstring)."""
    return calibrate(model, alpha).test(live)


def _plain_ks_p(live: np.ndarray, pooled: np.ndarray) -> float:
    """The textbook two-sample KS p-value (i.i.d. assumption), for information only."""
    from scipy import stats

    n, m = float(live.sum()), float(pooled.sum())
    if n == 0 or m == 0:
        return math.nan
    distance = float(_ks(live.astype(float), pooled))
    effective = n * m / (n + m)
    return float(stats.kstwo.sf(distance, max(1, round(effective))))
