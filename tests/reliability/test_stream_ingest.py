"""Events streamed on stdin (`sim core run --events -`) are accepted as they arrive.

A producer that writes one event and then waits must see it delivered without closing
stdin — a batch is whatever has arrived, not a fixed number of lines — and a bad line later
in the stream ends the run with one error line while the events before it stay delivered.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.live import ThreadedEndpoint
from tests.support.processes import (
    assert_one_error_line,
    core_config_data,
    sim_process,
    write_yaml,
)

pytestmark = pytest.mark.live


def _line(n: int) -> str:
    return json.dumps({"source": "test", "detail-type": "t", "detail": {"n": n}}) + "\n"


def _wait_for(predicate: object, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_a_slow_producer_is_delivered_without_closing_stdin(tmp_path: Path) -> None:
    with ThreadedEndpoint() as endpoint:
        config = write_yaml(tmp_path / "core.yaml", core_config_data(endpoint.url))
        process = sim_process(
            "core", "run", str(config), "--db", str(tmp_path / "core.db"), "--events", "-",
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdin is not None and process.stderr is not None
        try:
            for n in range(3):
                process.stdin.write(_line(n))
                process.stdin.flush()
                assert _wait_for(lambda n=n: len(endpoint.received) > n, 5.0), n
            process.stdin.write("{not json\n")
            process.stdin.flush()
            assert process.wait(10) == 2
            stderr = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdin.close()
            process.stderr.close()
    assert sorted(r["n"] for r in endpoint.received) == [0, 1, 2]
    assert_one_error_line(stderr, "<stdin>", "line 4")
