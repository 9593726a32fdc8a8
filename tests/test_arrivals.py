"""Arrival processes: exact expected counts, and generated counts that match them."""

import numpy as np
import pytest

from sim.arrivals import arrival_windows, expected_count, expected_rate
from sim.loading import load_scenario
from tests.test_scenario import DESIGN_EXAMPLE


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "per-minute.csv").write_text("timestamp,events\n0,600\n60,1200\n120,0\n180,300\n")
    (tmp_path / "arrivals.csv").write_text("arrival_s\n0.5\n0.1\n2.25\n7200.5\n")
    (tmp_path / "s.yaml").write_text(DESIGN_EXAMPLE.replace("horizon: 24h", "horizon: 3h"))
    return load_scenario(tmp_path / "s.yaml").arrivals


@pytest.mark.parametrize("horizon", [100.0, 3600.0, 3 * 3600.0 + 17.5])
def test_expected_count_integrates_the_rate_exactly(sources, horizon):
    step = 0.25
    grid = np.arange(0.0, horizon, step) + step / 2
    numeric = expected_rate(sources, grid).sum() * step
    assert expected_count(sources, horizon) == pytest.approx(numeric, rel=1e-3)


def test_generated_arrivals_match_the_expected_count(sources):
    horizon = 3 * 3600.0
    rng = np.random.default_rng(5)
    counts = [sum(t.size for *_, t in arrival_windows(sources, rng, horizon)) for _ in range(5)]
    expected = expected_count(sources, horizon)
    # Poisson: sd = sqrt(mean) per run; the mean of 5 runs is within 4 sd / sqrt(5)
    assert np.mean(counts) == pytest.approx(expected, abs=4 * np.sqrt(expected / 5))
