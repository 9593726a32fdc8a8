"""The event loop the live core and the local endpoint run on: asyncio's own, or uvloop.

uvloop (libuv) runs the same asyncio code with less per-callback overhead and less scheduling
jitter; it changes no delivery decision. It is the default where it is installed (Linux and
macOS wheels); `asyncio` is always available.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

LOOPS = ("asyncio", "uvloop")
T = TypeVar("T")


def has_uvloop() -> bool:
    """True when uvloop can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def default_loop() -> str:
    """`uvloop` when it is installed, else `asyncio`."""
    return "uvloop" if has_uvloop() else "asyncio"


def check_loop(name: str | None) -> str:
    """The loop to use for `name` (None: the default); ValueError if unknown or missing."""
    if name is None:
        return default_loop()
    if name not in LOOPS:
        raise ValueError(f"{name!r} is not an event loop (use {' or '.join(LOOPS)})")
    if name == "uvloop" and not has_uvloop():
        raise ValueError("uvloop is not installed (pip install uvloop, or use asyncio)")
    return name


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """Run `main` to completion on a new event loop of kind `loop` (see `check_loop`)."""
    try:
        name = check_loop(loop)
    except ValueError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    if name == "asyncio":
        return asyncio.run(main)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
