"""The scenario file: every key of design §4, strict validation, CSV inputs, overrides."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.errors import InputError
from sim.scenario.loading import load_scenario
from tests.support import ROOT
from tests.support.builders import DESIGN_EXAMPLE


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "per-minute.csv").write_text(
        "timestamp,events\n2026-01-01T00:00:00Z,60\n2026-01-01T00:01:00Z,120\n"
        "2026-01-01T00:02:00Z,0\n"
    )
    (tmp_path / "arrivals.csv").write_text("arrival_s\n0.5\n0.1\n2.25\n")
    (tmp_path / "s.yaml").write_text(DESIGN_EXAMPLE)
    return tmp_path


def test_design_example_validates_with_every_key(folder):
    s = load_scenario(folder / "s.yaml")
    assert s.horizon == 86400 and s.destination.burst == 300
    assert s.endpoint.incidents[0].responses == {503: 1.0}
    assert s.retry_policy.retry_statuses == [409, 429, "5xx"]
    counts = s.arrivals[3]
    edges, rates = counts.bins
    assert edges.tolist() == [0, 60, 120, 180] and rates.tolist() == [1.0, 2.0, 0.0]
    assert s.arrivals[4].times.tolist() == [0.1, 0.5, 2.25]
    mu, sigma = s.endpoint.latency.log_params
    assert np.exp(mu) == pytest.approx(0.12) and np.exp(
        mu + 2.3263478740408408 * sigma
    ) == pytest.approx(0.9)


def test_resolved_scenario_round_trips(folder, tmp_path):
    s = load_scenario(folder / "s.yaml")
    copy = tmp_path / "resolved.yaml"
    copy.write_text(yaml.safe_dump(s.resolved()))
    assert load_scenario(copy) == s


def test_defaults_follow_aws_and_design(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text(
        "horizon: 1h\narrivals: [{kind: constant, rate_per_second: 1}]\n"
        "endpoint: {latency: {kind: constant, value: 10ms}}\n"
    )
    s = load_scenario(path)
    assert s.name == "minimal"
    assert s.destination.invocation_rate_limit_per_second == 300 and s.destination.burst == 300
    assert s.destination.timeout == 5 and s.destination.throttle_order == "fifo"
    assert (
        s.retry_policy.maximum_event_age == 86400 and s.retry_policy.maximum_retry_attempts == 185
    )
    b = s.retry_policy.backoff
    assert (b.base, b.multiplier, b.cap, b.jitter) == (1, 2, 900, "full")
    assert s.endpoint.responses == {200: 1.0} and s.dead_letter_queue is False


BAD = [
    ("unknown_key", "endpoint.latency.foo=1", "endpoint.latency.foo: unknown key"),
    ("bad_duration", "arrivals.1.start=soon", "arrivals.1.start: 'soon' is not a duration"),
    ("mix_sum", "endpoint.responses.200=0.5", "endpoint.responses: response probabilities sum to"),
    ("bad_status", "endpoint.responses={99: 1}", "endpoint.responses.99"),
    ("retry_class", "retry_policy.retry_statuses=[6xx]", "retry_policy.retry_statuses.0"),
    ("retry_2xx", "retry_policy.retry_statuses=[2xx]", "2xx means delivered"),
    ("age_low", "retry_policy.maximum_event_age=59s", "retry_policy.maximum_event_age"),
    ("age_high", "retry_policy.maximum_event_age=25h", "retry_policy.maximum_event_age"),
    ("attempts_high", "retry_policy.maximum_retry_attempts=186", "maximum_retry_attempts"),
    ("attempts_negative", "retry_policy.maximum_retry_attempts=-1", "maximum_retry_attempts"),
    ("kind", "arrivals.0.kind=poisson", "arrivals.0: kind 'poisson'"),
    ("lognormal_params", "endpoint.latency.mu=1", "give either median and p99, or mu and sigma"),
    ("burst_below_one", "destination.burst_capacity=0.5", "destination.burst_capacity"),
    ("name", "destination.name=a b", "destination.name"),
    ("empty_incident", "endpoint.incidents.0.responses=null", "an incident must override"),
    ("missing_list_item", "arrivals.9.rate_per_second=1", "arrivals.9: no list item 9"),
    ("sample_vs_horizon", "sample_every=2d", "sample_every is longer than the horizon"),
]


@pytest.mark.parametrize(("override", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_file_key_and_problem(folder, override, expected):
    with pytest.raises(InputError) as caught:
        load_scenario(folder / "s.yaml", [override])
    line = str(caught.value)
    assert line.startswith(str(folder / "s.yaml") + ": ")
    assert expected in line and "\n" not in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "timestamp,events\n2026-01-01T00:00:00Z,abc\n2026-01-01T00:01:00Z,1\n",
            "'abc' is not a finite number",
        ),
        ("timestamp,count\n0,1\n60,2\n", "no column 'events'"),
        ("timestamp,events\n0,1\n60,-2\n", "negative count"),
        ("timestamp,events\nyesterday,1\n60,2\n", "neither seconds nor a timestamp"),
        ("timestamp,events\n0,1\n60,2\n2m,3\n", "line 4: '2m' is neither seconds nor a timestamp"),
        (b"timestamp,events\n0,\xff\n", "not UTF-8"),
        ("", "not a readable CSV"),
    ],
)
def test_bad_csv_is_reported_with_its_file(folder, content, expected):
    csv = folder / "per-minute.csv"
    csv.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as caught:
        load_scenario(folder / "s.yaml")
    assert "arrivals.3" in str(caught.value) and expected in str(caught.value)
    assert "per-minute.csv" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "invalid YAML: line 1"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path, text, expected):
    path = tmp_path / "x.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=expected):
        load_scenario(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_scenario(tmp_path / "absent.yaml")


def test_overrides_parse_values_as_yaml_and_merge_status_keys(folder):
    s = load_scenario(
        folder / "s.yaml",
        [
            "endpoint.responses.200=0.974",
            "endpoint.responses.500=0.01",
            "destination.invocation_rate_limit_per_second=null",
            "horizon=2h",
        ],
    )
    assert s.endpoint.responses[200] == 0.974 and s.endpoint.responses[500] == 0.01
    assert s.destination.invocation_rate_limit_per_second is None and s.horizon == 7200


def test_shipped_scenarios_validate():
    root = ROOT / "scenarios"
    files = sorted(root.rglob("*.yaml"))
    assert {"burst.yaml", "steady.yaml", "outage.yaml", "ref-24h.yaml"} <= {f.name for f in files}
    for path in files:
        load_scenario(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("endpoint.responses={100: 0.5, 200: 0.5}", "cannot answer with 1xx"),
        ("endpoint.retry_after={429: 1500ms}", "Retry-After carries whole seconds"),
    ],
)
def test_endpoint_behaviour_must_be_servable_over_http(folder, override, expected):
    with pytest.raises(InputError, match=expected):
        load_scenario(folder / "s.yaml", [override])
