"""CSV inputs of a scenario (binned counts, arrival traces, latency samples), read and checked;
binned counts may also come from a GetMetricData JSON file (`sim.scenario.metric_data`).

Every problem raises ValueError with one line naming the file, the column or line and what is
wrong.
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
    lines = np.arange(starts.size) + 2  # the CSV line of each row (line 1 is the header)
    if bin_s is None and starts.size < 2:
        raise ValueError(f"{path}: one row only; set `bin` to give the bin width")
    spacing = np.diff(np.sort(starts))
    width = bin_s if bin_s is not None else float(np.median(spacing))
    note = "" if bin_s is not None else " (the median spacing of the rows; set `bin` to give it)"
    return count_pieces(starts, counts, lines, width, f"{path}: column {time_column!r}", note)


def read_metric_counts(
    path: Path, metric: str, rule: str | None, bin_s: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """`read_counts` for one series of a GetMetricData JSON file: missing datapoints are bins
    without arrivals; the bin is `bin_s`, else the file's period (`MetricData.period`)."""
    from sim.scenario.metric_data import read_metric_data

    data = read_metric_data(path)
    series = data.select(metric, rule)
    if not series.is_count:
        raise ValueError(f"{path}: {metric} is not a count of events")
    if series.times.size == 0:
        raise ValueError(f"{path}: line {series.line}: series {series.label!r} has no datapoints")
    width = data.period(bin_s)
    note = "" if bin_s is not None else " (the file's period; set `bin` to give it)"
    where = f"{path}: series {series.label or series.id!r}"
    return count_pieces(series.times, series.values, series.lines, width, where, note)


def count_pieces(
    starts: np.ndarray, counts: np.ndarray, lines: np.ndarray, bin_s: float, where: str,
    note: str = "",
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Counts per bin starting at `starts` (any order; `lines` name them in errors) -> (piece
    edges in s since the first bin, rate per second of each piece), zero-rate pieces in gaps."""
    order = np.argsort(starts, kind="stable")
    starts, counts = starts[order] - starts.min(), counts[order]
    lines = lines[order]
    spacing = np.diff(starts)
    if np.any(spacing == 0):
        i = int(np.flatnonzero(spacing == 0)[0])
        raise ValueError(f"{where} line {lines[i + 1]}: repeats the bin start of line {lines[i]}")
    tolerance = 1e-9
    close = spacing < bin_s - tolerance
    if close.any():
        i = int(np.flatnonzero(close)[0])
        raise ValueError(
            f"{where} line {lines[i + 1]}: starts {spacing[i]:g} s after line {lines[i]}, less "
            f"than the bin width of {bin_s:g} s{note}"
        )
    if starts[-1] + bin_s <= starts[-1]:
        raise ValueError(
            f"{where}: a bin of {bin_s:g} s is below the resolution of times up to {starts[-1]:g} s"
        )
    # Row i is the piece [starts[i], starts[i] + bin); where the next row starts later than that
    # (beyond the tolerance), the gap up to it is one more piece, of rate 0.
    ends = starts[:-1] + bin_s
    gap = starts[1:] - ends > tolerance
    piece_starts = np.concatenate([starts, ends[gap]])
    piece_rates = np.concatenate([counts / bin_s, np.zeros(int(gap.sum()))])
    in_time = np.argsort(piece_starts, kind="stable")
    return np.append(piece_starts[in_time], starts[-1] + bin_s), piece_rates[in_time]
