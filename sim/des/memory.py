"""How this process allocates memory while the model runs: the engine frees and reallocates
arrays of megabytes every block, and two default settings make each reallocation fault its
pages in afresh.

* glibc returns every freed allocation above its mmap threshold (128 KiB, raised only slowly
  as it adapts) to the OS, so the next array of that size is mapped and faulted in again;
* NumPy asks the kernel for transparent huge pages on arrays of 4 MiB or more, and where the
  kernel compacts memory on demand for such requests (`defrag = madvise`, a common default)
  each of those faults can stall for a compaction.

On the 2-core development machine the two together cost ref-24h a third of its time in page
faults (docs/performance.md §0). `tune_allocation` keeps freed arrays in the heap (an mmap
threshold of 32 MiB, glibc's largest, and no trimming below 1 GiB) and turns NumPy's huge-page
request off. Numbers are unaffected: only where memory comes from changes. The settings are
process-wide and stay (glibc has no way to ask for the old adaptive threshold back), which
suits the worker processes; set `SIM_MEMORY_TUNING=off` to leave a process as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Allocations below this come from the heap (glibc's largest allowed value on 64-bit)."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap kept for reuse rather than returned to the OS."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>


@functools.cache
def tune_allocation() -> dict[str, bool]:
    """Once per process: the settings above, where this platform has them (glibc, NumPy on
    Linux). Returns which took effect; nothing is changed when `SIM_MEMORY_TUNING=off`."""
    if os.environ.get("SIM_MEMORY_TUNING", "on").lower() in ("off", "0", "no", "false"):
        return {"heap": False, "no_huge_pages": False}
    return {"heap": _keep_heap(), "no_huge_pages": _no_huge_pages()}


def _keep_heap() -> bool:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # glibc only: musl and macOS have no mallopt
            return False
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (ValueError, OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap and trim)


def _no_huge_pages() -> bool:
    try:  # NumPy's documented switch is NUMPY_MADVISE_HUGEPAGE, read at import; this is its setter
        from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]
    except ImportError:
        return False
    _set_madvise_hugepage(False)
    return True
