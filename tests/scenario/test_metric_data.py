"""CloudWatch GetMetricData responses: read as AWS writes them, and as a `counts` arrival source.

Timestamps come newest first; a minute without a datapoint is a minute without events; a
series is recognized by its label (or id); every malformed file is one ValueError naming the
file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import InputError
from sim.scenario.arrivals import expected_count
from sim.scenario.loading import build_scenario
from sim.scenario.metric_data import describe_label, metric_data_document, read_metric_data

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def response(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"MetricDataResults": results, "Messages": []}


def series(label: str, minutes: list[int], values: list[float], id_: str = "m1") -> dict[str, Any]:
    """One result, newest first as AWS returns it."""
    pairs = sorted(zip(minutes, values, strict=True), reverse=True)
    return {
        "Id": id_,
        "Label": label,
        "Timestamps": [f"2026-01-01T00:{m:02d}:00+00:00" for m, _ in pairs],
        "Values": [v for _, v in pairs],
        "StatusCode": "Complete",
    }


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.mark.parametrize(
    ("label", "id_", "expected"),
    [
        ("MatchedEvents", "m1", ("MatchedEvents", None, None)),
        ("orders MatchedEvents", "m1", ("MatchedEvents", "orders", None)),
        ("MatchedEvents RuleName=orders-v2", "m1", ("MatchedEvents", "orders-v2", None)),
        (
            "orders IngestionToInvocationSuccessLatency p99",
            "x",
            ("IngestionToInvocationSuccessLatency", "orders", "p99"),
        ),
        (
            "IngestionToInvocationSuccessLatency (Average)",
            "x",
            ("IngestionToInvocationSuccessLatency", None, "Average"),
        ),
        ("", "m_invocationssenttodlq_orders", ("InvocationsSentToDlq", None, None)),
        ("my own label", "q1", (None, None, None)),
    ],
)
def test_a_series_is_recognized_by_its_label(label: str, id_: str, expected: tuple[Any, ...]):
    assert describe_label(label, id_) == expected


def test_newest_first_pages_merged_and_the_period_inferred(tmp_path: Path):
    first_page = series("orders MatchedEvents", [5, 4], [50, 40])
    second_page = series("orders MatchedEvents", [2, 0], [20, 10])
    latency = series("orders IngestionToInvocationSuccessLatency", [4, 2], [120.5, 80], id_="m2")
    data = read_metric_data(
        write(tmp_path / "m.json", response([first_page, second_page, latency]))
    )
    matched = data.select("MatchedEvents")
    assert (matched.times - T0).tolist() == [0, 120, 240, 300]
    assert matched.values.tolist() == [10, 20, 40, 50]
    assert data.period() == 60.0 and data.rules() == ["orders"]
    assert data.select("IngestionToInvocationSuccessLatency").stat == "Average"
    with pytest.raises(ValueError, match="no series of InvocationAttempts"):
        data.select("InvocationAttempts")


def test_the_writer_and_the_reader_agree(tmp_path: Path):
    times = T0 + 60.0 * np.array([0, 1, 3])
    document = metric_data_document([("a MatchedEvents", "m0", times, np.array([1.0, 2.0, 3.0]))])
    assert document["MetricDataResults"][0]["Timestamps"][0] == "2026-01-01T00:03:00+00:00"
    data = read_metric_data(write(tmp_path / "m.json", document))
    assert data.select("MatchedEvents", "a").times.tolist() == times.tolist()


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_metric_data(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_every_malformed_file_names_its_line(tmp_path: Path):
    good = series("MatchedEvents", [0, 1, 2], [1, 2, 3])
    text = json.dumps(response([good]), indent=2)
    assert error_of(tmp_path, text[:-5]).startswith("line ")  # truncated JSON
    assert error_of(tmp_path, "[1, 2]") == (
        "line 1: not a GetMetricData response: expected an object with a 'MetricDataResults' list"
    )
    bad_time = json.loads(text)
    bad_time["MetricDataResults"][0]["Timestamps"][1] = "yesterday"
    message = error_of(tmp_path, json.dumps(bad_time, indent=2))
    assert message == "line 8: 'yesterday' is not a timestamp"
    bad_value = json.loads(text)
    bad_value["MetricDataResults"][0]["Values"][2] = -4
    assert (
        error_of(tmp_path, json.dumps(bad_value, indent=2))
        == "line 14: value -4 is not a count or duration"
    )
    short = json.loads(text)
    short["MetricDataResults"][0]["Values"].pop()
    assert error_of(tmp_path, json.dumps(short, indent=2)).startswith(
        "line 3: series 'MatchedEvents' has 3 Timestamps but 2 Values"
    )
    repeated = json.loads(text)
    repeated["MetricDataResults"][0]["Timestamps"][2] = repeated["MetricDataResults"][0][
        "Timestamps"
    ][0]
    assert error_of(tmp_path, json.dumps(repeated, indent=2)) == (
        "line 9: series 'MatchedEvents' repeats the timestamp of line 7"
    )
    assert (
        error_of(tmp_path, '{"MetricDataResults": [7]}')
        == "line 1: a MetricDataResults entry must be an object"
    )


def test_a_csv_export(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text(
        "Timestamp,orders MatchedEvents,orders InvocationAttempts\n"
        "2026-01-01 00:00:00,10,11\n2026-01-01 00:01:00,,3\n2026-01-01 00:02:00,5,x\n"
    )
    with pytest.raises(
        ValueError, match=r"line 4: column 'orders InvocationAttempts': 'x' is not a number"
    ):
        read_metric_data(path)
    path.write_text(path.read_text().replace(",x", ",6"))
    data = read_metric_data(path)
    assert data.select("MatchedEvents").values.tolist() == [10, 5]
    assert data.select("InvocationAttempts", "orders").values.tolist() == [11, 3, 6]


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False)
        | st.integers()
        | st.text(max_size=6),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["MetricDataResults", "Id", "Label", "Timestamps", "Values", "x"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_reads_or_fails_with_one_value_error(tmp_path_factory: Any, document: Any):
    path = tmp_path_factory.mktemp("fuzz") / "m.json"
    path.write_text(json.dumps(document))
    try:
        read_metric_data(path)
    except ValueError as err:
        assert str(err).startswith(f"{path}: line ")


# --- the counts arrival source, from the JSON directly -------------------------------------


def counts_scenario(path: Path, **source: Any) -> Any:
    data = {
        "name": "json",
        "horizon": "1h",
        "arrivals": [{"kind": "counts", "path": path.name, **source}],
        "endpoint": {"latency": {"kind": "constant", "value": "10ms"}},
    }
    return build_scenario(data, source="s.yaml", base_dir=path.parent)


def test_counts_read_matched_events_from_the_json_with_missing_minutes_as_zero(tmp_path: Path):
    doc = response(
        [
            series("orders MatchedEvents", [0, 1, 2, 3, 7, 8], [600] * 6),
            series("orders InvocationAttempts", [0], [1], id_="m2"),
        ]
    )
    path = write(tmp_path / "metrics.json", doc)
    (source,) = counts_scenario(path).arrivals
    edges, rates = source.bins
    assert edges.tolist() == [0, 60, 120, 180, 240, 420, 480, 540]
    assert rates.tolist() == [10, 10, 10, 10, 0, 10, 10]
    assert expected_count([source], 3600.0) == 3600
    (attempts,) = counts_scenario(
        path, metric="InvocationAttempts", rule="orders", bin="1m"
    ).arrivals
    assert attempts.bins[1].tolist() == [1 / 60]


def test_counts_from_json_are_checked_with_the_scenario_key(tmp_path: Path):
    doc = response(
        [series("a MatchedEvents", [0, 1], [1, 2]), series("b MatchedEvents", [0], [3], id_="m2")]
    )
    path = write(tmp_path / "metrics.json", doc)
    with pytest.raises(InputError) as caught:
        counts_scenario(path)
    assert caught.value.key == "arrivals.0"
    assert "series of several rules (a, b); choose one" in caught.value.problem
    assert counts_scenario(path, rule="b").arrivals[0].bins[1].tolist() == [3 / 60]
    with pytest.raises(InputError, match="has no columns: select its series with `metric`"):
        counts_scenario(path, rule="a", time_column="t")
    csv = tmp_path / "c.csv"
    csv.write_text("t,n\n0,1\n60,2\n")
    with pytest.raises(
        InputError, match="`metric` and `rule` select a series of a GetMetricData JSON"
    ):
        counts_scenario(csv, metric="MatchedEvents", time_column="t", count_column="n")
    with pytest.raises(InputError, match="a counts CSV needs `time_column` and `count_column`"):
        counts_scenario(csv)
    latency = write(
        tmp_path / "l.json", response([series("IngestionToInvocationSuccessLatency", [0], [5.0])])
    )
    with pytest.raises(InputError, match="is not a count of events"):
        counts_scenario(latency, metric="IngestionToInvocationSuccessLatency")
