"""Event pattern matching against the public conformance vectors, plus hand-written cases.

Every ``aws-recorded`` row must pass. ``event-ruler-unit-test`` rows should pass too; any
row we deliberately answer differently goes in KNOWN_DIFFERENCES (xfail, strict).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sim.live.eventbridge.pattern_ops import parse_wildcard
from sim.live.eventbridge.patterns import (
    ENVELOPE_FIELDS,
    InvalidEvent,
    InvalidEventPattern,
    compile_pattern,
    test_event_pattern,
    wildcard_complexity,
)
from tests.support.conformance import CONFORMANCE, rows

PREFIX = "Event pattern is not valid. Reason: "

# id -> reason. Only event-ruler-unit-test rows may appear here (checked below).
KNOWN_DIFFERENCES: dict[str, str] = {}


def _rows(name: str) -> list[Any]:
    return rows(name, KNOWN_DIFFERENCES)


def _pattern_text(row: dict[str, Any]) -> str:
    raw = row.get("pattern_raw")
    return raw if raw is not None else json.dumps(row["pattern"])


def _event_text(row: dict[str, Any]) -> str:
    raw = row.get("event_raw")
    return raw if raw is not None else json.dumps(row["event"])


# ---------------------------------------------------------------- conformance vectors


@pytest.mark.parametrize("row", _rows("event-patterns.jsonl"))
def test_event_pattern_vectors(row: dict[str, Any]) -> None:
    pattern_text, event_text = _pattern_text(row), _event_text(row)
    event = json.loads(event_text)
    if all(name in event for name in ENVELOPE_FIELDS):
        assert test_event_pattern(pattern_text, event_text) is row["match"]
    assert compile_pattern(pattern_text).matches(event) is row["match"]
    # the decoded-object entry point must agree with the text one
    assert compile_pattern(json.loads(pattern_text)).matches(event) is row["match"]


@pytest.mark.parametrize("row", _rows("invalid-patterns.jsonl"))
def test_invalid_pattern_vectors(row: dict[str, Any]) -> None:
    text = _pattern_text(row)
    with pytest.raises(InvalidEventPattern) as caught:
        compile_pattern(text)
    message = str(caught.value)
    if row["provenance"] == "aws-recorded" and row["pattern"] is not None:
        assert message == row["error_hint"]
    else:  # JSON syntax errors: Jackson's wording is not reproduced, only the prefix
        assert message.startswith(PREFIX)
    if "event" in row:
        with pytest.raises(InvalidEventPattern):
            test_event_pattern(text, json.dumps(row["event"]))


@pytest.mark.parametrize("row", _rows("invalid-events.jsonl"))
def test_invalid_event_vectors(row: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent, match=r"^Parameter Event is not valid\.$"):
        test_event_pattern(json.dumps(row["pattern"]), row["event_raw"])


def test_known_differences_are_real_event_ruler_rows() -> None:
    provenance = {}
    for name in ("event-patterns.jsonl", "invalid-patterns.jsonl", "invalid-events.jsonl"):
        for line in (CONFORMANCE / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            provenance[row["id"]] = row["provenance"]
    for row_id in KNOWN_DIFFERENCES:
        assert provenance.get(row_id) == "event-ruler-unit-test", row_id


# ---------------------------------------------------------------- hand-written cases


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return compile_pattern(pattern).matches(event)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, False), (0.0001, True), (5, True), (5.0, True), (5.01, False), ("3", False),
     (True, False), (None, False), ([7, 3], True), ([7, 9], False)],
)  # fmt: skip
def test_numeric_range_bounds(value: Any, expected: bool) -> None:
    assert _matches({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": value}) is expected


def test_numbers_booleans_and_strings_do_not_mix() -> None:
    assert _matches({"v": [1]}, {"v": 1.0})
    assert not _matches({"v": [1]}, {"v": True})
    assert not _matches({"v": [True]}, {"v": 1})
    assert not _matches({"v": ["1"]}, {"v": 1})
    assert not _matches({"v": [None]}, {"v": "null"})
    assert _matches({"v": [{"anything-but": [1, 2]}]}, {"v": "1"})  # a string is not 1


def test_nested_or() -> None:
    pattern = {
        "source": ["app"],
        "$or": [
            {"detail": {"$or": [{"x": [1]}, {"y": [{"prefix": "ok"}]}]}},
            {"detail": {"z": [{"exists": True}]}},
        ],
    }
    assert _matches(pattern, {"source": "app", "detail": {"y": "okay"}})
    assert _matches(pattern, {"source": "app", "detail": {"z": 0}})
    assert not _matches(pattern, {"source": "app", "detail": {"x": 2, "y": "no"}})
    assert not _matches(pattern, {"source": "other", "detail": {"x": 1}})


def test_wildcard_escapes() -> None:
    star = {"f": [{"wildcard": "a\\*b*"}]}  # JSON text "a\\*b*": literal '*', then any
    assert _matches(star, {"f": "a*bcd"})
    assert not _matches(star, {"f": "axbcd"})
    slash = {"f": [{"wildcard": "a\\\\*"}]}  # literal backslash, then any
    assert _matches(slash, {"f": "a\\zz"})
    assert not _matches(slash, {"f": "azz"})
    with pytest.raises(InvalidEventPattern, match="Invalid escape character"):
        compile_pattern({"f": [{"wildcard": "a\\d"}]})
    with pytest.raises(InvalidEventPattern, match="Consecutive wildcard characters at pos 4$"):
        compile_pattern({"f": [{"wildcard": "abc**def"}]})


def test_wildcard_star_spans_slashes_and_empty() -> None:
    pattern = {"p": [{"wildcard": "*/lib/*"}]}
    assert _matches(pattern, {"p": "/lib/"})
    assert _matches(pattern, {"p": "a/b/lib/c/d"})
    assert not _matches(pattern, {"p": "a/b/lib"})
    overlap = {"p": [{"wildcard": "ab*ba"}]}  # prefix and suffix may not share characters
    assert _matches(overlap, {"p": "abba"})
    assert not _matches(overlap, {"p": "aba"})


@pytest.mark.parametrize(
    ("operands", "expected"),
    [(["*"], 1), (["abc"], 1), (["*aa"], 3), (["a*b"], 2), (["aa*"], 2), (["a*bbb"], 4),
     (["*ab*ad"], 4), (["a*b*bb"], 5), (["*ab*b*b*"], 7), (["*a*a*a*a*a*a*a*a*"], 17),
     (["a*aaa", "aa*aa"], 7), (["ab*cd", "ab*wx", "ab*yz"], 6),
     (["F*eatureFeature", "Fe*atureFeature", "Fea*tureFeature"], 10)],
)  # fmt: skip
def test_wildcard_complexity_matches_event_ruler(operands: list[str], expected: int) -> None:
    """Expected values are from event-ruler's MachineComplexityEvaluatorTest."""
    parsed = [parse_wildcard(op) for op in operands]
    assert wildcard_complexity(parsed, cap=100) == expected


