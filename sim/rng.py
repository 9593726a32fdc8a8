"""Reproducible randomness: one root seed per run, independent child streams per replication and source.

Stream (replication i, source j) is `SeedSequence(seed, spawn_key=(i, j))` — what
`SeedSequence(seed).spawn` would give, without its hidden spawn counter — so results never
depend on which worker runs a replication or in what order.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("arrivals", "status", "hang", "latency", "backoff")
"""The named random sources of the model, each with its own stream."""


def generator(seed: int, replication: int, source: str) -> np.random.Generator:
    """The generator of one random source in one replication."""
    index = SOURCES.index(source) if source in SOURCES else len(SOURCES) + _stable_hash(source)
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(replication, index)))
    )


def _stable_hash(name: str) -> int:
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little") % (2**31)


class Uniforms:
    """Uniform draws on [0, 1) served in order from vectorized batches; peek without consuming.

    The model computes a block of attempts ahead and may keep only a prefix of it; drawing by
    `peek(n)` then `consume(k)` keeps draw i tied to attempt i, whatever the block sizes were.
    """

    def __init__(self, rng: np.random.Generator, batch: int = 1 << 16) -> None:
        self._rng = rng
        self._batch = batch
        self._buffer = np.empty(0)
        self._pos = 0

    def peek(self, n: int) -> np.ndarray:
        """The next n draws, left in place."""
        available = self._buffer.size - self._pos
        if available < n:
            fresh = self._rng.random(max(self._batch, n - available))
            self._buffer = np.concatenate((self._buffer[self._pos :], fresh))
            self._pos = 0
        return self._buffer[self._pos : self._pos + n]

    def consume(self, n: int) -> None:
        """Mark the next n draws as used (they must have been peeked)."""
        self._pos += n

    def take(self, n: int) -> np.ndarray:
        """The next n draws, consumed."""
        draws = self.peek(n)
        self.consume(n)
        return draws
