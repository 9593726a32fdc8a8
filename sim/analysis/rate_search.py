"""The search behind `size_rate_limit`: the smallest lattice rate whose SLO verdict is met.

Meeting the SLOs is taken to be monotone in the rate (more tokens, less waiting), up to noise.
The search checks the top of the range, then bisects on the lattice between it and the bottom;
when the top fails (SLOs not monotone, typically an endpoint overloaded by high rates) a coarse
grid looks for rates that meet them before bisecting below the first.

Every rate runs replications 0, 1, 2, ... of the same seed: *common random numbers*, so the
verdicts of two rates differ because of the rate, not of sampling noise. Replications are run
*sequentially* per rate, a batch at a time, and stop as soon as the 95 % CI of every SLO metric
lies below its limit (met) or the CI of one lies above it (fails), or at the scenario's
replications (the maximum), where the verdict is `sim run`'s: the CI upper bound within the limit.
Rates far from the answer are then decided in a few replications; only those near it need all.
`grid=True` runs every lattice rate with every replication instead (the exhaustive check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.results.tables import aggregate, slo_verdict
from sim.runner.executor import Executor, Progress
from sim.runner.replications import run_batch
from sim.scenario.loading import with_overrides
from sim.scenario.model import Scenario

RATE_KEY = "destination.invocation_rate_limit_per_second"
ACCOUNT_KEY = "account.invocation_limit_per_second"
CONTEXT_METRICS = ("backlog_peak", "backlog_at_end", "events_pending", "endpoint_peak_rps")
FIRST_REPLICATIONS = 3
"""Fewest replications a rate gets before its CI may decide it (and the first batch's size,
rounded up to fill every worker)."""


@dataclass(frozen=True)
class Target:
    """What a search sizes: the scenario key it varies, the prefix of the metrics its SLOs are
    judged on (a bus destination's own: `destinations.NAME.`), and the invocations per bus
    event that key's bucket sees (to scale the arrival rates into its search range)."""

    key: str = RATE_KEY
    prefix: str = ""
    per_event: float = 1.0

    @property
    def label(self) -> str:
        """The setting as the user writes it (the single form's: its bare name)."""
        return "invocation_rate_limit_per_second" if self.key == RATE_KEY else self.key


def target_for(scenario: Scenario, destination: str | None, account: bool) -> Target:
    """The sizing target of a scenario: its rate limit (single form), one bus destination's
    (`destination`) or the bus's account quota (`account`)."""
    from sim.errors import InputError

    if not scenario.is_bus:
        if destination is not None or account:
            option = "destination" if destination is not None else "account"
            raise InputError(
                None, option, "is for a bus scenario; this one is the single-destination form"
            )
        return Target()
    bus = scenario.bus
    if destination is not None and account:
        raise InputError(None, "account", "size one thing at a time: --destination or --account")
    if account:
        return Target(ACCOUNT_KEY, "", bus.invocations_per_event())
    if destination is None:
        names = ", ".join(d.name for d in bus.destinations)
        raise InputError(
            scenario.source,
            "destinations",
            f"a bus: say what to size, --destination NAME (one of {names}) or --account",
        )
    if destination not in {d.name for d in bus.destinations}:
        names = ", ".join(d.name for d in bus.destinations)
        raise InputError(
            None, "destination", f"no destination named {destination!r} (destinations: {names})"
        )
    key = f"destinations.{destination}.invocation_rate_limit_per_second"
    return Target(key, f"destinations.{destination}.", bus.invocations_per_event(destination))


def scoped(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Summaries whose top-level metrics are replaced by those under `prefix` (a destination's)."""
    if not prefix:
        return frame
    mine = {c[len(prefix) :]: frame[c] for c in frame.columns if c.startswith(prefix)}
    return frame.assign(**mine)


class Lattice:
    """Rates low, low + step, ..., capped at high."""

    def __init__(self, low: float, high: float, step: float) -> None:
        self.low, self.high, self.step = low, high, step
        self.last = max(0, math.ceil((high - low) / step - 1e-9))

    def rate(self, k: int) -> float:
        return min(round(self.low + k * self.step, 9), self.high)

    def coarse(self, n: int) -> list[int]:
        return sorted({int(round(x)) for x in np.linspace(0, self.last, max(2, n))})

    def __len__(self) -> int:
        return self.last + 1


@dataclass
class Evaluation:
    """One rate: the replications run so far, their aggregate and the SLO verdict."""

    scenario: Scenario
    phase: str
    summaries: list[dict[str, Any]] = field(default_factory=list)
    table: pd.DataFrame | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    state: str = "open"  # open | met | fails

    @property
    def replications(self) -> int:
        return len(self.summaries)


def sequential_state(
    checks: list[dict[str, Any]], table: pd.DataFrame, done: int, most: int
) -> str:
    """'met', 'fails' or 'open' after `done` of at most `most` replications.

    Decided early when every SLO's CI lies within its limit, or one SLO's CI lies wholly above
    it; at `most` replications the verdict of `slo_verdict` (CI upper bound within the limit)."""
    if done >= most:
        return "met" if all(c["met"] for c in checks) else "fails"
    if done < min(FIRST_REPLICATIONS, most):
        return "open"
    low = {c["slo"]: table.loc[c["metric"], "ci_low"] for c in checks}
    if all(not math.isnan(c["ci_high"]) and c["ci_high"] <= c["limit"] for c in checks):
        return "met"
    if any(not math.isnan(low[c["slo"]]) and low[c["slo"]] > c["limit"] for c in checks):
        return "fails"
    return "open"


class SloSearch:
    """Bisection (or the exhaustive grid) for the smallest lattice rate meeting every SLO."""

    def __init__(
        self,
        base: Scenario,
        lattice: Lattice,
        executor: Executor,
        progress: Progress | None,
        grid: bool = False,
        target: Target | None = None,
    ) -> None:
        self.base, self.lattice, self.executor, self.progress = base, lattice, executor, progress
        self.target = target or Target()
        self.grid = grid
        self.most = base.replications
        self.evaluations: dict[int, Evaluation] = {}
        self.wall_s = 0.0
        self._planned = 1.0  # replications the search expects to run, for progress
        self._run = 0

    # --- running replications ---------------------------------------------------------------

    def _batch(self, done: int) -> int:
        """Replications to add to a rate that has `done`: enough to fill the workers."""
        workers = max(1, self.executor.parallelism)
        if self.grid:
            return self.most - done
        if done == 0:
            first = max(FIRST_REPLICATIONS, workers)
            return min(self.most, math.ceil(first / workers) * workers)
        return min(self.most - done, workers)

    def evaluate(self, indices: list[int], phase: str) -> None:
        """Run replications of each rate (new ones first) until every one of them is decided."""
        for k in indices:
            if k not in self.evaluations:
                scenario = with_overrides(self.base, {self.target.key: self.lattice.rate(k)})
                self.evaluations[k] = Evaluation(scenario, phase)
        todo = [k for k in dict.fromkeys(indices) if self.evaluations[k].state == "open"]
        while todo:
            tasks, owners = [], []
            for k in todo:
                evaluation = self.evaluations[k]
                done = evaluation.replications
                for i in range(done, done + self._batch(done)):
                    tasks.append((evaluation.scenario, [i]))
                    owners.append(k)
            for task, summaries in self.executor.map(run_batch, tasks):
                self.evaluations[owners[task]].summaries += summaries
                self._run += 1
                if self.progress is not None:
                    self.progress(min(0.99, self._run / max(self._planned, self._run + 1)))
            for k in todo:
                self._judge(k)
            todo = [k for k in todo if self.evaluations[k].state == "open"]

    def _judge(self, k: int) -> None:
        evaluation = self.evaluations[k]
        evaluation.summaries.sort(key=lambda s: s["replication"])
        frame = scoped(
            pd.DataFrame(evaluation.summaries).set_index("replication"), self.target.prefix
        )
        evaluation.table = aggregate(frame)
        evaluation.checks = slo_verdict(evaluation.scenario, evaluation.table)
        most = self.most if not self.grid else evaluation.replications
        evaluation.state = sequential_state(
            evaluation.checks, evaluation.table, evaluation.replications, most
        )

    def met(self, k: int) -> bool:
        return self.evaluations[k].state == "met"

    def failing(self, k: int) -> list[str]:
        return [c["slo"] for c in self.evaluations[k].checks if not c["met"]]

    # --- the search ---------------------------------------------------------------------------

    def run(self, coarse_points: int) -> tuple[int | None, int | None, bool]:
        """(index of the smallest rate meeting every SLO or None, index of the largest failing
        one below it or None, whether every rate evaluated above the answer meets them)."""
        if self.grid:
            self._planned = len(self.lattice) * self.most
            self.evaluate(list(range(len(self.lattice))), "grid")
            meeting = [k for k in sorted(self.evaluations) if self.met(k)]
            if not meeting:
                return None, None, True
            return self._finish(meeting[0], meeting[0] - 1 if meeting[0] > 0 else None)
        steps = 1 + math.ceil(math.log2(len(self.lattice) + 1))
        self._planned = steps * (FIRST_REPLICATIONS + 1) + 2 * self.most
        top = self.lattice.last
        self.evaluate([top], "bracket")
        if self.met(top):
            hi, lo = top, -1  # -1: below the range, taken to fail
        else:
            self.evaluate(self.lattice.coarse(coarse_points), "coarse")
            meeting = [k for k in sorted(self.evaluations) if self.met(k)]
            if not meeting:
                return None, None, True
            hi = meeting[0]
            lo = max((k for k in self.evaluations if k < hi), default=-1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            self.evaluate([mid], "bisection")
            if self.met(mid):
                hi = mid
            else:
                lo = mid
        return self._finish(hi, lo if lo >= 0 else None)

    def _finish(self, hi: int, lo: int | None) -> tuple[int, int | None, bool]:
        if self.progress is not None:
            self.progress(1.0)
        monotone = all(self.met(k) for k in self.evaluations if k > hi)
        return hi, lo, monotone

    # --- tables ------------------------------------------------------------------------------

    @property
    def replications_run(self) -> int:
        return sum(e.replications for e in self.evaluations.values())

    def table(self) -> pd.DataFrame:
        """One row per rate evaluated: replications, SLO metrics (mean, CI), verdicts, context."""
        rows = []
        for k in sorted(self.evaluations):
            evaluation = self.evaluations[k]
            table = evaluation.table
            assert table is not None
            row: dict[str, Any] = {
                "rate": self.lattice.rate(k),
                "phase": evaluation.phase,
                "replications": evaluation.replications,
            }
            for check in evaluation.checks:
                metric = check["metric"]
                row[f"{metric}.mean"] = table.loc[metric, "mean"]
                row[f"{metric}.ci_low"] = table.loc[metric, "ci_low"]
                row[f"{metric}.ci_high"] = table.loc[metric, "ci_high"]
                row[f"{check['slo']}.met"] = check["met"]
            row["all_met"] = self.met(k)
            for metric in CONTEXT_METRICS:
                row[f"{metric}.mean"] = table.loc[metric, "mean"]
            rows.append(row)
        return pd.DataFrame(rows)

    def all_runs(self) -> pd.DataFrame:
        """Every replication run, one row each, with its rate."""
        frames = [
            pd.DataFrame(self.evaluations[k].summaries).assign(rate=self.lattice.rate(k))
            for k in sorted(self.evaluations)
        ]
        frame = pd.concat(frames, ignore_index=True)
        return frame[["rate", *[c for c in frame.columns if c != "rate"]]]
