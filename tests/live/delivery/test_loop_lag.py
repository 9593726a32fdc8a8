"""`LoopLag`: a loop blocked on purpose shows up as lag, is logged, and sampling stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from sim.live.delivery.loop_lag import LoopLag

pytestmark = pytest.mark.live


def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> LoopLag:
        lag = LoopLag(interval_s=0.01, warn_above_s=0.1)
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.25)  # the loop cannot run the sampler's timer meanwhile
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag

    with caplog.at_level(logging.WARNING, logger="sim.live"):
        lag = asyncio.run(main())
    assert lag.max_s >= 0.2
    assert lag.quantile(1.0) == lag.max_s
    assert lag.quantile(0.5) < 0.2  # the other samples ran on time, or nearly
    (warning,) = [r for r in caplog.records if "event loop" in r.getMessage()]
    assert "late" in warning.getMessage()


def test_no_samples_before_start_and_the_window_is_bounded() -> None:
    lag = LoopLag(interval_s=0.001, window=5)
    assert math.isnan(lag.quantile(0.99))

    async def main() -> None:
        lag.start()
        await asyncio.sleep(0.05)
        await lag.stop()

    asyncio.run(main())
    assert 0 < len(lag.samples) <= 5
