"""Reading access logs: nginx layouts (`log_format` syntax), ALB fields, CSV; malformed lines.

Every malformed line is one `error: FILE: line N: problem` and exit code 2, unless
`--skip-bad-lines` (then counted and reported).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.fit.alb import AlbFormat
from sim.fit.endpoint import fit_requests, peak_concurrency
from sim.fit.nginx import TIMED_COMBINED, compile_format, format_string
from sim.fit.requests import NO_RESPONSE, CsvFormat, read_requests
from tests.support.processes import one_error_line

runner = CliRunner()
LINE = '10.1.2.3 - - [01/Jan/2026:00:00:{s:02d} +0000] "POST /hook HTTP/1.1" {code} 0 "-" "ua" {t}'


def nginx(path: Path, rows: list[tuple[int, float]]) -> Path:
    path.write_text(
        "".join(LINE.format(s=i % 60, code=c, t=f"{t:.3f}") + "\n" for i, (c, t) in enumerate(rows))
    )
    return path


def test_the_default_layout_is_combined_followed_by_request_time():
    fmt = compile_format()
    request = fmt.parse(LINE.format(s=5, code=503, t="0.250"))
    assert (request.status, request.latency_s, request.path) == (503, 0.25, "/hook")
    assert request.end_at == 1767225605.0 and request.start_at == pytest.approx(1767225604.75)
    # nginx's own timed_combined adds upstream times and the pipe flag: still read
    extra = LINE.format(s=5, code=200, t="0.010") + " 0.009 ."
    assert fmt.parse(extra).latency_s == 0.010
    # 444 (closed without response) and 499 (client closed) are no response
    assert fmt.parse(LINE.format(s=1, code=499, t="5.001")).status == NO_RESPONSE
    assert fmt.parse(LINE.format(s=1, code=444, t="1.000")).status == NO_RESPONSE


def test_a_log_format_directive_is_compiled_as_nginx_joins_it():
    directive = """log_format timed escape=default '$remote_addr [$time_iso8601] "$request" '
                   '$status ${upstream_response_time} $msec rt=$request_time ra=$sent_http_retry_after';"""
    layout = format_string(directive)
    assert layout.startswith("$remote_addr [$time_iso8601]") and layout.endswith(
        "ra=$sent_http_retry_after"
    )
    fmt = compile_format(layout)
    line = '1.2.3.4 [2026-01-01T00:00:01+00:00] "POST /a/b HTTP/1.1" 429 0.010, 0.020 1767225601.250 rt=0.031 ra=30'
    request = fmt.parse(line)
    assert request.status == 429 and request.latency_s == 0.031  # $request_time wins
    assert request.end_at == 1767225601.25  # $msec wins over $time_iso8601
    assert request.retry_after_s == 30 and request.path == "/a/b"
    assert fmt.time_resolution_s == 0.001
    upstream = compile_format('$status $upstream_response_time "$request"')
    assert upstream.parse('502 0.010, 0.020 "GET / HTTP/1.1"').latency_s == pytest.approx(0.030)
    assert math.isnan(upstream.parse('404 - "GET / HTTP/1.1"').latency_s)


def test_a_layout_without_status_or_latency_is_refused(tmp_path: Path):
    log = nginx(tmp_path / "a.log", [(200, 0.1)])
    line = one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(log), "--log-format", "$remote_addr $status"])
    )
    assert line.startswith("error: --log-format: ") and "$request_time" in line
    line = one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(log), "--log-format", "$request_time"])
    )
    assert "has no $status" in line


def test_a_malformed_nginx_line_names_its_file_and_line(tmp_path: Path):
    log = nginx(tmp_path / "access.log", [(200, 0.1), (200, 0.2), (503, 0.3)])
    with log.open("a") as out:
        out.write("\n")  # blank lines are skipped, but counted in line numbers
        out.write(
            '10.1.2.3 - - [01/Jan/2026:00:00:09 +0000] "POST /hook HTTP/1.1" OK 0 "-" "ua" 0.1\n'
        )
        out.write(LINE.format(s=10, code=200, t="0.100") + "\n")
    line = one_error_line(runner.invoke(app, ["fit", "endpoint", str(log)]))
    assert line.startswith(f"error: {log}: line 5: not in the log format")
    skipped = runner.invoke(app, ["fit", "endpoint", str(log), "--skip-bad-lines"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 malformed lines; the first: " in skipped.stderr and "line 5" in skipped.stderr
    assert "requests: 4 (4 answered, 0 hung" in skipped.stderr


def test_gzip_logs_several_files_and_a_path_filter(tmp_path: Path):
    plain = nginx(tmp_path / "a.log", [(200, 0.1)] * 3)
    packed = tmp_path / "b.log.gz"
    with gzip.open(packed, "wt") as out:
        out.write(LINE.format(s=1, code=503, t="0.200").replace("/hook", "/health") + "\n")
        out.write(LINE.format(s=2, code=503, t="0.200") + "\n")
    result = runner.invoke(app, ["fit", "endpoint", str(plain), str(packed), "--path", "/hook"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["endpoint"]["responses"] == {200: 0.75, 503: 0.25}
    assert "left out 1 requests outside the path" in result.stderr
    none = runner.invoke(app, ["fit", "endpoint", str(plain), "--path", "/nothing"])
    assert "no request path starts with '/nothing'" in one_error_line(none)


def test_alb_fields_what_the_client_saw():
    fmt = AlbFormat()
    head = "https 2026-01-01T00:00:10.500000Z app/lb/1 192.0.2.1:1 10.0.0.1:80"
    tail = (
        '411 366 "POST https://h.example.com:443/hooks/x?q=1 HTTP/1.1" "ua" - - arn "Root=1" "-" "-" 0 '
        '2026-01-01T00:00:05.000000Z "forward" "-" "-"'
    )
    answered = fmt.parse(f"{head} 0.001 0.250 0.000 503 503 {tail}")
    assert (answered.status, answered.latency_s, answered.path) == (503, 0.25, "/hooks/x")
    reset = fmt.parse(f"{head} 0.001 -1 -1 502 - {tail}")  # the target reset: the ALB answered 502
    assert reset.status == 502 and reset.latency_s == pytest.approx(5.5)
    client_gone = fmt.parse(f"{head} 0.001 -1 -1 460 - {tail}")
    assert client_gone.status == NO_RESPONSE and client_gone.latency_s == pytest.approx(5.5)
    timed_out = fmt.parse(f"{head} 0.001 -1 -1 504 - {tail}")
    assert timed_out.status == NO_RESPONSE
    with pytest.raises(ValueError, match="target_status_code 'abc'"):
        fmt.parse(f"{head} 0.001 0.2 0.000 200 abc {tail}")
    with pytest.raises(ValueError, match="at least 13"):
        fmt.parse("https 2026-01-01T00:00:10Z app/lb/1")


def test_a_malformed_alb_line_in_a_gz_file(tmp_path: Path):
    good = (
        "https 2026-01-01T00:00:10.5Z app/lb/1 192.0.2.1:1 10.0.0.1:80 0.001 0.250 0.000 200 200 1 2 "
        '"POST https://h:443/x HTTP/1.1" "ua"'
    )
    path = tmp_path / "alb.log.gz"
    with gzip.open(path, "wt") as out:
        out.write(good + "\n" + good.replace("0.250", "fast") + "\n")
    line = one_error_line(runner.invoke(app, ["fit", "endpoint", str(path), "--format", "alb"]))
    assert (
        line
        == f"error: {path}: line 2: target_processing_time 'fast' is not a number of seconds (or -1)"
    )


def test_csv_requests(tmp_path: Path):
    path = tmp_path / "requests.csv"
    path.write_text(
        "time,status,latency_s,retry_after\n"
        "2026-01-01T00:00:00Z,200,0.1,\n1767225600.05,429,0.2,30\n"
        "1767225600.1,-,5.0,\n1767225600.2,503,0.05,\n"
    )
    requests = read_requests([path], CsvFormat())
    fit = fit_requests(requests, timeout_s=5.0)
    assert fit.mix == {
        200: pytest.approx(1 / 3, abs=1e-6),
        429: pytest.approx(1 / 3, abs=1e-6),
        503: pytest.approx(1 / 3, abs=1e-6),
    }
    assert sum(fit.mix.values()) == 1.0 and fit.n_hangs == 1
    assert fit.retry_after_s == {429: 30.0}
    assert fit.endpoint_block()["retry_after"] == {429: "30s"}
    path.write_text("status,latency_s\n200,0.1\n200,soon\n")
    line = one_error_line(runner.invoke(app, ["fit", "endpoint", str(path)]))
    assert line == f"error: {path}: line 3: latency_s 'soon' is not a number of seconds"
    path.write_text("code,latency_s\n200,0.1\n")
    assert "no column 'status'" in one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(path)])
    )


def test_missing_files_and_bad_options_are_one_error_line(tmp_path: Path):
    assert "no such file" in one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(tmp_path / "x.log")])
    )
    log = nginx(tmp_path / "a.log", [(200, 0.1)])
    bad = runner.invoke(app, ["fit", "endpoint", str(log), "--format", "apache"])
    assert one_error_line(bad).startswith("error: --format: ")
    assert "--timeout" in one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(log), "--timeout", "-1s"])
    )
    hung = nginx(tmp_path / "h.log", [(499, 5.0), (200, 6.0)])
    assert "no response to fit" in one_error_line(
        runner.invoke(app, ["fit", "endpoint", str(hung)])
    )


def test_peak_concurrency_exact_with_milliseconds_and_averaged_with_seconds():
    starts = [0.0, 0.1, 0.2, 1.0, 1.05]
    ends = [0.5, 0.6, 0.15, 1.1, 1.2]  # the third ends before it starts: clipped to its start
    import numpy as np

    assert peak_concurrency(np.array(starts), np.array(ends)) == 2
    # to the second: the busiest second's average number in progress (a lower bound of the peak)
    second = np.array([10.0] * 4)
    assert peak_concurrency(second - 0.5, second, resolution_s=1.0) == 2  # 4 x 0.5 s in one second
    assert peak_concurrency(np.array([math.nan]), np.array([math.nan])) is None


def test_the_local_endpoints_access_log_is_read_by_the_default_layout():
    """`sim endpoint --access-log` writes what nginx would (see sim.endpoint.access_log)."""
    from sim.endpoint.access_log import escape

    fmt = compile_format(TIMED_COMBINED)
    line = f'127.0.0.1 - - [01/Jan/2026:00:00:01 +0000] "{escape("POST /a" + chr(34) + "b HTTP/1.1")}" 444 0 "-" "-" 1.000'
    request = fmt.parse(line)
    assert request.status == NO_RESPONSE and request.path == "/a\\x22b"
