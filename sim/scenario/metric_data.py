"""CloudWatch metrics of EventBridge (`AWS/Events`), as `aws cloudwatch get-metric-data` gives them.

`read_metric_data` reads a GetMetricData response saved as JSON
(`{"MetricDataResults": [{"Id", "Label", "Timestamps", "Values", "StatusCode"}, ...]}`,
timestamps newest first as AWS returns them, pages merged by `Id`) or a CSV export (a time
column, then one column per series, named by its label). Each series is recognized by its
`Label` (else its `Id`): the metric is the AWS metric name in it, the rule a `RuleName=NAME`
or the one other word (the label `${PROP('Dim.RuleName')} ${PROP('MetricName')}` gives
`orders MatchedEvents`), the statistic a word like `Average` or `p99` (default `Sum` for
counts, `Average` for latencies). A datapoint that is missing means "nothing happened that
minute": zero for a count, no value for a latency. `metric_data_document` writes the JSON.

Every problem raises ValueError naming the file and the line.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

COUNT_METRICS = (
    "MatchedEvents",
    "InvocationsCreated",
    "InvocationAttempts",
    "SuccessfulInvocationAttempts",
    "RetryInvocationAttempts",
    "InvocationsSentToDlq",
    "FailedInvocations",
)
"""Count metrics (unit Count, statistic Sum) the model predicts, in the `AWS/Events` namespace."""
LATENCY_METRIC = "IngestionToInvocationSuccessLatency"
"""Time from ingestion to a successful delivery, in milliseconds (per successful invocation)."""
MODELLED_METRICS = (*COUNT_METRICS, LATENCY_METRIC)
OTHER_METRICS = (
    "DeadLetterInvocations",
    "Events",
    "Invocations",
    "InvocationsFailedToBeSentToDlq",
    "ThrottledRules",
    "TriggeredRules",
    "IngestionToInvocationStartLatency",
    "IngestionToInvocationCompleteLatency",
    "PutEventsApproximateCallCount",
    "PutEventsLatency",
)
KNOWN_METRICS = tuple(sorted((*MODELLED_METRICS, *OTHER_METRICS), key=len, reverse=True))
DEFAULT_PERIOD_S = 60.0
"""EventBridge publishes its metrics per minute: the period when a file has one timestamp only."""
MAX_VALUE = 1e15

_STAT = re.compile(r"^(sum|samplecount|average|avg|mean|maximum|max|minimum|min|p\d{1,2}(\.\d+)?)$")
_STAT_NAMES = {
    "sum": "Sum",
    "samplecount": "SampleCount",
    "average": "Average",
    "avg": "Average",
    "mean": "Average",
    "maximum": "Maximum",
    "max": "Maximum",
    "minimum": "Minimum",
    "min": "Minimum",
}
_RULE_NAME = re.compile(r"RuleName\s*[=:]\s*([A-Za-z0-9._-]+)", re.I)
_SEPARATORS = re.compile(r"[\s,;|/()\[\]{}]+")
_TIME_COLUMNS = ("timestamp", "timestamps", "time", "date", "datetime", "label")


@dataclass(frozen=True)
class MetricSeries:
    """One series: what it measures (`metric`, `rule`, `stat`), its datapoints, where it was read."""

    label: str
    id: str
    metric: str | None  # an `AWS/Events` metric name, or None when the label names none
    rule: str | None
    stat: str
    times: np.ndarray  # epoch seconds, ascending
    values: np.ndarray
    lines: np.ndarray  # the file's line of each datapoint (its timestamp)
    line: int  # the line where the series starts

    @property
    def is_count(self) -> bool:
        return self.metric in COUNT_METRICS

    def describe(self) -> str:
        rule = f" (rule {self.rule})" if self.rule else ""
        return f"{self.metric or self.label!r} {self.stat}{rule}"


@dataclass(frozen=True)
class MetricData:
    """Every series of one file, and notes about what was read."""

    source: str
    series: list[MetricSeries]
    notes: list[str] = field(default_factory=list)

    def period(self, given: float | None = None) -> float:
        """Seconds per datapoint: `given`, else the smallest spacing of any series (missing
        datapoints only widen spacings), else one minute (EventBridge's resolution)."""
        if given is not None:
            return given
        spacings = [np.diff(s.times) for s in self.series if s.times.size > 1]
        positive = np.concatenate(spacings) if spacings else np.empty(0)
        return float(positive.min()) if positive.size else DEFAULT_PERIOD_S

    def rules(self) -> list[str | None]:
        """The rules the series name (None: a series that names no rule), in file order."""
        return list(dict.fromkeys(s.rule for s in self.series if s.metric is not None))

    def rule_series(self, rule: str | None) -> list[MetricSeries]:
        """The series of the modelled metrics for one rule (a series naming no rule belongs to
        every rule); `rule=None` when the file has one rule, else ValueError listing them."""
        rule = self.resolve_rule(rule)
        return [s for s in self.series if s.metric in MODELLED_METRICS and s.rule in (rule, None)]

    def resolve_rule(self, rule: str | None) -> str | None:
        """The rule to use: `rule`, checked to be in the file; or the file's only rule."""
        named = [r for r in self.rules() if r is not None]
        if rule is not None:
            if rule not in named and None not in self.rules():
                raise ValueError(f"{self.source}: no series of rule {rule!r} ({_listing(named)})")
            return rule
        if len(named) > 1:
            raise ValueError(
                f"{self.source}: series of several rules ({_listing(named)}); choose one (--rule)"
            )
        return named[0] if named else None

    def select(self, metric: str, rule: str | None = None, stat: str | None = None) -> MetricSeries:
        """The one series of `metric` (for `rule`, with `stat`), or ValueError saying what there is."""
        rule = self.resolve_rule(rule)
        found = [
            s
            for s in self.series
            if s.metric == metric and s.rule in (rule, None) and (stat is None or s.stat == stat)
        ]
        if len(found) == 1:
            return found[0]
        what = f"{metric}" + (f" {stat}" if stat else "") + (f" of rule {rule!r}" if rule else "")
        if not found:
            have = sorted({s.describe() for s in self.series})
            raise ValueError(f"{self.source}: no series of {what} (series: {_listing(have)})")
        lines = ", ".join(str(s.line) for s in found)
        raise ValueError(f"{self.source}: several series of {what} (lines {lines}); set the rule")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "none"


# --- recognizing a series by its label ---------------------------------------------------------


def describe_label(label: str, id_: str = "") -> tuple[str | None, str | None, str | None]:
    """(metric, rule, statistic) named by a series' label, else its id; None where not named."""
    rule_match = _RULE_NAME.search(label)
    text = _RULE_NAME.sub(" ", label)
    words = [w for w in _SEPARATORS.split(text) if w]
    metric = next((m for m in KNOWN_METRICS for w in words if w.lower() == m.lower()), None)
    if metric is None:  # an id such as `m_matchedevents_orders`: the longest name inside it
        lowered = f"{label} {id_}".lower()
        metric = next((m for m in KNOWN_METRICS if m.lower() in lowered), None)
        words = []
    stat = next((_stat(w) for w in words if _STAT.match(w.lower())), None)
    rest = [w for w in words if w.lower() != (metric or "").lower() and not _STAT.match(w.lower())]
    rule = rule_match.group(1) if rule_match else (rest[0] if len(rest) == 1 else None)
    return metric, rule, stat


def _stat(word: str) -> str:
    lowered = word.lower()
    return _STAT_NAMES.get(lowered, lowered)


def _series(
    source: str,
    label: str,
    id_: str,
    times: list[float],
    values: list[float],
    lines: list[int],
    line: int,
) -> MetricSeries:
    metric, rule, stat = describe_label(label, id_)
    default = "Average" if metric is not None and metric.endswith("Latency") else "Sum"
    order = np.argsort(np.asarray(times, dtype=float), kind="stable")
    t = np.asarray(times, dtype=float)[order]
    at = np.asarray(lines, dtype=np.int64)[order]
    repeated = np.flatnonzero(np.diff(t) == 0)
    if repeated.size:
        i = int(repeated[0])
        first, second = sorted((int(at[i]), int(at[i + 1])))
        raise ValueError(
            f"{source}: line {second}: series {label or id_!r} repeats the timestamp of line {first}"
        )
    return MetricSeries(
        label=label,
        id=id_,
        metric=metric,
        rule=rule,
        stat=stat or default,
        times=t,
        values=np.asarray(values, dtype=float)[order],
        lines=at,
        line=line,
    )


# --- reading ---------------------------------------------------------------------------------


def read_metric_data(path: Path) -> MetricData:
    """A GetMetricData JSON response (`.json`, or text starting with `{`) or a CSV export."""
    raw = _read_text(path)
    if path.suffix.lower() == ".json" or raw.lstrip().startswith("{"):
        return _read_json(path, raw)
    return _read_csv(path, raw)


def is_metric_data_json(path: Path) -> bool:
    """A `.json` file: read as a GetMetricData response rather than as a CSV."""
    return path.suffix.lower() == ".json"


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    data = path.read_bytes()
    if b"\0" in data:
        raise ValueError(f"{path}: contains NUL bytes; not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 text") from None


def _read_json(path: Path, text: str) -> MetricData:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: invalid JSON: {err.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: line 1: invalid JSON: nested too deeply") from None
    located = _Located(text)
    results = document.get("MetricDataResults") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise ValueError(
            f"{path}: line 1: not a GetMetricData response: expected an object with a "
            "'MetricDataResults' list"
        )
    result_lines = located.array_lines(["MetricDataResults"], len(results))
    merged: dict[str, dict[str, Any]] = {}
    for index, result in enumerate(results):
        line = result_lines[index]
        if not isinstance(result, dict):
            raise ValueError(f"{path}: line {line}: a MetricDataResults entry must be an object")
        label, id_ = result.get("Label", ""), result.get("Id", "")
        if not isinstance(label, str) or not isinstance(id_, str) or not (label or id_):
            raise ValueError(f"{path}: line {line}: a series needs a string Label or Id")
        stamps, values = result.get("Timestamps"), result.get("Values")
        if not isinstance(stamps, list) or not isinstance(values, list):
            raise ValueError(
                f"{path}: line {line}: series {label or id_!r} needs Timestamps and Values lists"
            )
        if len(stamps) != len(values):
            raise ValueError(
                f"{path}: line {line}: series {label or id_!r} has {len(stamps)} Timestamps but "
                f"{len(values)} Values"
            )
        base: list[str | int] = ["MetricDataResults", index]
        stamp_lines = located.array_lines([*base, "Timestamps"], len(stamps))
        value_lines = located.array_lines([*base, "Values"], len(values))
        entry = merged.setdefault(
            id_ or label,
            {"label": label, "id": id_, "line": line, "times": [], "values": [], "lines": []},
        )
        for j, (stamp, value) in enumerate(zip(stamps, values, strict=True)):
            entry["times"].append(_epoch(stamp, path, stamp_lines[j]))
            entry["values"].append(_value(value, path, value_lines[j]))
            entry["lines"].append(stamp_lines[j])
    notes = []
    if isinstance(document, dict) and document.get("NextToken"):
        notes.append("the file has a NextToken: it may be one page of a longer answer")
    partial = [
        r.get("Label") or r.get("Id") for r in results if r.get("StatusCode") == "PartialData"
    ]
    if partial:
        notes.append(f"CloudWatch marked {', '.join(map(str, partial))} as PartialData")
    series = [
        _series(str(path), e["label"], e["id"], e["times"], e["values"], e["lines"], e["line"])
        for e in merged.values()
    ]
    return MetricData(str(path), series, notes)


def _read_csv(path: Path, text: str) -> MetricData:
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ValueError(f"{path}: line 1: no header row")
    header = [cell.strip() for cell in rows[0]]
    lowered = [h.lower() for h in header]
    time_index = next((lowered.index(n) for n in _TIME_COLUMNS if n in lowered), 0)
    columns = [i for i in range(len(header)) if i != time_index]
    if not columns:
        raise ValueError(
            f"{path}: line 1: no series columns beside the time column {header[time_index]!r}"
        )
    data: dict[int, tuple[list[float], list[float], list[int]]] = {i: ([], [], []) for i in columns}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise ValueError(f"{path}: line {number}: {len(row)} cells but {len(header)} columns")
        cells = row + [""] * (len(header) - len(row))
        at = _epoch(cells[time_index].strip(), path, number)
        for i in columns:
            cell = cells[i].strip()
            if cell in ("", "-"):
                continue  # no datapoint
            times, values, lines = data[i]
            times.append(at)
            values.append(_value(_number(cell, path, number, header[i]), path, number))
            lines.append(number)
    series = [_series(str(path), header[i], "", *data[i], line=1) for i in columns]
    return MetricData(str(path), series)


def _number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(
            f"{path}: line {line}: column {column!r}: {cell!r} is not a number"
        ) from None


def _value(value: Any, path: Path, line: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: line {line}: value {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > MAX_VALUE:
        raise ValueError(f"{path}: line {line}: value {value!r} is not a count or duration")
    return number


def to_epoch(value: float | str) -> float:
    """Epoch seconds of epoch seconds or an ISO 8601 time (UTC unless it says); ValueError."""
    try:
        return _epoch(value, Path("time"), 0)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (like 2026-03-02T09:00Z)") from None


def _epoch(stamp: Any, path: Path, line: int) -> float:
    """Epoch seconds of an ISO 8601 timestamp (UTC unless it says otherwise) or epoch seconds."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        if math.isfinite(stamp) and 0 <= stamp < 1e11:
            return float(stamp)
    elif isinstance(stamp, str):
        text = stamp.strip()
        try:
            return _epoch(float(text), path, line)
        except (ValueError, OverflowError):
            pass
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    raise ValueError(f"{path}: line {line}: {stamp!r} is not a timestamp")


class _Located:
    """The line of every element of every JSON array, by its path from the top (one pass over
    the text of a document already known to be valid JSON)."""

    _TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+', re.S)

    def __init__(self, text: str) -> None:
        newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[tuple[Any, ...], list[int]] = {}
        stack: list[list[Any]] = []  # [kind, path, key or element count]
        expecting_key = False
        for match in self._TOKEN.finditer(text):
            token = match.group()
            if token == ",":
                expecting_key = bool(stack) and stack[-1][0] == "object"
                continue
            if token == ":":
                continue
            if token in "]}":
                stack.pop()
                continue
            if expecting_key:
                stack[-1][2] = json.loads(token)
                expecting_key = False
                continue
            path: tuple[Any, ...] = ()
            if stack and stack[-1][0] == "array":
                frame = stack[-1]
                path = (*frame[1], frame[2])
                frame[2] += 1
                self.lines[frame[1]].append(bisect.bisect_left(newlines, match.start()) + 1)
            elif stack:
                path = (*stack[-1][1], stack[-1][2])
            if token == "[":
                stack.append(["array", path, 0])
                self.lines[path] = []
            elif token == "{":
                stack.append(["object", path, None])
                expecting_key = True

    def array_lines(self, path: Sequence[str | int], size: int) -> list[int]:
        """The line of each of the `size` elements of the array at `path`."""
        lines = self.lines.get(tuple(path), [])
        return lines if len(lines) == size else [1] * size


# --- writing ---------------------------------------------------------------------------------


def iso(epoch: float) -> str:
    """A timestamp as the AWS CLI prints it: `2025-01-01T12:05:00+00:00`."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def metric_data_document(
    series: Iterable[tuple[str, str, np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """A GetMetricData response from (label, id, epoch times, values): newest first, as AWS."""
    results = []
    for label, id_, times, values in series:
        order = np.argsort(-np.asarray(times, dtype=float), kind="stable")
        results.append(
            {
                "Id": id_,
                "Label": label,
                "Timestamps": [iso(float(times[i])) for i in order],
                "Values": [_plain(float(values[i])) for i in order],
                "StatusCode": "Complete",
            }
        )
    return {"MetricDataResults": results, "Messages": []}


def _plain(value: float) -> float | int:
    return int(value) if value == int(value) and abs(value) < 2**53 else round(value, 6)
