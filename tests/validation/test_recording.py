"""`sim validate --record-live / --replay-live`: a live run saved to one file and validated again
without a new live run, giving exactly the verdict and T of the validation that recorded it.

`data/tiny.npz` (10 s) and `data/steady-errors.npz` (60 s, the CI scenario) are real live runs,
recorded with the commands in `data/tiny.yaml` and in docs/validation.md."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.cli import app
from sim.errors import InputError
from sim.scenario.loading import build_scenario, load_scenario
from sim.validation import pipeline
from sim.validation.live import EVENT_HEADER, run_live
from sim.validation.overhead import measure
from sim.validation.recording import FORMAT, VERSION, load_live, save_live
from tests.support.processes import no_live_runs, one_error_line

DATA = Path(__file__).resolve().parent / "data"
TINY, STEADY = DATA / "tiny.npz", DATA / "steady-errors.npz"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "validation"


@pytest.fixture
def cli(monkeypatch):
    """The CLI, with any attempt at a new live run failing the test."""
    return no_live_runs(monkeypatch, "a replay must not start a live run")


def test_a_recording_holds_the_live_run_and_its_measurements():
    recording = load_live(TINY)
    live, meta = recording.live, recording.meta
    assert meta["format"] == FORMAT and meta["version"] == VERSION
    assert live.scenario == load_scenario(DATA / "tiny.yaml")
    assert live.replication == 10_000 and live.loop in ("asyncio", "uvloop")
    n = live.records["event_id"].size
    assert n > 300 and len(live.requests) == recording.overhead.n_requests > 300
    assert live.arrival_times.size == live.scheduled_at.size == live.submitted_at.size
    # the overhead stored is the overhead of these records and requests, to the bit
    fresh = measure(live)
    for name in ("dispatch_lag_s", "client_excess_s", "connect_s", "endpoint_lag_s"):
        np.testing.assert_array_equal(getattr(recording.overhead, name), getattr(fresh, name))
    assert (fresh.n_unmatched, fresh.n_orphans) == (0, 0)
    assert meta["overhead_figures"]["attempts_sent"] == fresh.n_sent
    # no header but the event id is kept: nothing secret can be in a recording
    assert all(set(r.headers) == {EVENT_HEADER} and not r.query for r in live.requests)
    assert meta["validation"]["verdict"] == "PASS" and meta["validation"]["replications"] == 100


def test_save_and_load_give_back_the_same_run(tmp_path):
    recording = load_live(TINY)
    copy = load_live(save_live(tmp_path / "copy.npz", recording.live, recording.overhead))
    a, b = recording.live, copy.live
    for name, column in a.records.items():
        assert column.dtype == b.records[name].dtype
        np.testing.assert_array_equal(column, b.records[name])
    for name in ("scheduled_at", "submitted_at", "arrival_times"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.requests == b.requests and a.event_of_delivery == b.event_of_delivery
    assert a.scenario == b.scenario and copy.recorded is None


@pytest.mark.slow
def test_replay_gives_the_recorded_verdict_and_t_exactly(cli, tmp_path):
    """The committed tiny run (10 s live, validated with 100 replications when recorded)."""
    recorded = load_live(TINY).recorded
    out = tmp_path / "replayed"
    result = cli.invoke(
        app, ["validate", "--replay-live", str(TINY), "--replications", "100", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "validation.json").read_text())
    assert document["statistic"] == recorded["statistic"]  # exactly: same floats, same model
    assert document["critical"] == recorded["critical"]
    assert document["verdict"] == recorded["verdict"] == "PASS"
    assert document["replayed_from"] == str(TINY)
    assert f"T = {recorded['statistic']:.2f}" in result.output
    assert "replayed from" in (out / "report.md").read_text()


@pytest.mark.slow
def test_replay_of_the_ci_scenario_gives_the_recorded_verdict_and_t(cli, tmp_path):
    """The committed 60 s live run of steady-errors, given with its scenario file."""
    recorded = load_live(STEADY).recorded
    args = ["validate", str(SCENARIOS / "steady-errors.yaml"), "--replay-live", str(STEADY)]
    args += ["--replications", str(recorded["replications"]), "--out", str(tmp_path / "r")]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert (document["statistic"], document["critical"], document["verdict"]) == (
        recorded["statistic"],
        recorded["critical"],
        recorded["verdict"],
    )


@pytest.mark.live
@pytest.mark.slow
def test_record_then_replay_a_fresh_live_run(tmp_path):
    """A new 5 s live run: the validation that records it and its replay agree on every item."""
    scenario = load_scenario(DATA / "tiny.yaml", ["horizon=5s"])
    path = tmp_path / "run.npz"
    live = run_live(scenario)
    first = pipeline.validate(scenario, replications=100, live=live, record=path)
    assert first.recorded_to == path
    recording = load_live(path)
    again = pipeline.validate(scenario, replications=100, replay=recording)
    assert again.comparison.statistic == first.comparison.statistic
    assert again.comparison.critical == first.comparison.critical
    assert again.verdict == first.verdict == recording.recorded["verdict"]
    assert [(i.name, i.live, i.z) for i in again.comparison.items] == [
        (i.name, i.live, i.z) for i in first.comparison.items
    ]
    assert recording.recorded["statistic"] == first.comparison.statistic


def test_a_replay_checks_the_scenario_it_is_given(cli, tmp_path):
    line = one_error_line(
        cli.invoke(
            app, ["validate", str(SCENARIOS / "steady-errors.yaml"), "--replay-live", str(TINY)]
        )  # fmt: skip
    )
    assert line.startswith(f"error: {TINY}: name: the recorded run differs from ")
    args = ["validate", str(DATA / "tiny.yaml"), "--replay-live", str(TINY)]
    line = one_error_line(cli.invoke(app, [*args, "--set", "destination.burst_capacity=20"]))
    assert line.startswith(f"error: {TINY}: destination.burst_capacity: ")
    assert "recorded 10.0, given 20.0" in line


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--record-live", "x.npz"], "--record-live"),
        (["--loop", "asyncio"], "--loop"),
        (["--set", "horizon=5s"], "--set"),
        (["--power-setting", "retry_policy.backoff.base"], "--power-setting"),
        (["--power", "--power-setting", "retry_policy.backoff.nonsense"], "--power-setting"),
    ],
)
def test_options_that_cannot_go_with_a_replay_exit_2(cli, args, flag):
    line = one_error_line(cli.invoke(app, ["validate", "--replay-live", str(TINY), *args]))
    assert line.startswith(f"error: {flag}: ")


def test_a_record_file_that_cannot_be_written_is_refused_before_the_live_run(cli, tmp_path):
    steady = str(SCENARIOS / "steady-errors.yaml")
    (tmp_path / "file").write_text("")
    for target, problem in ((tmp_path, "is a folder"), (tmp_path / "file" / "x.npz", "a file")):
        line = one_error_line(cli.invoke(app, ["validate", steady, "--record-live", str(target)]))
        assert line.startswith("error: --record-live: ") and problem in line
    two = ["validate", steady, steady, "--record-live", str(tmp_path / "x.npz")]
    assert one_error_line(cli.invoke(app, two)).startswith("error: --record-live: ")
    assert one_error_line(cli.invoke(app, ["validate"])).startswith("error: SCENARIO: ")


def rewritten(tmp_path: Path, change) -> Path:
    """tiny.npz with its arrays changed by `change(arrays)`, saved as another file."""
    with np.load(TINY, allow_pickle=False) as bundle:
        arrays = {name: bundle[name] for name in bundle.files}
    change(arrays)
    path = tmp_path / "changed.npz"
    np.savez_compressed(path, **arrays)
    return path


def with_meta(**changes):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta.update(changes)
        arrays["meta"] = np.array(json.dumps(meta))

    return change


BAD_FILES = {
    "missing": (lambda tmp: tmp / "missing.npz", "no such file"),
    "text": (lambda tmp: _write(tmp / "run.npz", b"arrival_s\n1.0\n"), "not a recorded live run"),
    "truncated": (lambda tmp: _write(tmp / "cut.npz", TINY.read_bytes()[:20_000]), "recorded"),
    "other npz": (lambda tmp: _npz(tmp, x=np.zeros(3)), "meta: missing"),
    "format": (lambda tmp: rewritten(tmp, with_meta(format="other")), "meta.format"),
    "version": (lambda tmp: rewritten(tmp, with_meta(version=99)), "version 99"),
    "no records": (
        lambda tmp: rewritten(tmp, lambda a: a.pop("records.dispatch_at")),
        "records.dispatch_at: missing",
    ),
    "lengths": (
        lambda tmp: rewritten(tmp, lambda a: a.update({"records.status": np.zeros(3, "int16")})),
        "differ in length",
    ),
    "scenario": (
        lambda tmp: rewritten(tmp, with_meta(scenario={"name": "x"})),
        "scenario: horizon: required key is missing",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npz(tmp: Path, **arrays) -> Path:
    np.savez(tmp / "other.npz", **arrays)
    return tmp / "other.npz"


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_recording_exits_2_with_one_line(cli, tmp_path, kind):
    make, problem = BAD_FILES[kind]
    path = make(tmp_path)
    line = one_error_line(cli.invoke(app, ["validate", "--replay-live", str(path)]))
    assert line.startswith(f"error: {path}") and problem in line, line
    with pytest.raises(InputError):
        load_live(path)


def test_the_file_is_a_plain_zip_of_named_arrays_and_json():
    """Self-describing: readable without sim (numpy, or any zip and .npy reader)."""
    names = zipfile.ZipFile(TINY).namelist()
    assert "meta.npy" in names and "records.dispatch_at.npy" in names
    with np.load(TINY, allow_pickle=False) as bundle:
        meta = json.loads(str(bundle["meta"]))
    assert set(meta["arrays"]) >= {"records.*", "requests.*", "overhead.*"}
    assert build_scenario(meta["scenario"], source="t").name == "tiny"
    assert yaml.safe_dump(meta["scenario"])  # plain data
