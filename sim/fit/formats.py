"""Choosing the log format: `nginx` (with an optional `log_format`), `alb` or `csv`, or `auto`.

`auto` looks at the first file: a `.csv` name (before `.gz`) is the csv format, a first line
shaped like an ALB entry (`http 2025-...Z app/...`) is alb, anything else nginx.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sim.errors import InputError
from sim.fit.alb import AlbFormat
from sim.fit.nginx import TIMED_COMBINED, compile_format, format_string
from sim.fit.requests import CsvFormat, LogFormat, numbered_lines

FORMATS = ("auto", "nginx", "alb", "csv")
_ALB_LINE = re.compile(r"^(https?|h2|grpcs?|wss?) \d{4}-\d\d-\d\dT\S+ \S+ ")


def log_format(name: str, paths: Sequence[Path], layout: str | None = None) -> LogFormat:
    """The format to read `paths` with; `layout` is an nginx `log_format` (nginx only)."""
    if name not in FORMATS:
        raise InputError(None, "--format", f"{name!r} is not one of {', '.join(FORMATS)}")
    if name == "auto":
        name = "nginx" if layout is not None else detect(paths[0])
    if layout is not None and name != "nginx":
        raise InputError(None, "--log-format", f"only the nginx format takes a layout (not {name})")
    if name == "alb":
        return AlbFormat()
    if name == "csv":
        return CsvFormat()
    try:
        return compile_format(format_string(layout) if layout is not None else TIMED_COMBINED)
    except ValueError as err:
        raise InputError(None, "--log-format", str(err)) from None


def detect(path: Path) -> str:
    """`csv`, `alb` or `nginx` for a log file (see the module docstring)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    first = next(numbered_lines(path), None)
    return "alb" if first is not None and _ALB_LINE.match(first[1]) else "nginx"


def describe(log: LogFormat) -> str:
    """How the format reads, for reports: `nginx ('$remote_addr ... $request_time')`."""
    layout = getattr(log, "layout", None)
    if layout is None:
        return log.name
    return "nginx, timed combined" if layout == TIMED_COMBINED else f"nginx, {layout!r}"
