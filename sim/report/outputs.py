"""What every output shares: JSON-safe values, numbers for people, folders written atomically.

`sim run`, `sim sweep`/`size`/`sensitivity` and `sim validate` write their folders through
`write_folder`: the files go into a staging folder beside the target, renamed into place at the
end, so an error never leaves a partial report behind.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def json_safe(value: Any) -> Any:
    """`value` with NaN/inf as None, NumPy scalars as Python numbers and tuples as lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def number(value: Any, digits: int = 4) -> str:
    """A number for people: "–" when missing, whole numbers and ≥ 1,000 with thousands
    separators, others to `digits` significant figures; anything not a number as `str`."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "−∞" if value < 0 else "∞"
    if value.is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}g}"


def save_figure(fig: Figure, path: Path, dpi: int = 110, *, layout: bool = True) -> None:
    """Lay out (unless `layout=False`: its margins are set already), write and close a figure."""
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


MARKER = "report.md"
"""Every output folder holds one; only a folder holding it (or an empty one) is replaced."""


def check_out_dir(out_dir: Path) -> Path:
    """`out_dir`, if it can be (re)written: missing, empty, or an earlier report (it holds
    report.md). Anything else is refused with an InputError naming `out_dir`, so a mistyped
    folder never deletes someone's files."""
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise InputError(None, "out_dir", f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
            raise InputError(
                None,
                "out_dir",
                f"{out_dir} is not empty and holds no {MARKER}: not a report folder to replace",
            )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            None, "out_dir", f"cannot create {out_dir.parent}: {err.strerror}"
        ) from None
    return out_dir


def write_folder(out_dir: Path, fill: Callable[[Path], None]) -> Path:
    """Write a folder atomically: `fill` writes into a staging folder that then replaces
    `out_dir` (see `check_out_dir`); on any error the staging folder is removed and `out_dir`
    is left as it was."""
    given = check_out_dir(out_dir)
    target = given.resolve()  # `.` or `..` have no name to stage beside
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a report folder is not
    try:
        fill(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return given


def human_seconds(seconds: float) -> str:
    """A duration for people: 250 ms, 3.2 s, 12 min, 1.7 h, 2.1 d."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for limit, unit, size in (
        (1, "ms", 0.001),
        (120, "s", 1),
        (7200, "min", 60),
        (172800, "h", 3600),
    ):
        if abs(seconds) < limit:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 86400:.3g} d"
