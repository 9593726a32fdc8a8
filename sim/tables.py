"""CSV inputs of a scenario (binned counts, arrival traces, latency samples), read and checked.

Every problem raises ValueError with one line naming the CSV file, the column and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd  # only scenarios with CSV inputs pay for it

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with path.open("rb") as raw:
        if any(b"\0" in block for block in iter(lambda: raw.read(1 << 20), b"")):
            raise ValueError(f"{path}: contains NUL bytes; not a text CSV")
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from None
    if frame.empty:
        raise ValueError(f"{path}: has no data rows")
    return frame


def _column(frame: pd.DataFrame, path: Path, name: str) -> pd.Series:
    if name not in frame.columns:
        found = ", ".join(map(str, frame.columns[:10]))
        raise ValueError(f"{path}: no column {name!r} (columns: {found})")
    column = frame[name]
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0]) + 2
        raise ValueError(f"{path}: column {name!r} is empty at line {row}")
    return column


def _numbers(column: pd.Series, path: Path, name: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: column {name!r} line {row + 2}: {column.iloc[row]!r} is not a finite number"
        )
    return values.to_numpy(dtype=float)


def _seconds(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """Numbers are seconds; anything else must parse as timestamps, taken relative to the earliest."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return _numbers(column, path, name)
    stamps = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ValueError(
            f"{path}: column {name!r} line {row + 2}: {column.iloc[row]!r} is neither seconds "
            "nor a timestamp"
        )
    return (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)


def read_samples(path: Path, column: str, *, times: bool) -> np.ndarray:
    """A non-empty column of non-negative values; `times=True` also accepts timestamps."""
    frame = _read_csv(path)
    raw = _column(frame, path, column)
    values = _seconds(raw, path, column) if times else _numbers(raw, path, column)
    if (values < 0).any():
        row = int(np.flatnonzero(values < 0)[0])
        raise ValueError(f"{path}: column {column!r} line {row + 2}: negative value {values[row]}")
    return values


def read_counts(
    path: Path, time_column: str, count_column: str, bin_s: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Binned counts -> (bin edges in s since the first bin, n+1 of them; rate per second per bin)."""
    frame = _read_csv(path)
    starts = _seconds(_column(frame, path, time_column), path, time_column)
    counts = _numbers(_column(frame, path, count_column), path, count_column)
    if (counts < 0).any():
        row = int(np.flatnonzero(counts < 0)[0])
        raise ValueError(f"{path}: column {count_column!r} line {row + 2}: negative count")
    order = np.argsort(starts, kind="stable")
    starts, counts = starts[order] - starts.min(), counts[order]
    if np.any(np.diff(starts) == 0):
        raise ValueError(f"{path}: column {time_column!r} repeats a bin start")
    if bin_s is None:
        if len(starts) < 2:
            raise ValueError(f"{path}: one row only; set `bin` to give the bin width")
        bin_s = float(np.median(np.diff(starts)))
    if np.any(np.diff(starts) < bin_s - 1e-9):
        raise ValueError(f"{path}: column {time_column!r}: bins closer together than {bin_s} s")
    edges = np.append(starts, starts[-1] + bin_s)
    return edges, counts / bin_s
