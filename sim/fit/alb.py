"""AWS Application Load Balancer access logs (space-separated fields, some quoted; `.gz` files).

Fields by position, as AWS documents them: `type time elb client:port target:port
request_processing_time target_processing_time response_processing_time elb_status_code
target_status_code received_bytes sent_bytes "request" "user_agent" ssl_cipher ssl_protocol
target_group_arn "trace_id" "domain_name" "chosen_cert_arn" matched_rule_priority
request_creation_time ...` (later fields, added over the years, are ignored; the first 13 are
required).

What the client (EventBridge) saw of each request:

* the target answered (`target_status_code` a number, `target_processing_time` >= 0): that
  status, after `target_processing_time`;
* `elb_status_code` 460 (the client closed the connection), or no target response with 504
  (the target timed out): no response, after `time - request_creation_time` when logged;
* no target response otherwise (`-1`, `-`; the load balancer answered itself, e.g. 502 after
  the target reset the connection): the load balancer's status, after that same time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sim.fit.requests import NO_RESPONSE, Request, numbered_lines

_FIELD = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
MIN_FIELDS = 13
CLIENT_CLOSED = 460
NO_TARGET_RESPONSE_HANGS = (504,)


class AlbFormat:
    """The ALB access-log layout (see the module docstring)."""

    name = "alb"
    time_resolution_s = 1e-6

    def lines(self, path: Path) -> Iterator[tuple[int, str]]:
        return numbered_lines(path)

    def parse(self, text: str) -> Request:
        fields = _FIELD.findall(text)
        if len(fields) < MIN_FIELDS:
            raise ValueError(
                f"{len(fields)} fields; an ALB access log line has at least {MIN_FIELDS}: "
                f"{text[:80]!r}"
            )
        end = _time(fields[1], "time")
        request_s = _duration(fields[5], "request_processing_time")
        target_s = _duration(fields[6], "target_processing_time")
        response_s = _duration(fields[7], "response_processing_time")
        elb_status = _status(fields[8], "elb_status_code")
        target_status = None if fields[9] == "-" else _status(fields[9], "target_status_code")
        created = _time(fields[21], "request_creation_time") if len(fields) > 21 else math.nan
        total = end - created if math.isfinite(created) else math.nan
        path = _path(fields[12])
        if elb_status == CLIENT_CLOSED:
            return Request(NO_RESPONSE, total, created, end, path)
        if target_status is not None and target_s >= 0:
            answered = end - max(response_s, 0.0)
            return Request(target_status, target_s, answered - target_s, answered, path)
        if elb_status is None or elb_status in NO_TARGET_RESPONSE_HANGS:
            return Request(NO_RESPONSE, total, created, end, path)
        latency = total if math.isfinite(total) else max(request_s, 0.0) + max(response_s, 0.0)
        return Request(elb_status, latency, end - latency, end, path)


def _status(text: str, name: str) -> int | None:
    if text == "-":
        return None
    if not (text.isdigit() and 100 <= int(text) <= 599):
        raise ValueError(f"{name} {text!r} is not an HTTP status")
    return int(text)


def _duration(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number of seconds (or -1)") from None
    if not math.isfinite(value) or (value < 0 and value != -1):
        raise ValueError(f"{name} {text!r} is not a number of seconds (or -1)")
    return value


def _time(text: str, name: str) -> float:
    if text == "-":
        return math.nan
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 time") from None


def _path(request: str) -> str | None:
    parts = request.strip('"').split(" ")
    if len(parts) < 2:
        return None
    return urlsplit(parts[1]).path or "/"
