"""The engine's allocation settings (sim.des.memory): each checked in a fresh process, by what
the allocator then does, since they are process-wide and cannot be undone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support import ROOT

SCENARIO = ROOT / "scenarios" / "burst.yaml"

# glibc's mallinfo2 (2.33+): hblks counts the allocations currently held as separate mappings
PROBE = textwrap.dedent(
    """
    import ctypes, json, os, sys
    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    from sim.des.memory import tune_allocation
    from numpy._core.multiarray import _set_madvise_hugepage

    tuned = tune_allocation() if sys.argv[1] == "tune" else None
    if sys.argv[1] == "engine":  # a minute of a shipped scenario, through the engine
        from sim.runner.replications import run_one
        from sim.scenario.loading import load_scenario, with_overrides
        run_one(with_overrides(load_scenario(sys.argv[2]), {"horizon": "1m"}), 0)
    before = libc.mallinfo2().hblks
    array = np.ones(2 * 1024 * 1024)  # 16 MiB
    mapped = libc.mallinfo2().hblks - before
    del array
    huge_pages_were_on = _set_madvise_hugepage(True)
    print(json.dumps({"tuned": tuned, "mapped": mapped, "huge": huge_pages_were_on}))
    """
)


def _probe(mode: str, **env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(SCENARIO)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


glibc = pytest.mark.skipif(
    not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
    reason="glibc only",
)


@glibc
def test_untuned_process_maps_large_arrays_and_asks_for_huge_pages():
    probe = _probe("plain")
    assert probe["mapped"] == 1
    assert probe["huge"] is True


@glibc
def test_tuned_process_keeps_large_arrays_in_the_heap_without_huge_pages():
    probe = _probe("tune")
    assert probe["tuned"] == {"heap": True, "no_huge_pages": True}
    assert probe["mapped"] == 0
    assert probe["huge"] is False


@glibc
def test_tuning_can_be_turned_off():
    probe = _probe("tune", SIM_MEMORY_TUNING="off")
    assert probe["tuned"] == {"heap": False, "no_huge_pages": False}
    assert probe["mapped"] == 1
    assert probe["huge"] is True


@glibc
def test_the_engine_tunes_the_process_it_runs_in():
    probe = _probe("engine")
    assert probe["mapped"] == 0
    assert probe["huge"] is False
