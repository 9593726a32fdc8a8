import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.scenario.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (90, 90.0),
        ("1.5", 1.5),
        ("-30s", -30),
        (" 2 h ", 7200),
    ],
)
def test_parse_accepts_documented_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 parsecs", "h", "1x", True, None, [1], "nan", float("inf")])
def test_parse_rejects_other_values(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False).map(lambda x: round(x, 3)))
def test_format_round_trips(seconds):
    formatted = format_duration(seconds)
    assert math.isclose(parse_duration(formatted), seconds, rel_tol=0, abs_tol=1e-9)


def test_format_picks_the_largest_exact_unit():
    assert [format_duration(x) for x in (86400, 7200, 600, 5, 0.25, 0)] == [
        "1d",
        "2h",
        "10m",
        "5s",
        "250ms",
        "0s",
    ]


@pytest.mark.parametrize("huge", [10**400, "1" + "0" * 400 + "s"])
def test_parse_refuses_durations_too_large_for_a_float(huge):
    with pytest.raises(ValueError, match="too large|not a finite"):
        parse_duration(huge)


@pytest.mark.parametrize("odd", [5e-324, 1e-7, 1.7e305, 1e30])
def test_format_keeps_odd_values_exact(odd):
    formatted = format_duration(odd)
    assert parse_duration(formatted) == odd
