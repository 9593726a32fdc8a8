"""`fit_endpoint`: from access-log files to the fitted endpoint and its YAML block.

The files are read in the format given (`sim.fit.formats`: nginx with its `log_format`, alb,
csv, or detected), fitted (`sim.fit.endpoint`) and written as an `endpoint:` block with
comments saying what it rests on (and, with `empirical`, the latencies in a CSV beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sim.errors import InputError
from sim.fit.endpoint import EndpointFit, concurrency_caveat, duration, fit_requests
from sim.fit.formats import describe, log_format
from sim.fit.requests import read_requests
from sim.scenario.durations import parse_duration


def fit_endpoint(
    logs: Sequence[str | Path] | str | Path,
    *,
    format: str = "auto",
    layout: str | None = None,
    timeout: float | str = 5.0,
    path: str | None = None,
    skip_bad_lines: bool = False,
) -> EndpointFit:
    """Fit the endpoint behind access logs (`format`: auto, nginx, alb or csv; `layout`: an
    nginx `log_format`; `timeout`: the client timeout; `path`: only requests under this path).
    Bad input is one InputError naming the file and line."""
    paths = [Path(logs)] if isinstance(logs, str | Path) else [Path(p) for p in logs]
    if not paths:
        raise InputError(None, "logs", "no log file given")
    try:
        timeout_s = parse_duration(timeout)
    except ValueError as err:
        raise InputError(None, "timeout", str(err)) from None
    if timeout_s <= 0:
        raise InputError(None, "timeout", f"must be positive (got {timeout})")
    fmt = log_format(format, paths, layout)
    requests = read_requests(paths, fmt, skip_bad_lines=skip_bad_lines, path_prefix=path)
    if requests.size == 0 and requests.filtered:
        raise InputError(
            None, "path", f"no request path starts with {path!r} ({requests.filtered} others)"
        )
    fit = fit_requests(requests, timeout_s, getattr(fmt, "time_resolution_s", None))
    fit.source = f"{', '.join(map(str, paths))} ({describe(fmt)})"
    return fit


def write_endpoint(fit: EndpointFit, out: Path, empirical: bool = False) -> list[Path]:
    """Write the `endpoint:` block to `out` (with `empirical`, the latencies to `<stem>-latency.csv`
    beside it, which the block reads); the files written."""
    written = []
    empirical_csv = None
    if empirical:
        csv_path = out.with_name(f"{out.stem}-latency.csv")
        write_empirical(fit, csv_path)
        written.append(csv_path)
        empirical_csv = csv_path.name
    try:
        out.write_text(endpoint_yaml(fit, empirical_csv), encoding="utf-8")
    except OSError as err:
        raise InputError(str(out), None, err.strerror or str(err)) from None
    return [out, *written]


def write_empirical(fit: EndpointFit, path: Path) -> None:
    """The answered latencies (seconds) as a one-column CSV for an `empirical` latency."""
    lines = "".join(f"{value:.6g}\n" for value in fit.latencies_s)
    path.write_text("latency_s\n" + lines, encoding="utf-8")


def endpoint_yaml(fit: EndpointFit, empirical_csv: str | None = None) -> str:
    """The `endpoint:` block as YAML, with comments saying what it rests on."""
    import yaml

    lines = [f"# sim fit endpoint: {fit.n_requests:,} requests from {fit.source or 'logs'}"]
    if fit.lognormal and empirical_csv is None:
        lines.append(
            f"# latency: lognormal fit, KS distance {fit.ks_distance:.3f}; the data's median "
            f"{duration(fit.data_quantile(0.5))}, p99 {duration(fit.data_quantile(0.99))}"
        )
    lines.append(
        f"# hangs: no response, 504, or {fit.timeout_s:g} s or longer (the client timeout)"
    )
    if fit.peak_concurrency is not None:
        lines.append(
            f"# observed peak concurrency {fit.peak_concurrency}{concurrency_caveat(fit)}: a lower bound "
            "of the endpoint's capacity, e.g."
        )
        lines.append(f"#   capacity: {{concurrency: {fit.peak_concurrency}}}")
    lines.extend(f"# note: {note}" for note in fit.notes)
    block = {"endpoint": fit.endpoint_block(empirical_csv)}
    body = yaml.safe_dump(block, sort_keys=False, default_flow_style=None, width=100)
    return "\n".join(lines) + "\n" + body
