"""The machine a benchmark ran on: CPU model, cores, load, Python and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """1/5/15-minute load averages, to judge how busy the shared machine was."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def code_version() -> str:
    """The commit measured, flagging uncommitted changes under sim/ (they change the figures)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "sim"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in sim/' if dirty else ''}"


def machine_info() -> dict[str, str]:
    """What a figure depends on besides the code."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            mem_kb = int(handle.readline().split()[1])
        memory = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown"
    return {
        "cpu": cpu_model(),
        "cores": str(cores),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "simpy": version("simpy"),
        "aiohttp": version("aiohttp"),
        "load average at start": load_average(),
        "code": code_version(),
    }


def machine_line(info: dict[str, str]) -> str:
    """One line naming the machine, printed under every figure."""
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory']}, Python {info['python']}, "
        f"NumPy {info['numpy']}, SimPy {info['simpy']}"
    )
