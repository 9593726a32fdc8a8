"""Arrival processes: exact expected counts, and generated counts that match them."""

import numpy as np
import pytest

from sim.errors import InputError
from sim.scenario.arrivals import arrival_windows, expected_count, expected_rate
from sim.scenario.loading import load_scenario
from tests.support.builders import DESIGN_EXAMPLE


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


@pytest.mark.slow
def test_generated_arrivals_match_the_expected_count(sources):
    horizon = 3 * 3600.0
    rng = np.random.default_rng(5)
    counts = [sum(t.size for *_, t in arrival_windows(sources, rng, horizon)) for _ in range(5)]
    expected = expected_count(sources, horizon)
    # Poisson: sd = sqrt(mean) per run; the mean of 5 runs is within 4 sd / sqrt(5)
    assert np.mean(counts) == pytest.approx(expected, abs=4 * np.sqrt(expected / 5))


def counts_source(folder, rows, spec=""):
    """The only arrival source of a one-hour scenario: `counts` over a CSV of (time, events) rows."""
    lines = "".join(f"{t},{n}\n" for t, n in rows)
    (folder / "per-minute.csv").write_text("timestamp,events\n" + lines)
    arrivals = (
        "arrivals:\n  - {kind: counts, path: per-minute.csv, time_column: timestamp, "
        f"count_column: events{spec}}}\n"
    )
    start, end = DESIGN_EXAMPLE.index("arrivals:"), DESIGN_EXAMPLE.index("destination:")
    text = DESIGN_EXAMPLE[:start] + arrivals + DESIGN_EXAMPLE[end:]
    (folder / "s.yaml").write_text(text.replace("horizon: 24h", "horizon: 1h"))
    (source,) = load_scenario(folder / "s.yaml").arrivals
    return source


def arrivals_between(source, seed, lo, hi, horizon=3600.0):
    rng = np.random.default_rng(seed)
    times = np.concatenate([t for *_, t in arrival_windows([source], rng, horizon)])
    return int(np.count_nonzero((times >= lo) & (times < hi))), times.size


def test_rows_missing_from_a_counts_csv_are_bins_without_arrivals(tmp_path):
    # A per-minute export leaves out the empty minutes 00:04-00:06 (240 s to 420 s); rows unsorted.
    minutes = [0, 1, 2, 3, 7, 8]
    rows = [(f"2026-01-01T00:{m:02d}:00Z", 600) for m in minutes]
    source = counts_source(tmp_path, rows[3:] + rows[:3])
    edges, rates = source.bins
    assert edges.tolist() == [0, 60, 120, 180, 240, 420, 480, 540]
    assert rates.tolist() == [10, 10, 10, 10, 0, 10, 10]
    assert expected_count([source], 3600.0) == 3600
    assert expected_count([source], 300.0) == 2400
    around_edges = np.array([239.9, 240.0, 419.9, 420.0, 539.9, 540.0])
    assert expected_rate([source], around_edges).tolist() == [10, 0, 0, 10, 10, 0]
    for seed in (1, 2, 3):
        in_gap, total = arrivals_between(source, seed, 240.0, 420.0)
        assert in_gap == 0
        assert arrivals_between(source, seed, 540.0, 3600.0)[0] == 0
        assert total == pytest.approx(3600, abs=4 * 60)  # Poisson sd = 60


def test_a_counts_csv_without_gaps_reads_as_before(tmp_path):
    source = counts_source(tmp_path, [(0, 600), (60, 1200), (120, 0), (180, 300)])
    edges, rates = source.bins
    assert edges.tolist() == [0, 60, 120, 180, 240] and rates.tolist() == [10, 20, 0, 5]
    assert expected_count([source], 3600.0) == 2100
    assert expected_count([source], 90.0) == 600 + 30 * 20
    in_empty_bin, total = arrivals_between(source, 4, 120.0, 180.0)
    assert in_empty_bin == 0 and total == pytest.approx(2100, abs=4 * np.sqrt(2100))


def test_an_explicit_bin_sets_how_long_each_row_lasts(tmp_path):
    # Without `bin` the rows 5 minutes apart would be 5-minute bins; with `bin: 1m` they last 60 s.
    rows = [(0, 60), (300, 120), (600, 60)]
    inferred = counts_source(tmp_path, rows)
    assert inferred.bins[0].tolist() == [0, 300, 600, 900]
    assert inferred.bins[1].tolist() == [0.2, 0.4, 0.2]
    source = counts_source(tmp_path, rows, ", bin: 1m")
    edges, rates = source.bins
    assert edges.tolist() == [0, 60, 300, 360, 600, 660]
    assert rates.tolist() == [1, 0, 2, 0, 1]
    assert expected_count([source], 3600.0) == expected_count([inferred], 3600.0) == 240
    assert expected_count([source], 330.0) == 60 + 30 * 2
    in_gaps = sum(arrivals_between(source, 9, lo, hi)[0] for lo, hi in [(60, 300), (360, 600)])
    assert in_gaps == 0 and arrivals_between(source, 9, 660.0, 3600.0)[0] == 0
    # a single row needs `bin`
    assert counts_source(tmp_path, [(0, 30)], ", bin: 30s").bins[0].tolist() == [0, 30]


@pytest.mark.parametrize(
    ("rows", "spec", "problem"),
    [
        ([(0, 1), (60, 1), (0, 1)], "", "line 4: repeats the bin start of line 2"),
        ([(0, 1), (60, 1), (90, 1), (150, 1)], "", "line 4: starts 30 s after line 3, less than"),
        ([(0, 1), (60, 1), (120, 1)], ", bin: 2m", "line 3: starts 60 s after line 2, less than"),
        ([(0, 1)], "", "one row only; set `bin`"),
    ],
)
def test_rows_that_overlap_are_one_error_naming_file_key_and_line(tmp_path, rows, spec, problem):
    with pytest.raises(InputError) as caught:
        counts_source(tmp_path, rows, spec)
    err = caught.value
    assert err.source == str(tmp_path / "s.yaml") and err.key == "arrivals.0"
    assert str((tmp_path / "per-minute.csv").resolve()) in err.problem and problem in err.problem
