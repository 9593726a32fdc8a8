"""`sim core run --durability normal|full` keeps its promise (issue 15, design §9).

* **normal** (SQLite WAL, `synchronous=NORMAL`): every event PutEvents acknowledged survives
  a crash of the process. Tested for both modes: boto3 clients send events until the core
  is SIGKILLed at a random moment; every acknowledged event must be in the database.
* **full** (`synchronous=FULL`): in addition the WAL is synced to the disk (fsync or
  fdatasync) before an event is acknowledged, so it survives a power loss or OS crash too.
  A power cut cannot be tested on one machine; what can be is that the sync really happens
  before each acknowledgement: the core runs under `strace`, one client sends events one at
  a time, and between any two acknowledgements (the `HTTP/1.1 200` sent back) there must be
  a sync — while under `normal` there is almost never one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from tests.support.processes import core_config_data

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("SIM_DURABILITY_SEED", str(random.randrange(10**6))))


def _config(path: Path) -> Path:
    """Events match one target whose tiny rate limit keeps them pending: the test is about
    accepting, not delivering."""
    data = core_config_data("http://127.0.0.1:9/", rate=0.001, source="durability")
    path.write_text(yaml.safe_dump(data))
    return path


def _start(args: list[str], prefix: list[str] | None = None) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "sim", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("listening for PutEvents on "):
            return process, line.split()[-1]
    process.wait()
    raise AssertionError("the core did not start: " + "".join(lines))


def _client(url: str) -> Any:
    return boto3.client(
        "events", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def _entry(marker: str) -> dict[str, str]:
    return {"Source": "durability", "DetailType": "t", "Detail": json.dumps({"marker": marker})}


@pytest.mark.parametrize("mode", ["normal", "full"])
def test_every_acknowledged_event_survives_kill_9(tmp_path: Path, mode: str) -> None:
    rng = random.Random(f"{SEED}-{mode}")
    db = tmp_path / "core.db"
    args = ["core", "run", str(_config(tmp_path / "core.yaml")), "--db", str(db),
            "--listen", "127.0.0.1:0", "--durability", mode]  # fmt: skip
    process, url = _start(args)
    acknowledged: dict[str, str] = {}  # marker -> EventId
    lock, killed = threading.Lock(), threading.Event()

    def send(worker: int) -> None:
        events = _client(url)
        for n in range(10**6):
            if killed.is_set():
                return
            marker = f"{worker}-{n}"
            try:
                response = events.put_events(Entries=[_entry(marker)])
            except Exception:  # the core is gone
                return
            with lock:
                acknowledged[marker] = response["Entries"][0]["EventId"]

    workers = [threading.Thread(target=send, args=(w,), daemon=True) for w in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.05, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    killed.set()
    for worker in workers:
        worker.join(30)

    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {
            json.loads(body)["detail"]["marker"]: event_id
            for event_id, body in connection.execute("SELECT event_id, body FROM events")
        }
        pending = connection.execute(
            "SELECT count(*) FROM deliveries WHERE state='pending'"
        ).fetchone()[0]
    lost = {m for m in acknowledged if stored.get(m) != acknowledged[m]}
    assert len(acknowledged) >= 100, f"seed {SEED}: only {len(acknowledged)} acknowledged"
    assert not lost, f"seed {SEED}: {len(lost)} of {len(acknowledged)} acknowledged events lost"
    assert pending == len(stored)  # each with its delivery


def _syncs_between_acknowledgements(trace: str) -> tuple[int, list[int]]:
    """(acknowledgements, syncs counted before each one since the previous) from strace -f."""
    counts: list[int] = []
    syncs = 0
    for line in trace.splitlines():
        if re.search(r"\b(fsync|fdatasync)\(", line) and "= 0" in line:
            syncs += 1
        elif re.search(r"\b(sendto|write|writev|sendmsg)\(\d+, .*HTTP/1\.1 200", line):
            counts.append(syncs)
            syncs = 0
    return len(counts), counts


def _traced_run(tmp_path: Path, mode: str, n_events: int) -> tuple[int, list[int]]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    trace = tmp_path / f"{mode}.strace"
    args = ["core", "run", str(_config(tmp_path / "core.yaml")), "--db", str(tmp_path / f"{mode}.db"),
            "--listen", "127.0.0.1:0", "--durability", mode, "--loop", "asyncio"]  # fmt: skip
    prefix = [strace, "-f", "-qq", "-s", "16", "-e", "trace=fsync,fdatasync,sendto,write,writev,sendmsg",
              "-o", str(trace)]  # fmt: skip
    try:
        process, url = _start(args, prefix)
    except AssertionError as err:
        if "Operation not permitted" in str(err) or "ptrace" in str(err):
            pytest.skip(f"strace cannot trace here: {err}")
        raise
    events = _client(url)
    for n in range(n_events):  # one at a time: each acknowledgement is its own commit
        events.put_events(Entries=[_entry(f"{mode}-{n}")])
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGTERM)  # the core (strace would only detach)
    process.communicate(timeout=60)
    return _syncs_between_acknowledgements(trace.read_text(errors="replace"))


def test_full_syncs_the_wal_before_each_acknowledgement_and_normal_does_not(tmp_path: Path) -> None:
    n_events = 60
    acks_full, syncs_full = _traced_run(tmp_path, "full", n_events)
    acks_normal, syncs_normal = _traced_run(tmp_path, "normal", n_events)
    assert acks_full == n_events and acks_normal == n_events
    assert all(count >= 1 for count in syncs_full), syncs_full  # a sync before every ack
    assert sum(1 for count in syncs_normal if count) < n_events / 4, syncs_normal
