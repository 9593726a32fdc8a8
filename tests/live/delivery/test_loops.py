"""`sim.live.delivery.loops`: the same coroutine runs on asyncio's loop or uvloop; bad names are refused."""

from __future__ import annotations

import asyncio

import pytest

from sim.live.delivery import loops


async def loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_runs_on_the_standard_loop() -> None:
    assert loops.run(loop_module(), "asyncio").startswith("asyncio")


def test_uvloop_runs_on_uvloop_and_is_the_default_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert loops.run(loop_module(), "uvloop").startswith("uvloop")
    assert loops.default_loop() == "uvloop"
    assert loops.run(loop_module()).startswith("uvloop")


def test_an_unknown_loop_is_refused_before_the_coroutine_starts() -> None:
    main = loop_module()
    with pytest.raises(ValueError, match="'tokio' is not an event loop"):
        loops.run(main, "tokio")
    assert main.cr_frame is None  # closed, so no "coroutine was never awaited" warning
    assert loops.check_loop("asyncio") == "asyncio"


def test_uvloop_is_refused_when_it_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "has_uvloop", lambda: False)
    with pytest.raises(ValueError, match="uvloop is not installed"):
        loops.check_loop("uvloop")
    assert loops.default_loop() == "asyncio"
