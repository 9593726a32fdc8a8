"""Requests read from access logs: one row per request, whatever the log format.

A `LogFormat` gives the lines of a file (plain or gzip) and parses one: text -> `Request`, or
ValueError saying what is wrong with the line. `read_requests` runs one over every line of
the given files, keeps the requests under a path prefix, and refuses a malformed line with
one `InputError` naming the file and line, unless bad lines may be skipped (then it counts
them). The `csv` format (`status,latency_s[,time][,path][,retry_after]`) is here too.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple, Protocol

import numpy as np

from sim.errors import InputError

NO_RESPONSE = 0
"""Status of a request that got no response (the client gave up, the server closed)."""


class Request(NamedTuple):
    """One logged request. Times are epoch seconds (NaN when the log has none)."""

    status: int  # NO_RESPONSE: none
    latency_s: float  # NaN when unknown
    start_at: float = math.nan
    end_at: float = math.nan
    path: str | None = None
    retry_after_s: float = math.nan


class LogFormat(Protocol):
    """A log layout: the lines of a file to parse, and the parser of one line."""

    @property
    def name(self) -> str: ...

    def lines(self, path: Path) -> Iterator[tuple[int, str]]: ...

    def parse(self, text: str) -> Request: ...


@dataclass
class Requests:
    """The requests of a set of log files, as columns, and how reading them went."""

    status: np.ndarray
    latency_s: np.ndarray
    start_at: np.ndarray
    end_at: np.ndarray
    retry_after_s: np.ndarray
    lines_read: int = 0
    skipped: int = 0
    first_skipped: str = ""  # `file: line N: problem` of the first bad line skipped
    filtered: int = 0  # requests outside the path prefix
    sources: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.status.size)


def open_text(path: Path) -> IO[str]:
    """A log file as text: gzip when it starts with gzip's magic bytes, else plain."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise InputError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, not a file") from None
    except OSError as err:
        raise InputError(str(path), None, err.strerror or str(err)) from None
    magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw  # type: ignore[assignment]
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the line break) of every non-blank line."""
    with open_text(path) as text:
        try:
            for number, line in enumerate(text, start=1):
                stripped = line.rstrip("\r\n")
                if stripped.strip():
                    yield number, stripped
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise InputError(str(path), None, f"cannot read: {err}") from None


def read_requests(
    paths: Sequence[Path],
    log_format: LogFormat,
    *,
    skip_bad_lines: bool = False,
    path_prefix: str | None = None,
) -> Requests:
    """Parse every line of `paths`; keep the requests whose path starts with `path_prefix`."""
    rows: list[Request] = []
    empty = np.empty(0)
    result = Requests(empty, empty, empty, empty, empty)
    for path in paths:
        result.sources.append(str(path))
        for number, text in log_format.lines(path):
            result.lines_read += 1
            try:
                request = log_format.parse(text)
            except ValueError as err:
                if not skip_bad_lines:
                    raise InputError(str(path), f"line {number}", str(err)) from None
                result.skipped += 1
                result.first_skipped = result.first_skipped or f"{path}: line {number}: {err}"
                continue
            if path_prefix is not None and not (request.path or "").startswith(path_prefix):
                result.filtered += 1
                continue
            rows.append(request)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    result.status = np.asarray(columns[0], dtype=np.int64)
    result.latency_s = np.asarray(columns[1], dtype=float)
    result.start_at = np.asarray(columns[2], dtype=float)
    result.end_at = np.asarray(columns[3], dtype=float)
    result.retry_after_s = np.asarray(columns[5], dtype=float)
    return result


# --- the csv format: status,latency_s[,time][,path][,retry_after] -----------------------------


class CsvFormat:
    """A CSV with a header naming at least `status` and `latency_s` (seconds); optionally `time`
    (when the request arrived: epoch seconds or ISO 8601), `path` and `retry_after` (seconds).
    A status of `-`, `0` or nothing means no response."""

    name = "csv"

    def __init__(self) -> None:
        self.header: list[str] = []

    def lines(self, path: Path) -> Iterator[tuple[int, str]]:
        iterator = numbered_lines(path)
        first = next(iterator, None)
        if first is None:
            return
        self.header = [cell.strip().lower() for cell in next(csv.reader([first[1]]))]
        for needed in ("status", "latency_s"):
            if needed not in self.header:
                found = ", ".join(self.header)
                raise InputError(
                    str(path), f"line {first[0]}", f"no column {needed!r} (columns: {found})"
                )
        yield from iterator

    def parse(self, text: str) -> Request:
        cells = next(csv.reader([text]), [])
        if len(cells) > len(self.header):
            raise ValueError(f"{len(cells)} cells but {len(self.header)} columns")
        row = dict(zip(self.header, (c.strip() for c in cells), strict=False))
        status_text = row.get("status", "")
        status = NO_RESPONSE if status_text in ("", "-", "0") else _int(status_text, "status")
        if status != NO_RESPONSE and not 100 <= status <= 599:
            raise ValueError(
                f"status {status_text!r} is not an HTTP status (100-599), '-' or empty"
            )
        latency = seconds_field(row.get("latency_s", ""), "latency_s")
        start = epoch_seconds(row["time"]) if row.get("time") else math.nan
        end = start + latency if math.isfinite(latency) else math.nan
        retry_after = seconds_field(row.get("retry_after", ""), "retry_after")
        return Request(status, latency, start, end, row.get("path"), retry_after)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a whole number") from None


def seconds_field(text: str, name: str) -> float:
    """A field in seconds (`-` or empty: NaN, no value); ValueError naming the field otherwise."""
    if text in ("", "-"):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {text!r} is not a duration (seconds, at least 0)")
    return value


def epoch_seconds(text: str) -> float:
    """Epoch seconds of a number or an ISO 8601 timestamp (UTC unless it says otherwise)."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
        except ValueError:
            raise ValueError(f"time {text!r} is neither epoch seconds nor ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"time {text!r} is not epoch seconds")
    return value
