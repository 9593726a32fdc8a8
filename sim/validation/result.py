"""`Validation`: what one validation produced — the live run, the model runs, the comparison, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sim.scenario.model import Scenario
from sim.validation.compare import Comparison
from sim.validation.live import LiveRun
from sim.validation.observe import Observation
from sim.validation.overhead import Conformance, Overhead

if TYPE_CHECKING:
    from sim.validation.power import Power

ArrivalsMode = Literal["replay", "model"]
"""`replay`: every model replication gets the live run's arrival times (a `trace`), so only the
delivery side varies; `model`: each replication draws its own arrivals from the scenario."""


@dataclass
class Validation:
    """Everything a validation produced; `comparison` (overhead-corrected live) holds the verdict."""

    scenario: Scenario
    model_scenario: Scenario
    model_overrides: dict[str, Any]
    arrivals: ArrivalsMode
    live: LiveRun
    overhead: Overhead
    live_raw: Observation
    live_corrected: Observation
    model: list[Observation]
    comparison: Comparison  # corrected live values: the verdict
    comparison_raw: Comparison  # raw live values, for information
    model_wall_s: float
    conformance: Conformance  # the live core kept to the schedule the correction assumes
    report_dir: Path | None = None
    replayed_from: Path | None = None  # the live run came from this recording (--replay-live)
    recorded_to: Path | None = None  # the live run was saved there (--record-live)
    power: Power | None = None  # the deviation ladder tested against this live run (--power)

    @property
    def passed(self) -> bool:
        """PASS: the live core kept to its schedule and every item lies in its interval."""
        return self.conformance.ok and self.comparison.passed

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def reasons(self) -> list[str]:
        """Why it FAILed, one line each (empty on PASS)."""
        out = self.conformance.problems()
        if not self.comparison.passed:
            failed = self.comparison.failed()
            out.append(
                f"outside: {', '.join(failed)}"
                if failed
                else f"T = {self.comparison.statistic:.2f} above the limit "
                f"{self.comparison.critical:.2f}"
            )
        return out

    @property
    def exit_code(self) -> int:
        """0 on PASS, 1 on FAIL."""
        return 0 if self.passed else 1
