"""nginx access logs: a `log_format` (nginx's own syntax) compiled to a line parser.

The default layout is `combined` followed by `$request_time` (the common "timed combined";
anything after it, such as `$upstream_response_time $pipe`, is allowed). Any other layout is
given as nginx writes it, a format string or the whole directive
(`log_format timed '$remote_addr ... ' '$request_time';`). Each `$variable` becomes a field
that runs up to the text that follows it in the format; the variables read are

* `$status` (required); 444 (closed without a response) and 499 (client closed) mean no
  response; 504 (gateway timeout) is kept as a status and counted as a hang by the fit;
* `$request_time` (seconds, the client's view), else `$upstream_response_time` (the sum over
  upstream tries): one of them is required;
* `$msec` (epoch seconds, ms resolution), `$time_iso8601` or `$time_local` (1 s resolution):
  when the request ended;
* `$request`, `$request_uri` or `$uri`: the path (for `--path`);
* `$sent_http_retry_after`: the Retry-After sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sim.fit.requests import NO_RESPONSE, Request, numbered_lines, seconds_field

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
TIMED_COMBINED = COMBINED + " $request_time"
"""The default layout: nginx's `combined` followed by `$request_time`."""
NO_RESPONSE_STATUSES = (444, 499)

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_DIRECTIVE = re.compile(r"^\s*log_format\s+\S+(?:\s+escape=\S+)?\s+(.*?);?\s*$", re.S)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", re.S)
_NUMERIC = {
    "status": r"\d{3}",
    "request_time": r"\d+(?:\.\d+)?|-",
    "msec": r"\d+(?:\.\d+)?",
    "body_bytes_sent": r"\d+|-",
    "bytes_sent": r"\d+|-",
}
_UPSTREAM = r"[^,:\s]+(?:\s*[,:]\s*[^,:\s]+)*"
LATENCY_VARIABLES = ("request_time", "upstream_response_time")
TIME_VARIABLES = ("msec", "time_iso8601", "time_local")
PATH_VARIABLES = ("request", "request_uri", "uri")


def format_string(text: str) -> str:
    """The format of a `--log-format` value: a format string, or a whole `log_format`
    directive whose quoted parts are joined (as nginx joins them)."""
    directive = _DIRECTIVE.match(text)
    body = directive.group(1) if directive else text.strip()
    parts = _QUOTED.findall(body)
    if parts and _QUOTED.sub("", body).strip() == "":
        return "".join(a or b for a, b in parts)
    return body


@dataclass(frozen=True)
class NginxFormat:
    """A compiled `log_format`: `parse(line)` gives the line's request or raises ValueError."""

    layout: str
    pattern: re.Pattern[str]
    groups: dict[str, str]  # variable -> regex group of its first occurrence
    name: str = "nginx"

    def lines(self, path: Path) -> Iterator[tuple[int, str]]:
        return numbered_lines(path)

    def parse(self, text: str) -> Request:
        match = self.pattern.match(text)
        if match is None:
            raise ValueError(f"not in the log format {_short(self.layout)}: {_short(text)}")
        fields = {name: match.group(group) for name, group in self.groups.items()}
        status = int(fields["status"])
        if status in NO_RESPONSE_STATUSES:
            status = NO_RESPONSE
        elif not 100 <= status <= 599:
            raise ValueError(f"status {fields['status']} is not an HTTP status")
        latency = _latency(fields)
        end = _end_time(fields)
        start = end - latency if math.isfinite(end) and math.isfinite(latency) else math.nan
        return Request(status, latency, start, end, _path(fields), _retry_after(fields))

    @property
    def time_resolution_s(self) -> float | None:
        """How precise the logged end times are (None: the layout logs no time)."""
        if "msec" in self.groups:
            return 0.001
        if "time_iso8601" in self.groups or "time_local" in self.groups:
            return 1.0
        return None


def compile_format(layout: str = TIMED_COMBINED, *, trailing: bool | None = None) -> NginxFormat:
    """Compile an nginx `log_format` string; ValueError if it lacks `$status` or a latency.

    `trailing`: allow more fields after the layout (default: only for the default layout).
    """
    pieces: list[tuple[str, str]] = []  # ("text", literal) | ("var", name)
    position = 0
    for match in _VARIABLE.finditer(layout):
        if match.start() > position:
            pieces.append(("text", layout[position : match.start()]))
        pieces.append(("var", match.group(1) or match.group(2)))
        position = match.end()
    if position < len(layout):
        pieces.append(("text", layout[position:]))
    names = [value for kind, value in pieces if kind == "var"]
    if "status" not in names:
        raise ValueError(f"the log format {_short(layout)} has no $status")
    if not any(v in names for v in LATENCY_VARIABLES):
        raise ValueError(
            f"the log format {_short(layout)} has no $request_time (or $upstream_response_time)"
        )
    allow_more = trailing if trailing is not None else layout == TIMED_COMBINED
    regex: list[str] = ["^"]
    groups: dict[str, str] = {}
    for index, (kind, value) in enumerate(pieces):
        if kind == "text":
            regex.append(re.escape(value))
            continue
        group = f"v{index}"
        groups.setdefault(value, group)
        following = pieces[index + 1] if index + 1 < len(pieces) else None
        if value in _NUMERIC:
            field = _NUMERIC[value]
        elif value.startswith("upstream_"):  # one value per upstream tried: `0.010, 0.020 : -`
            field = _UPSTREAM
        elif following is None:
            field = r"\S*" if allow_more else r".*"
        elif following[0] == "text":
            field = f"[^{re.escape(following[1][0])}]*"
        else:
            field = r"\S*"
        regex.append(f"(?P<{group}>{field})")
    regex.append(r"(?:\s.*)?$" if allow_more else r"\s*$")
    return NginxFormat(layout, re.compile("".join(regex)), groups)


def _latency(fields: dict[str, str]) -> float:
    if "request_time" in fields:
        return seconds_field(fields["request_time"], "$request_time")
    total, seen = 0.0, False
    for part in re.split(r"[,:]", fields["upstream_response_time"]):
        part = part.strip()
        if part and part != "-":
            total += seconds_field(part, "$upstream_response_time")
            seen = True
    return total if seen else math.nan


def _end_time(fields: dict[str, str]) -> float:
    if "msec" in fields:
        return float(fields["msec"])
    if "time_iso8601" in fields:
        return _iso8601(fields["time_iso8601"])
    if "time_local" in fields:
        return _time_local(fields["time_local"])
    return math.nan


@lru_cache(maxsize=4096)
def _time_local(text: str) -> float:
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        raise ValueError(f"$time_local {text!r} is not like 10/Oct/2025:13:55:36 +0000") from None


@lru_cache(maxsize=4096)
def _iso8601(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"$time_iso8601 {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"$time_iso8601 {text!r} has no time zone")
    return moment.timestamp()


def _path(fields: dict[str, str]) -> str | None:
    if "request" in fields:
        parts = fields["request"].split(" ")
        return parts[1] if len(parts) >= 2 else None
    return fields.get("request_uri") or fields.get("uri")


def _retry_after(fields: dict[str, str]) -> float:
    text = fields.get("sent_http_retry_after", "-")
    try:
        value = float(text)
    except ValueError:
        return math.nan  # absent (`-`) or an HTTP-date: not used
    return value if math.isfinite(value) else math.nan


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
