"""The committed golden summaries are reproduced exactly (see golden.py)."""

import json

import pytest

from tests.golden.golden import SCENARIOS, expected_path, observe


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_golden_summary_is_reproduced_exactly(path):
    expected = json.loads(expected_path(path).read_text())
    observed = observe(path)
    assert len(observed["replications"]) == len(expected["replications"])
    for seen, want in zip(observed["replications"], expected["replications"], strict=True):
        missing = sorted(set(want["summary"]) - set(seen["summary"]))
        assert not missing, f"metrics gone: {missing}"
        changed = {
            k: (v, seen["summary"][k])
            for k, v in want["summary"].items()
            if seen["summary"][k] != v
        }
        assert not changed, f"(golden, now): {changed}"
        assert seen["timeseries_totals"] == want["timeseries_totals"]
        assert seen["timeseries_rows"] == want["timeseries_rows"]
