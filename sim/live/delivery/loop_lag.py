"""How late the core's event loop runs: a timer's lateness, sampled, kept and logged.

A busy loop delays everything the core does: dispatches leave late, and responses are read
late. `LoopLag` wakes every `interval_s` and measures how long after its due time it ran.
It keeps the recent samples (a bounded window, so memory stays flat), the maximum since
start, and logs a warning at most every `warn_every_s` while lag exceeds `warn_above_s`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque

log = logging.getLogger("sim.live")


class LoopLag:
    """Samples the running loop's lag (seconds) while started."""

    def __init__(
        self,
        interval_s: float = 0.1,
        window: int = 6000,
        warn_above_s: float = 0.1,
        warn_every_s: float = 10.0,
    ) -> None:
        self.interval_s = interval_s
        self.warn_above_s = warn_above_s
        self.warn_every_s = warn_every_s
        self.samples: deque[float] = deque(maxlen=window)
        self.max_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling; the samples stay readable."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1) of the recent samples, seconds (nan before the first)."""
        if not self.samples:
            return math.nan
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        warned_at = -math.inf
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            lag = max(0.0, now - due)
            self.samples.append(lag)
            self.max_s = max(self.max_s, lag)
            if lag > self.warn_above_s and now - warned_at >= self.warn_every_s:
                warned_at = now
                log.warning(
                    "event loop %.0f ms late (p99 %.0f ms, max %.0f ms recently): the core is "
                    "short of CPU; dispatches leave late",
                    lag * 1e3, self.quantile(0.99) * 1e3, max(self.samples) * 1e3,
                )  # fmt: skip
