"""Fuzzing the CSV inputs of a scenario: arrival traces, binned counts and latency samples.

Hypothesis writes CSV files with missing or renamed columns, empty cells, negative, huge and
non-finite numbers, timestamps good and bad, quoting accidents and random bytes. The scenario
that uses the CSV must load with finite, non-negative arrays, or fail with one `InputError`
naming the scenario file, the key of the source (`arrivals.0`, `endpoint.latency`) and the CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.scenario.loading import load_scenario
from sim.scenario.model import MAX_RATE_PER_SECOND, Scenario
from tests.support.processes import assert_one_error_line, fuzz_settings

pytestmark = pytest.mark.slow

runner = CliRunner()
FUZZ = fuzz_settings(120)

SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "trace": ("arrivals.0", {"kind": "trace", "path": "in.csv", "column": "t"}),
    "counts": (
        "arrivals.0",
        {"kind": "counts", "path": "in.csv", "time_column": "t", "count_column": "n"},
    ),
    "empirical": (
        "endpoint.latency",
        {"kind": "empirical", "path": "in.csv", "column": "t", "unit": "ms"},
    ),
}

CELLS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", " ", "inf", "-inf", "nan", "NaN", "1e400", "-0", "1,5", "0x10", "1_000", "true",
         "2025-01-01T00:00:00Z", "2025-01-01 00:01:00", "2025-13-45T99:00:00", "0001-01-01",
         "9999-12-31T23:59:59", "10000-01-01", "1970-01-01T00:00:00+14:00", "yesterday",
         '"quoted, comma"', '"unterminated', "\u00e9t\u00e9", "\t", "#comment"]
    ),
    st.text(max_size=8),
)  # fmt: skip
HEADERS = st.lists(st.sampled_from(["t", "n", "T", "t ", "", "x", "t"]), min_size=1, max_size=3)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    header = draw(HEADERS)
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=8))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    writer.writerow(header)
    for row in rows:
        out.write(",".join(row) + "\n") if draw(st.booleans()) else writer.writerow(row)
    return out.getvalue()


def scenario_with(source: str) -> dict[str, Any]:
    key, spec = SOURCES[source]
    data: dict[str, Any] = {
        "name": "csv",
        "horizon": "1h",
        "arrivals": [{"kind": "constant", "rate_per_second": 1}],
        "endpoint": {"latency": {"kind": "constant", "value": "10ms"}},
    }
    if key == "arrivals.0":
        data["arrivals"] = [spec]
    else:
        data["endpoint"]["latency"] = spec
    return data


def check_csv(folder: Path, source: str, content: bytes) -> Scenario | InputError:
    """Load a scenario whose `source` reads `content`: a sound model, or one error line."""
    (folder / "in.csv").write_bytes(content)
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario_with(source)), encoding="utf-8")
    key = SOURCES[source][0]
    try:
        scenario = load_scenario(path)
    except InputError as err:
        assert err.source == str(path) and err.key == key, err
        assert str((folder / "in.csv").resolve()) in err.problem, err
        result = runner.invoke(app, ["check", str(path)])
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, str(path), key)
        return err
    if source == "trace":
        values = scenario.arrivals[0].times  # type: ignore[union-attr]
    elif source == "counts":
        edges, values = scenario.arrivals[0].bins  # type: ignore[union-attr]
        assert np.isfinite(edges).all() and (np.diff(edges) > 0).all()
        assert values.max() <= MAX_RATE_PER_SECOND
    else:
        values = scenario.endpoint.latency.samples  # type: ignore[union-attr]
    assert values.size > 0 and np.isfinite(values).all() and (values >= 0).all()
    return scenario


@pytest.mark.parametrize("source", SOURCES)
@FUZZ
@given(text=csv_texts())
def test_generated_csv_files_load_or_fail_with_one_line(
    tmp_path: Path, source: str, text: str
) -> None:
    check_csv(tmp_path, source, text.encode("utf-8"))


@pytest.mark.parametrize("source", SOURCES)
@fuzz_settings(40)
@given(blob=st.binary(max_size=200))
def test_random_bytes_as_csv(tmp_path: Path, source: str, blob: bytes) -> None:
    check_csv(tmp_path, source, blob)


KNOWN_BAD = {
    "empty-file": b"",
    "header-only": b"t,n\n",
    "no-such-column": b"x,y\n1,2\n",
    "negative": b"t,n\n-1,5\n",
    "not-a-number": b"t,n\nfive,5\n",
    "infinite": b"t,n\ninf,5\n",
    "nan": b"t,n\nnan,5\n",
    "empty-cell": b"t,n\n1,5\n,5\n",
    "latin-1": b"t,n\n1,5\n\xe9,5\n",
    "utf-16": "t,n\n1,5\n".encode("utf-16"),
    "ragged": b't,n\n1,5\n"2,5\n3,5,7,8\n',
    "nul-bytes": b"t,n\n1\x00,5\n",
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("content", KNOWN_BAD.values(), ids=KNOWN_BAD.keys())
def test_known_bad_csv_files(tmp_path: Path, source: str, content: bytes) -> None:
    result = check_csv(tmp_path, source, content)
    if not (source == "trace" and content == KNOWN_BAD["ragged"]):
        assert isinstance(result, InputError), result


def test_counts_busier_than_the_model_can_draw_are_refused(tmp_path: Path) -> None:
    content = b"t,n\n0,1\n60,1e300\n120,5\n"
    err = check_csv(tmp_path, "counts", content)
    assert isinstance(err, InputError) and "events/s" in err.problem


def test_a_missing_csv_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario_with("trace")), encoding="utf-8")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr, str(path), "arrivals.0")
    assert "in.csv: no such file" in line
