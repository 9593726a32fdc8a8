"""Reproducible randomness: one root seed per run, independent child streams per replication and source.

Stream (replication i, source j) is `SeedSequence(seed, spawn_key=(i, j))` — what
`SeedSequence(seed).spawn` would give, without its hidden spawn counter — so results never
depend on which worker runs a replication or in what order.

Two kinds of stream: `generator` is an ordinary sequential generator (arrivals);
`KeyedUniforms` is counter-based: the draw for attempt k of event e is a fixed function of
(stream key, e, k), whatever order attempts are simulated in. The model relies on that to
decide blocks of attempts speculatively without changing any attempt's dice.
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer (Steele, Lea, Flood 2014): a bijective avalanche mix of uint64."""
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


class KeyedUniforms:
    """Counter-based uniforms on [0, 1): one fixed draw per (event, attempt) in one stream."""

    def __init__(self, seed: int, replication: int, source: str) -> None:
        index = SOURCES.index(source) if source in SOURCES else len(SOURCES) + _stable_hash(source)
        sequence = np.random.SeedSequence(seed, spawn_key=(replication, index))
        self.key = sequence.generate_state(1, np.uint64)[0]

    def at(self, event_id: np.ndarray, attempt: np.ndarray) -> np.ndarray:
        """The draws of attempts `attempt` (1 = first) of events `event_id`."""
        return self._finish(_mixed_counter(event_id, attempt))

    def _finish(self, mixed: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = _splitmix64(mixed ^ self.key)
        return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _mixed_counter(event_id: np.ndarray, attempt: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        counter = np.asarray(event_id, dtype=np.uint64) * _GOLDEN + np.asarray(
            attempt, dtype=np.uint64
        )
        return _splitmix64(counter)


def keyed_draws(
    streams: dict[str, KeyedUniforms], event_id: np.ndarray, attempt: np.ndarray
) -> dict[str, np.ndarray]:
    """`{name: stream.at(event_id, attempt)}` for several streams, the counter mixed only once."""
    mixed = _mixed_counter(event_id, attempt)
    return {name: stream._finish(mixed) for name, stream in streams.items()}


def _stable_hash(name: str) -> int:
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little") % (2**31)
