"""The progress bar the long commands (`sim run`, `sweep`, `size`, `sensitivity`) show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(
    label: str, console: Console, total: int | None = None
) -> Iterator[Callable[[float], None]]:
    """A rich progress bar fed with the fraction of the work done (quiet when not a terminal).

    It shows `done/total` when `total` counts items (grid points), a percentage otherwise.
    """
    count = (
        "{task.percentage:>3.0f}%" if total is None else "{task.completed:>.0f}/{task.total:.0f}"
    )
    size = 100 if total is None else total
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(count),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=size)
        yield lambda fraction: progress.update(task, completed=min(fraction, 1.0) * size)
