"""Fuzzing scenario files (design §9): every input ends as a valid model or as one error line.

Hypothesis mutates a valid scenario — a key set to a wrong type, a negative, huge or
non-finite number, an invalid duration, a response mix that does not sum to 1, a deleted
required key, an unknown key — and also feeds whole documents that are not scenarios at all:
random text and bytes, non-UTF-8, deeply nested, huge and alias-bomb YAML. Each case must give
either a `Scenario` whose numbers are all finite, or an `InputError` naming the file; through
the CLI, exit code 2 with exactly one line `error: FILE: [KEY: ]problem` and no report folder.
A few cases also run through a real `python -m sim` subprocess.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.scenario.loading import load_scenario, set_path
from sim.scenario.model import Scenario
from tests.support.processes import all_finite, assert_one_error_line, fuzz_settings, run_sim

pytestmark = pytest.mark.slow

runner = CliRunner()
FUZZ = fuzz_settings(150)

BASE: dict[str, Any] = {
    "name": "fuzz",
    "horizon": "10m",
    "seed": 7,
    "replications": 2,
    "arrivals": [
        {"kind": "constant", "rate_per_second": 20},
        {"kind": "burst", "start": "1m", "duration": "30s", "rate_per_second": 100},
        {"kind": "diurnal", "mean_per_second": 5, "amplitude": 0.5, "peak_at": "14h"},
    ],
    "destination": {
        "name": "partner",
        "invocation_rate_limit_per_second": 50,
        "burst_capacity": 10,
        "timeout": "5s",
        "throttle_order": "fifo",
    },
    "endpoint": {
        "latency": {"kind": "lognormal", "median": "120ms", "p99": "900ms"},
        "responses": {200: 0.98, 429: 0.01, 503: 0.01},
        "timeout_probability": 0.002,
        "retry_after": {429: "30s"},
        "capacity": {"concurrency": 20, "queue": 40, "overload_status": 503},
        "incidents": [{"start": "2m", "duration": "1m", "responses": {503: 1.0}}],
    },
    "retry_policy": {
        "maximum_event_age": "1h",
        "maximum_retry_attempts": 10,
        "backoff": {"base": "1s", "multiplier": 2, "cap": "1m", "jitter": "full"},
        "retry_statuses": [409, 429, "5xx"],
    },
    "dead_letter_queue": True,
    "sample_every": "1m",
    "slo": {"max_p99_delivery_delay": "5m", "max_dropped_fraction": 0, "max_dlq_fraction": 0.01},
}


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        yield from _paths(item, path)


PATHS = sorted(_paths(BASE))

DURATION_TEXT = st.sampled_from(
    ["5 parsecs", "-5s", "1h-", "ms", "1e400", "nan", "inf", "-inf", "10x", "", "  ", "5s5",
     "1d2h3m4s5ms", "-0s", "0", "1e-320", "99999999999999999999d", "1.5.5s", "s", "--5s", "5S"]
)  # fmt: skip
HUGE = st.sampled_from([1e308, -1e308, 10**30, -(10**30), 2**63, -(2**63), 1e-320, 10**400])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    DURATION_TEXT,
    HUGE,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6) | st.integers(100, 599), children, max_size=3)
    ),
    max_leaves=6,
)
MIXES = st.dictionaries(
    st.integers(-5, 700) | st.sampled_from(["2xx", "abc", "200"]),
    st.floats(-1, 2) | st.sampled_from([0.5, 0.25, 1e-9]),
    max_size=5,
)


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[_key(data, part)]
    return data


def _key(mapping: dict[Any, Any], part: str) -> Any:
    return int(part) if part.isdigit() and int(part) in mapping else part


def _delete(data: Any, path: str) -> None:
    parent, _, last = path.rpartition(".")
    node = _get(data, parent) if parent else data
    if isinstance(node, list):
        node.pop(int(last))
    else:
        node.pop(_key(node, last))


@st.composite
def mutated_scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """The base scenario with 1-3 mutations; returns it with the key paths touched."""
    data = copy.deepcopy(BASE)
    touched: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "mix"]))
        paths = sorted(_paths(data))
        try:
            if kind == "set" and paths:
                path = draw(st.sampled_from(paths))
                set_path(data, path, draw(VALUES))
            elif kind == "delete" and paths:
                path = draw(st.sampled_from(paths))
                _delete(data, path)
            elif kind == "unknown":
                mappings = [""] + [p for p in paths if isinstance(_get(data, p), dict)]
                parent = draw(st.sampled_from(mappings))
                name = draw(st.sampled_from(["sead", "rate", "Timeout", "extra", "kind2"]))
                path = f"{parent}.{name}" if parent else name
                set_path(data, path, draw(SCALARS))
            else:
                path = draw(
                    st.sampled_from(["endpoint.responses", "endpoint.incidents.0.responses"])
                )
                set_path(data, path, draw(MIXES))
        except (InputError, LookupError, TypeError, AttributeError):
            continue  # an earlier mutation replaced a parent of this path: nothing to mutate
        touched.append(path)
    return data, touched


def check_file(path: Path, out: Path) -> Scenario | InputError:
    """The core property, through the library and through `sim check` / `sim run`."""
    try:
        scenario = load_scenario(path)
    except InputError as err:
        assert err.source == str(path)
        assert "\n" not in err.line() and err.problem.strip()
        check = runner.invoke(app, ["check", str(path)])
        assert check.exit_code == 2, check.output
        assert_one_error_line(check.stderr, str(path))
        run = runner.invoke(app, ["run", str(path), "--out", str(out)])
        assert run.exit_code == 2, run.output
        assert run.stderr == check.stderr
        assert not out.exists()  # never a partial report folder
        return err
    assert isinstance(scenario, Scenario)
    assert all_finite(scenario.model_dump())
    check = runner.invoke(app, ["check", str(path)])
    assert check.exit_code == 0, check.output
    return scenario


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@FUZZ
@given(case=mutated_scenarios())
def test_mutated_scenarios_load_or_fail_with_one_line(
    folder: Path, case: tuple[dict[str, Any], list[str]]
) -> None:
    data, touched = case
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = check_file(path, folder / "report")
    if isinstance(result, InputError) and len(touched) == 1 and result.key:
        # The error names the key that was broken (or the section holding it).
        mutated, named = touched[0].split("."), result.key.split(".")
        assert mutated[0] == named[0] or "sample_every" in result.problem, (touched, result)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_is_a_scenario_or_one_error_line(folder: Path, text: str) -> None:
    path = folder / "text.yaml"
    path.write_text(text, encoding="utf-8")
    check_file(path, folder / "report")


@FUZZ
@given(blob=st.binary(max_size=300))
def test_any_bytes_are_a_scenario_or_one_error_line(folder: Path, blob: bytes) -> None:
    path = folder / "bytes.yaml"
    path.write_bytes(blob)
    check_file(path, folder / "report")


def _alias_bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


WHOLE_DOCUMENTS = {
    "empty": "",
    "null": "null\n",
    "a-list": "- 1\n- 2\n",
    "a-string": "just words\n",
    "tabs": "name:\tx\n\thorizon: 1h\n",
    "duplicate-anchor-use": "name: &n x\nhorizon: *n\n",
    "unclosed-quote": 'name: "x\n',
    "deep-lists": "[" * 20_000 + "]" * 20_000,
    "deep-maps": "slo: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
    "alias-bomb-top": _alias_bomb(),
    "alias-bomb-in-arrivals": _alias_bomb() + "name: x\nhorizon: 1h\narrivals: *l8\n"
    "endpoint: {latency: {kind: constant, value: 1ms}}\n",
    "huge-name": f"name: {'x' * 1_000_000}\n",
    "many-arrivals": "name: x\nhorizon: 1h\nendpoint: {latency: {kind: constant, value: 1ms}}\n"
    "arrivals:\n" + "  - {kind: constant, rate_per_second: -1}\n" * 2_000,
    "many-unknown-keys": "".join(f"k{i}: {i}\n" for i in range(5_000)),
    "int-over-4300-digits": "name: x\nreplications: " + "9" * 5_000 + "\n",
    "impossible-date": "name: x\nhorizon: 2025-13-45\n",
}


@pytest.mark.parametrize("text", WHOLE_DOCUMENTS.values(), ids=WHOLE_DOCUMENTS.keys())
def test_documents_that_are_not_scenarios(tmp_path: Path, text: str) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text(text, encoding="utf-8")
    assert isinstance(check_file(path, tmp_path / "report"), InputError)


@pytest.mark.parametrize(
    "blob",
    [
        b"name: caf\xe9\nhorizon: 1h\n",  # Latin-1, not UTF-8
        b"\xff\xfename: x\n",  # a UTF-16 byte-order mark
        b"name: x\x00\nhorizon: 1h\n",  # NUL
        "name: x\nhorizon: 1h\n".encode("utf-16"),
    ],
    ids=["latin-1", "utf-16-bom", "nul-byte", "utf-16"],
)
def test_non_utf8_files(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "enc.yaml"
    path.write_bytes(blob)
    assert isinstance(check_file(path, tmp_path / "report"), InputError)


BAD_VALUES = [
    ("horizon", "-1h", "horizon"),
    ("horizon", ".inf", "horizon"),
    ("horizon", "3618993354s", "horizon"),  # found by fuzzing: sim check tried 27 GiB
    ("endpoint.latency.median", str(10**400), "endpoint.latency.median"),  # OverflowError
    ("endpoint.incidents.0.start", "1.7e305", "endpoint.incidents.0.start"),  # sim check died
    ("arrivals.0.rate_per_second", ".inf", "arrivals.0.rate_per_second"),
    ("arrivals.0.rate_per_second", "1e300", "arrivals.0.rate_per_second"),
    ("arrivals.0.rate_per_second", ".nan", "arrivals.0.rate_per_second"),
    ("arrivals.0.rate_per_second", "-3", "arrivals.0.rate_per_second"),
    ("endpoint.timeout_probability", "1.5", "endpoint.timeout_probability"),
    ("endpoint.responses", "{200: 0.5, 503: 0.4}", "endpoint.responses"),
    ("endpoint.latency", "{kind: gamma, mean: 1s, cv: 1e300}", "endpoint.latency.cv"),
    ("endpoint.latency", "{kind: gamma, mean: 1s, cv: 1e-300}", "endpoint.latency.cv"),
    ("endpoint.capacity.concurrency", str(10**18), "endpoint.capacity.concurrency"),
    ("retry_policy.maximum_retry_attempts", "186", "retry_policy.maximum_retry_attempts"),
    ("retry_policy.backoff.base", "5 parsecs", "retry_policy.backoff.base"),
    ("destination.burst_capacity", ".inf", "destination.burst_capacity"),
    ("slo.max_dropped_fraction", ".nan", "slo.max_dropped_fraction"),
    ("seed", "-1", "seed"),
]


@pytest.mark.parametrize(
    ("key", "value", "named"), BAD_VALUES, ids=[b[0] + "=" + b[1] for b in BAD_VALUES]
)
def test_known_bad_values_name_their_key(tmp_path: Path, key: str, value: str, named: str) -> None:
    data = copy.deepcopy(BASE)
    set_path(data, key, yaml.safe_load(value))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    err = check_file(path, tmp_path / "report")
    assert isinstance(err, InputError) and err.key == named, err


def test_bad_csv_and_scenario_through_a_real_subprocess(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_bytes(b"arrival_s\n1.0\n\xff\xfe\n")
    data = copy.deepcopy(BASE)
    data["arrivals"] = [{"kind": "trace", "path": "trace.csv", "column": "arrival_s"}]
    path = tmp_path / "csv.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "report"
    code, stdout, stderr = run_sim("run", str(path), "--out", str(out))
    assert code == 2 and stdout == ""
    line = assert_one_error_line(stderr, str(path), "arrivals.0")
    assert str(trace) in line and "UTF-8" in line
    assert not out.exists()

    path.write_text(
        "name: x\nhorizon: 1h\narrivals: [{kind: constant, rate_per_second: .inf}]\n"
        "endpoint: {latency: {kind: constant, value: 1ms}}\n"
    )
    code, stdout, stderr = run_sim("check", str(path))
    assert code == 2
    assert_one_error_line(stderr, str(path), "arrivals.0.rate_per_second")

    path.write_text(_alias_bomb() + "name: x\n")
    code, _, stderr = run_sim("run", str(path), "--out", str(out), timeout=30)
    assert code == 2 and not out.exists()
    assert_one_error_line(stderr, str(path))