def test_cidr_v4_v6_and_non_ip_values() -> None:
    v4 = {"ip": [{"cidr": "192.168.0.0/16"}]}
    assert _matches(v4, {"ip": "192.168.255.1"})
    assert not _matches(v4, {"ip": "192.169.0.1"})
    assert not _matches(v4, {"ip": "not-an-ip"})
    v6 = {"ip": [{"cidr": "2001:db8::/32"}]}
    assert _matches(v6, {"ip": "2001:0db8:ffff::1"})
    assert not _matches(v6, {"ip": "192.168.0.1"})
    host_bits_set = {"ip": [{"cidr": "10.0.0.77/24"}]}  # the block is 10.0.0.0-10.0.0.255
    assert _matches(host_bits_set, {"ip": "10.0.0.1"})


def test_array_consistency_and_exists_false() -> None:
    event = {"items": [{"k": "a", "v": 1}, {"k": "b"}]}
    assert _matches({"items": {"k": ["a"], "v": [1]}}, event)
    assert not _matches({"items": {"k": ["b"], "v": [1]}}, event)  # v=1 is in another element
    assert _matches({"items": {"k": ["b"], "v": [{"exists": False}]}}, event)
    assert not _matches({"items": {"k": ["a"], "v": [{"exists": False}]}}, event)


def test_duplicate_keys_last_wins_and_dotted_paths() -> None:
    pattern = compile_pattern('{"a": ["x"], "a": ["y"]}')
    assert pattern.matches({"a": "y"}) and not pattern.matches({"a": "x"})
    assert _matches({"a.b": ["c"]}, {"a": {"b": "c"}})
    assert _matches({"a": {"b": ["c"]}}, {"a.b": "c"})


@pytest.mark.parametrize(
    "pattern",
    ['{"n": [1E400]}', '{"n": [1e-400]}', '{"n": [NaN]}', '{"n": [' + "9" * 400 + "]}",
     {"n": [float("inf")]}, {"n": [10**400]}],
)  # fmt: skip
def test_numbers_that_do_not_fit_a_double_are_rejected(pattern: Any) -> None:
    with pytest.raises(InvalidEventPattern):
        compile_pattern(pattern)


def test_event_missing_one_envelope_field_is_invalid() -> None:
    """Assumption (not recorded): every field LocalStack lists as mandatory is required."""
    event = {name: "x" for name in ENVELOPE_FIELDS}
    assert test_event_pattern('{"source": ["x"]}', json.dumps(event))
    del event["region"]
    with pytest.raises(InvalidEvent):
        test_event_pattern('{"source": ["x"]}', json.dumps(event))
