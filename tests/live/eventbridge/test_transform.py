"""Input / InputPath / InputTransformer against the public conformance vectors, plus extras."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sim.live.eventbridge.transform import (
    MISSING,
    InputSpec,
    InvalidInputConfig,
    TargetContext,
    render_input,
    resolve_path,
    validate_input_config,
)
from tests.support.conformance import rows

TARGET_ID = "target-1"
DEFAULT_CONTEXT = TargetContext(
    rule_arn="arn:aws:events:us-east-1:111111111111:rule/test-bus/test-rule",
    rule_name="test-rule",
    ingestion_time=datetime(2025, 10, 8, 11, 10, 10, tzinfo=UTC),
)

# id -> reason. Every row here is aws-recorded, so this must stay empty.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _rows(name: str) -> list[Any]:
    return rows(name, KNOWN_DIFFERENCES)


def _canonical(value: Any) -> str:
    """Strict structural form: keeps 1 vs 1.0 vs true apart, ignores key order."""
    return json.dumps(value, sort_keys=True)


def _drop(value: Any, path: str) -> None:
    """Remove a ``$.a.b`` path the recording did not keep."""
    *parents, last = path.removeprefix("$.").split(".")
    for key in parents:
        value = value[key]
    del value[last]


def _target(row: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = {"Id": TARGET_ID}
    if "input_template" in row:
        target["InputTransformer"] = {
            "InputPathsMap": row["input_paths_map"],
            "InputTemplate": row["input_template"],
        }
    if row.get("input_path") is not None:
        target["InputPath"] = row["input_path"]
    return target


def _context(row: dict[str, Any]) -> TargetContext:
    ctx = row.get("context")
    if ctx is None:
        return DEFAULT_CONTEXT
    when = datetime.fromisoformat(ctx["ingestion_time"])
    return TargetContext(ctx["rule_arn"], ctx["rule_name"], when)


def _check(row: dict[str, Any]) -> None:
    target, kind = _target(row), row["expected_kind"]
    if kind == "put_targets_error":
        message = row["expected_error"]["message"].replace("<target-id>", TARGET_ID)
        with pytest.raises(InvalidInputConfig) as caught:
            validate_input_config(target)
        assert str(caught.value) == message
        return
    validate_input_config(target)
    body = render_input(target, row["event"], _context(row))
    if kind == "not_delivered":
        assert body is None
    elif kind == "string":
        assert body == row["expected"]
    else:
        assert kind == "json" and body is not None
        got, expected = json.loads(body), json.loads(json.dumps(row["expected"]))
        for path in row.get("unrecorded_paths", []):
            _drop(got, path)
            _drop(expected, path)
        assert _canonical(got) == _canonical(expected)


@pytest.mark.parametrize("row", _rows("input-transformer.jsonl"))
def test_input_transformer_vectors(row: dict[str, Any]) -> None:
    _check(row)


@pytest.mark.parametrize("row", _rows("input-path.jsonl"))
def test_input_path_vectors(row: dict[str, Any]) -> None:
    _check(row)


# ---------------------------------------------------------------- hand-written cases

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "e-1",
    "detail-type": "order.placed",
    "source": "shop",
    "account": "111111111111",
    "time": "2025-01-02T03:04:05Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"qty": 300.0, "n": 3, "ok": False, "note": 'say "hi"', "items": ["a", "b"]},
}


def _transform(template: str, paths: dict[str, str] | None = None) -> str | None:
    target = {
        "Id": "t",
        "InputTransformer": {"InputPathsMap": paths or {}, "InputTemplate": template},
    }
    return render_input(target, EVENT, DEFAULT_CONTEXT)


def test_constant_input_and_whole_event() -> None:
    assert render_input({"Id": "t", "Input": '{"fixed": 1}'}, EVENT) == '{"fixed": 1}'
    body = render_input({"Id": "t"}, EVENT)
    assert body is not None and json.loads(body) == EVENT
    assert '"qty":300.0' in body  # the float spelling survives


def test_exactly_one_setting_and_valid_input() -> None:
    with pytest.raises(InvalidInputConfig, match="Only one of Input, InputPath"):
        validate_input_config({"Id": "t", "Input": "{}", "InputPath": "$.detail"})
    with pytest.raises(InvalidInputConfig):
        validate_input_config({"Id": "t", "Input": "not json"})
    with pytest.raises(InvalidInputConfig):
        validate_input_config({"Id": "t", "InputPath": "detail"})


def test_json_template_value_types() -> None:
    paths = {
        "qty": "$.detail.qty",
        "n": "$.detail.n",
        "ok": "$.detail.ok",
        "items": "$.detail.items",
    }
    body = _transform('{"q": <qty>, "n": <n>, "ok": <ok>, "items": <items>, "s": "n=<n>"}', paths)
    assert body == '{"q": 300.0, "n": 3, "ok": false, "items": ["a","b"], "s": "n=3"}'


def test_quotes_in_string_values_are_escaped_inside_json_strings() -> None:
    body = _transform('{"text": "note: <note>", "bare": <note>}', {"note": "$.detail.note"})
    assert body is not None
    assert json.loads(body) == {"text": 'note: say "hi"', "bare": 'say "hi"'}


def test_plain_text_template_and_missing_path() -> None:
    paths = {"src": "$.source", "gone": "$.detail.nope"}
    assert _transform("<src> sent [<gone>]", paths) == "shop sent []"


def test_predefined_placeholders() -> None:
    body = _transform("<aws.events.rule-name> <aws.events.event.ingestion-time>")
    assert body == "test-rule 2025-10-08T11:10:10Z"
    body = _transform('{"e": <aws.events.event>}')
    assert body is not None
    envelope = json.loads(body)["e"]
    assert envelope["detailType"] == "order.placed" and "detail" not in envelope
    target = {"Id": "t", "InputTransformer": {"InputTemplate": '"<aws.events.rule-arn>"'}}
    with pytest.raises(ValueError, match="TargetContext"):
        render_input(target, EVENT, None)


def test_ingestion_time_is_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    ctx = TargetContext("arn", "r", datetime(2025, 1, 1, 2, 0, 0, tzinfo=plus_two))
    spec = InputSpec.from_target(
        {"Id": "t", "InputTransformer": {"InputTemplate": "<aws.events.event.ingestion-time>"}}
    )
    assert spec.render(EVENT, ctx) == "2025-01-01T00:00:00Z"


def test_jsonpath_subset() -> None:
    assert resolve_path(EVENT, "$") == EVENT
    assert resolve_path(EVENT, "$.detail-type") == "order.placed"
    assert resolve_path(EVENT, "$.detail.items[1]") == "b"
    assert resolve_path(EVENT, "$.detail.items[*]") == ["a", "b"]
    assert resolve_path(EVENT, "$.detail.items[5]") is MISSING
    assert resolve_path(EVENT, "$.detail.note.deeper") is MISSING
    assert render_input({"Id": "t", "InputPath": "$.detail.missing"}, EVENT) is None
