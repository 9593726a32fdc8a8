"""`sim fit endpoint` recovers a known endpoint from 20,000 synthetic log lines (nginx, ALB).

The endpoint: status mix 97 % 200, 2 % 503, 1 % 429 among answered requests; lognormal latency
with median 80 ms and p99 600 ms; 0.5 % of requests hang past the 5 s client timeout. The fit
must give the mix within 0.5 percentage points per status, median and p99 within 5 %, and
hangs within 0.2 points (seed fixed; with 20,000 lines these are 4 standard errors or more).
"""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.scenario.loading import load_scenario

runner = CliRunner()
N = 20_000
MIX = {200: 0.97, 503: 0.02, 429: 0.01}
MEDIAN_S, P99_S, HANG = 0.080, 0.600, 0.005
Z99 = 2.3263478740408408
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def draws(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start epoch s, hang?, status, latency s) of N requests over one hour."""
    rng = np.random.default_rng(seed)
    mu = math.log(MEDIAN_S)
    sigma = (math.log(P99_S) - mu) / Z99
    starts = T0 + np.sort(rng.uniform(0, 3600, N))
    hang = rng.random(N) < HANG
    status = rng.choice(list(MIX), p=list(MIX.values()), size=N)
    latency = np.exp(rng.normal(mu, sigma, N))
    latency[hang] = 5.0 + rng.uniform(0, 0.2, int(hang.sum()))
    return starts, hang, status, latency


def nginx_log(path: Path) -> Path:
    """Timed combined lines: hangs are nginx's 499 (the client closed at its timeout)."""
    lines = []
    for start, hang, status, latency in zip(*draws(), strict=True):
        end = datetime.fromtimestamp(start + latency, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        code = 499 if hang else status
        lines.append(
            f'203.0.113.9 - - [{end}] "POST /hooks/orders?x=1 HTTP/1.1" {code} 17 "-" '
            f'"Amazon/EventBridge/ApiDestinations" {latency:.3f}'
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def alb_log(path: Path) -> Path:
    """ALB lines, gzipped: hangs are 460 (client closed) with no target response (-1, -)."""
    lines = []
    for start, hang, status, latency in zip(*draws(), strict=True):
        created = datetime.fromtimestamp(start, UTC).isoformat(timespec="microseconds")
        end = datetime.fromtimestamp(start + latency + 0.001, UTC).isoformat(
            timespec="microseconds"
        )
        if hang:
            timing, codes = "0.000 -1 -1", "460 -"
        else:
            timing, codes = f"0.000 {latency:.6f} 0.000", f"{status} {status}"
        lines.append(
            f"https {end.replace('+00:00', 'Z')} app/partner/50dc6c495c0c9188 192.0.2.7:2817 "
            f"10.0.0.1:443 {timing} {codes} 411 366 "
            f'"POST https://hooks.example.com:443/hooks/orders HTTP/1.1" '
            f'"Amazon/EventBridge/ApiDestinations" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 '
            f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/73e2d6bc24d8a067 "
            f'"Root=1-58337262-36d228ad5d99923122bbe354" "hooks.example.com" '
            f'"arn:aws:acm:us-east-1:123456789012:certificate/12345678" 0 '
            f'{created.replace("+00:00", "Z")} "forward" "-" "-" "10.0.0.1:443" '
            f'"{codes.split()[1]}" "-" "-"'
        )
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines) + "\n")
    return path


def fitted(out: Path) -> dict:
    endpoint = yaml.safe_load(out.read_text())["endpoint"]
    return endpoint


def check_tolerances(endpoint: dict) -> None:
    for status, share in MIX.items():
        assert endpoint["responses"][status] == pytest.approx(share, abs=0.005), status
    assert set(endpoint["responses"]) == set(MIX)
    latency = endpoint["latency"]
    assert latency["kind"] == "lognormal"
    median = float(latency["median"].removesuffix("ms")) / 1000
    p99 = float(latency["p99"].removesuffix("ms")) / 1000
    assert median == pytest.approx(MEDIAN_S, rel=0.05)
    assert p99 == pytest.approx(P99_S, rel=0.05)
    assert endpoint["timeout_probability"] == pytest.approx(HANG, abs=0.002)


@pytest.mark.parametrize("kind", ["nginx", "alb"])
def test_a_known_endpoint_is_recovered_from_20000_log_lines(tmp_path: Path, kind: str):
    log = (
        nginx_log(tmp_path / "access.log") if kind == "nginx" else alb_log(tmp_path / "alb.log.gz")
    )
    out = tmp_path / "endpoint.yaml"
    result = runner.invoke(app, ["fit", "endpoint", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    check_tolerances(fitted(out))
    layout = "alb" if kind == "alb" else "nginx, timed combined"
    assert f"read {N:,} lines of {log} ({layout})" in result.output
    assert "KS distance" in result.output and (tmp_path / "endpoint.png").stat().st_size > 10_000
    # The block is a scenario's endpoint, as `sim check` reads it.
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nhorizon: 1h\narrivals: [{kind: constant, rate_per_second: 5}]\n" + out.read_text()
    )
    assert runner.invoke(app, ["check", str(scenario)]).exit_code == 0
    assert (
        load_scenario(scenario).endpoint.timeout_probability == fitted(out)["timeout_probability"]
    )


def test_the_fit_reports_the_mix_counts_and_a_lower_bound_of_the_capacity(tmp_path: Path):
    log = nginx_log(tmp_path / "access.log")
    result = runner.invoke(app, ["fit", "endpoint", str(log)])
    assert result.exit_code == 0, result.output
    endpoint = yaml.safe_load(result.stdout)["endpoint"]  # the YAML alone goes to stdout
    check_tolerances(endpoint)
    report = result.stderr
    hangs = int(draws()[1].sum())
    assert f"{N:,} ({N - hangs:,} answered, {hangs:,} hung" in report
    assert "observed peak concurrency:" in report and "lower bound" in report
    assert "# observed peak concurrency" in result.stdout  # a comment beside the block


def test_empirical_writes_the_latencies_beside_the_block(tmp_path: Path):
    log = nginx_log(tmp_path / "access.log")
    out = tmp_path / "fit" / "endpoint.yaml"
    out.parent.mkdir()
    result = runner.invoke(app, ["fit", "endpoint", str(log), "--out", str(out), "--empirical"])
    assert result.exit_code == 0, result.output
    latency = fitted(out)["latency"]
    assert latency == {"kind": "empirical", "path": "endpoint-latency.csv", "column": "latency_s"}
    samples = np.loadtxt(out.parent / "endpoint-latency.csv", skiprows=1)
    hangs = int(draws()[1].sum())
    assert samples.size == N - hangs
    assert np.median(samples) == pytest.approx(MEDIAN_S, rel=0.05)
