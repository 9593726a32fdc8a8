"""Waiting deliveries as columns: `Items`, what the queues hold and the selectors schedule.

One NumPy array per field (structure of arrays), not a structured array: gathering a block's
items by position then costs a fast typed copy per column instead of a generic copy per
record (about 8× faster on blocks of 10,000 items, where it used to be a fifth of the run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FIELDS: dict[str, type] = {
    "ready_at": np.float64,
    "arrival_at": np.float64,
    "event_id": np.int64,
    "retries_done": np.int16,
    "previous_backoff_s": np.float64,
}
"""One waiting delivery: when it became ready, its event, and how many retries it already had."""


@dataclass(frozen=True, slots=True)
class Items:
    """Waiting deliveries, one array per field (all of one length)."""

    ready_at: np.ndarray
    arrival_at: np.ndarray
    event_id: np.ndarray
    retries_done: np.ndarray
    previous_backoff_s: np.ndarray

    @property
    def size(self) -> int:
        return int(self.ready_at.size)

    def __len__(self) -> int:
        return self.size

    def column(self, name: str) -> np.ndarray:
        """One field's array."""
        value: np.ndarray = getattr(self, name)
        return value

    def __getitem__(self, index: Any) -> Items:
        """The items at `index` (a slice, positions or a boolean mask), in that order."""
        if isinstance(index, np.ndarray) and index.dtype == bool:
            index = np.flatnonzero(index)  # once, not once per column
        return Items(*(getattr(self, name)[index] for name in FIELDS))

    def columns(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in FIELDS)

    def rows(self) -> list[tuple[Any, ...]]:
        """The items as tuples of plain values (field order), for item-by-item walks."""
        return list(zip(*(getattr(self, name).tolist() for name in FIELDS), strict=True))

    @staticmethod
    def from_rows(rows: Sequence[tuple[Any, ...]]) -> Items:
        """Items from tuples made by `rows`."""
        if not rows:
            return empty()
        columns = list(zip(*rows, strict=True))
        return Items(
            *(
                np.asarray(values, dtype=dtype)
                for values, dtype in zip(columns, FIELDS.values(), strict=True)
            )
        )


def empty(n: int = 0) -> Items:
    """n items, zero-filled (no items by default)."""
    return Items(*(np.zeros(n, dtype=dtype) for dtype in FIELDS.values()))


def concat(parts: Sequence[Items]) -> Items:
    """The items of each part, one after another."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty()
    return Items(*(np.concatenate([getattr(p, name) for p in parts]) for name in FIELDS))


def merge_positions(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Where each element of `second` lands when two ascending arrays are merged, the elements
    of `first` going first at equal values: exactly a stable argsort of their concatenation."""
    return np.searchsorted(first, second, side="right") + np.arange(second.size)


def merge(first: Items, second: Items) -> tuple[Items, np.ndarray]:
    """Both (each sorted by ready time) merged by ready time, `first`'s items first at equal
    times — what a stable sort of their concatenation gives; also a mask of `first`'s items."""
    if not second.size:
        return first, np.ones(first.size, dtype=bool)
    if not first.size:
        return second, np.zeros(second.size, dtype=bool)
    at = merge_positions(first.ready_at, second.ready_at)
    from_first = np.ones(first.size + second.size, dtype=bool)
    from_first[at] = False
    first_at = np.flatnonzero(from_first)
    merged = []
    for name in FIELDS:
        a, b = getattr(first, name), getattr(second, name)
        out = np.empty(a.size + b.size, dtype=a.dtype)
        out[first_at] = a
        out[at] = b
        merged.append(out)
    return Items(*merged), from_first


def sort_by_ready(items: Items) -> Items:
    """The items by ready time (stable: equal times keep their order)."""
    if items.size < 2:
        return items
    return items[np.argsort(items.ready_at, kind="stable")]
