"""The scaling-law plot (bench/scaling.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
MARKERS = {"1h": "o", "6h": "s", "24h": "^"}


def plot_scaling(rows: list[dict[str, Any]], path: Path = HERE / "scaling.png") -> Path:
    """CPU vs attempts, CPU per attempt vs backlog peak, peak RSS vs backlog peak.

    CPU time rather than wall: the machine is shared, and CPU time is far less noisy."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for horizon, marker in MARKERS.items():
        mine = [r for r in rows if r["horizon"] == horizon]
        if not mine:
            continue
        attempts = [r["attempts"] for r in mine]
        backlog = [max(r["backlog_peak"], 1) for r in mine]
        axes[0].scatter(attempts, [r["cpu_s"] for r in mine], marker=marker, label=horizon)
        axes[1].scatter(
            backlog, [r["cpu_us_per_attempt"] for r in mine], marker=marker, label=horizon
        )
        axes[2].scatter(backlog, [r["peak_rss_mb"] for r in mine], marker=marker, label=horizon)
        for r in mine:
            axes[1].annotate(
                f"×{r['rate_factor']:g}",
                (max(r["backlog_peak"], 1), r["cpu_us_per_attempt"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    top = max(r["attempts"] for r in rows)
    per = sorted(r["cpu_s"] / r["attempts"] for r in rows if r["attempts"])[len(rows) // 2]
    axes[0].plot(
        [top / 100, top],
        [per * top / 100, per * top],
        "k--",
        lw=0.8,
        label="∝ attempts (median slope)",
    )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="attempts simulated",
        ylabel="simulation CPU (s)",
        title="Cost grows with attempts",
    )
    axes[1].set(
        xscale="log",
        xlabel="backlog peak (events; 0 plotted at 1)",
        ylabel="CPU per attempt (µs)",
        title="…not with the backlog",
        ylim=(0, None),
    )
    axes[2].set(
        xscale="log",
        xlabel="backlog peak (events; 0 plotted at 1)",
        ylabel="peak RSS (MB)",
        title="Peak memory vs backlog",
        ylim=(0, None),
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="horizon", fontsize=8)
    fig.suptitle("ref-24h at arrival rates ×1/8, ×1/4, ×1/2, ×1 and horizons 1 h, 6 h, 24 h")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
