"""Durations as users write them (`250ms`, `5s`, `10m`, `2h`, `1d`, `1h30m`, or seconds) <-> float seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"-?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Return seconds for a number or a duration string; raise ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(
            "expected a duration such as 250ms, 5s, 10m, 2h, 1d or a number of seconds"
        )
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{value!r} is too large for a duration") from None
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            if not _WHOLE.fullmatch(text):
                raise ValueError(
                    f"{value!r} is not a duration (use 250ms, 5s, 10m, 2h, 1d, 1h30m or seconds)"
                ) from None
            sign = -1.0 if text.startswith("-") else 1.0
            try:
                seconds = sign * sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
            except OverflowError:
                raise ValueError(f"{value!r} is too large for a duration") from None
    else:
        raise ValueError(
            "expected a duration such as 250ms, 5s, 10m, 2h, 1d or a number of seconds"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


def format_duration(seconds: float) -> str | float:
    """Render seconds in the largest unit that keeps them exact (`86400 -> '1d'`); odd values stay numbers."""
    if not math.isfinite(seconds):
        return seconds
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count and abs(count) < 1e12 and count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if (
        0 < abs(millis) < 1e12
        and millis == round(millis)
        and parse_duration(f"{int(round(millis))}ms") == seconds
    ):
        return f"{int(round(millis))}ms"
    return seconds
