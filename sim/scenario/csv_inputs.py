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


def _numbers(
    column: pd.Series, path: Path, name: str, expected: str = "not a finite number"
) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: column {name!r} line {row + 2}: {column.iloc[row]!r} is {expected}"
        )
    return values.to_numpy(dtype=float)


def _seconds(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """Numbers are seconds; anything else must parse as timestamps, taken relative to the earliest."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return _numbers(column, path, name)
    if pd.to_numeric(column, errors="coerce").notna().any():  # seconds, with a bad cell: name it
        return _numbers(column, path, name, "neither seconds nor a timestamp")
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
    """Binned counts -> (piece edges in s since the first row; rate per second in each piece).

    Each row covers [start, start + bin): `bin_s` if given, else the median spacing of the rows.
    Times no row covers (metrics exports leave out empty bins) get a piece of rate 0, so the
    edges are strictly increasing and contiguous, and len(edges) == len(rates) + 1.
    """
    frame = _read_csv(path)
    starts = _seconds(_column(frame, path, time_column), path, time_column)
    counts = _numbers(_column(frame, path, count_column), path, count_column)
    if (counts < 0).any():
        row = int(np.flatnonzero(counts < 0)[0])
        raise ValueError(f"{path}: column {count_column!r} line {row + 2}: negative count")
    order = np.argsort(starts, kind="stable")
    starts, counts = starts[order] - starts.min(), counts[order]
    lines = order + 2  # the CSV line of each sorted row (line 1 is the header)
    spacing = np.diff(starts)
    if np.any(spacing == 0):
        i = int(np.flatnonzero(spacing == 0)[0])
        raise ValueError(
            f"{path}: column {time_column!r} line {lines[i + 1]}: repeats the bin start of "
            f"line {lines[i]}"
        )
    inferred = bin_s is None
    if bin_s is None:
        if len(starts) < 2:
            raise ValueError(f"{path}: one row only; set `bin` to give the bin width")
        bin_s = float(np.median(spacing))
    tolerance = 1e-9
    close = spacing < bin_s - tolerance
    if close.any():
        i = int(np.flatnonzero(close)[0])
        width = f"the bin width of {bin_s:g} s" + (
            " (the median spacing of the rows; set `bin` to give it)" if inferred else ""
        )
        raise ValueError(
            f"{path}: column {time_column!r} line {lines[i + 1]}: starts {spacing[i]:g} s after "
            f"line {lines[i]}, less than {width}"
        )
    if starts[-1] + bin_s <= starts[-1]:
        raise ValueError(
            f"{path}: column {time_column!r}: a bin of {bin_s:g} s is below the resolution of "
            f"times up to {starts[-1]:g} s"
        )
    # Row i is the piece [starts[i], starts[i] + bin); where the next row starts later than that
    # (beyond the tolerance), the gap up to it is one more piece, of rate 0.
    ends = starts[:-1] + bin_s
    gap = starts[1:] - ends > tolerance
    piece_starts = np.concatenate([starts, ends[gap]])
    piece_rates = np.concatenate([counts / bin_s, np.zeros(int(gap.sum()))])
    in_time = np.argsort(piece_starts, kind="stable")
    return np.append(piece_starts[in_time], starts[-1] + bin_s), piece_rates[in_time]
