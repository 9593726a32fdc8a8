"""Worker processes: started once and reused, and fed scenarios whose
CSV inputs travel with them (no worker reads an input file again)."""

import os
import pickle
import shutil
import time
from pathlib import Path

import pytest

from sim.runner.executor import Executor
from sim.runner.replications import run_one, run_replications
from sim.scenario import csv_inputs
from sim.scenario.loading import load_scenario

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _pid() -> int:
    time.sleep(0.3)  # long enough that every worker takes some of the tasks
    return os.getpid()


@pytest.mark.slow
def test_the_pool_is_started_once_and_reused():
    first = set(Executor(2).gather(_pid, [()] * 6))
    again = set(Executor(2).gather(_pid, [()] * 7))  # another Executor, another task count
    assert os.getpid() not in first and len(first) == 2
    assert again == first  # same processes: nothing restarted


@pytest.mark.slow
def test_inputs_are_read_once_and_travel_with_the_scenario(tmp_path, monkeypatch):
    for name in ("inputs.yaml", "counts.csv", "trace.csv", "latency.csv"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    scenario = load_scenario(tmp_path / "inputs.yaml")
    for name in ("counts.csv", "trace.csv", "latency.csv"):
        (tmp_path / name).unlink()  # a worker reading them again would fail

    def refuse(*args, **kwargs):
        raise AssertionError("an input file was read again")

    monkeypatch.setattr(csv_inputs, "_read_csv", refuse)
    copy = pickle.loads(pickle.dumps(scenario))  # what a worker receives
    assert run_one(copy, 0).summary == run_one(scenario, 0).summary
    results = run_replications(scenario, workers=2)  # real worker processes, files gone
    assert [r.summary["events_arrived"] for r in results] == [
        run_one(scenario, i).summary["events_arrived"] for i in range(scenario.replications)
    ]
