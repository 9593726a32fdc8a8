"""Where work runs: in this process, on local processes, or on a Dask cluster — the one place
the model's replications and sweep tasks are spread over cores.

A task is a call `fn(*args)` that returns a picklable result; `Executor.map` runs a list of them
and yields (task index, result) as they finish. Replication i of any scenario always draws from
the random streams of (scenario seed, i) (`sim.rng`), so the numbers are identical whatever the
backend, the worker count, the batch size or the order in which tasks finish. Local processes
come from joblib's reusable loky pool: started once, then reused by every later call.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from joblib import Parallel, delayed

from sim.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

Progress = Callable[[float], None]
"""Called with the fraction of the work done, 0..1."""

_ADDRESS = re.compile(r"^([a-z]+://)?[^\s:/]+:\d+$")


def default_workers() -> int:
    """Every core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _indexed(index: int, fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    return index, fn(*args)


class Executor:
    """Where tasks run: `workers` local processes (default all cores; 1 = this process), or a
    Dask cluster — `dask="local"` starts a `distributed.LocalCluster` of `workers` processes,
    an address such as `tcp://host:8786` connects to a running scheduler, and a `Client` is
    used as given. Use as a context manager so a started cluster is shut down again.
    """

    def __init__(self, workers: int | None = None, dask: str | Client | None = None) -> None:
        if workers is not None and workers < 1:
            raise InputError(None, "workers", f"must be at least 1 (got {workers})")
        self.workers = workers or default_workers()
        self.dask = dask
        self._client: Client | None = None
        self._owned: list[Any] = []  # what we started and must close (client, cluster)

    def __enter__(self) -> Executor:
        if self.dask is not None:
            self._client = self._connect(self.dask)
        return self

    def __exit__(self, *exc: object) -> None:
        for thing in reversed(self._owned):
            thing.close()
        self._owned.clear()
        self._client = None

    @property
    def backend(self) -> str:
        """A short description of where tasks run."""
        if self._client is not None:
            n = len(self._client.scheduler_info().get("workers", {}))
            return f"Dask cluster at {self._client.scheduler.address} ({n} workers)"
        return "this process" if self.workers == 1 else f"{self.workers} local processes"

    @property
    def parallelism(self) -> int:
        """How many tasks can run at once."""
        if self._client is not None:
            return max(1, sum(self._client.nthreads().values()))
        return self.workers

    def _connect(self, dask: str | Client) -> Client:
        from distributed import Client, LocalCluster

        if isinstance(dask, Client):
            return dask
        if dask == "local":
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            self._owned.append(cluster)
            client = Client(cluster)
        else:
            if not _ADDRESS.match(dask):
                raise InputError(
                    None,
                    "dask",
                    f"expected 'local' or a scheduler address like tcp://host:8786 (got {dask!r})",
                )
            try:
                client = Client(dask, timeout=10)
            except (OSError, TimeoutError) as err:
                raise InputError(
                    None, "dask", f"cannot reach the Dask scheduler at {dask}: {err}"
                ) from None
        self._owned.append(client)
        return client

    def map(
        self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        """Run `fn(*args)` for every `args` in `tasks`; yield (task index, result) as they finish.

        On workers the tasks are sent at once, before the first result is asked for, so the
        caller can do other work meanwhile; in this process each runs when its result is asked."""
        if self._client is not None:
            return self._dask_map(fn, tasks)
        if self.workers == 1 or len(tasks) == 1:
            return ((index, fn(*args)) for index, args in enumerate(tasks))
        # always the same size, so the pool is reused as it is (resizing it would restart workers)
        parallel = Parallel(n_jobs=self.workers, return_as="generator_unordered")
        results: Iterator[tuple[int, Any]] = parallel(
            delayed(_indexed)(i, fn, *args) for i, args in enumerate(tasks)
        )
        return results

    def gather(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        progress: Progress | None = None,
    ) -> list[Any]:
        """`map`, with the results in task order; `progress` after each finished task."""
        results: dict[int, Any] = {}
        for index, result in self.map(fn, tasks):
            results[index] = result
            if progress is not None:
                progress(len(results) / len(tasks))
        return [results[i] for i in range(len(tasks))]

    def _dask_map(
        self, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        assert self._client is not None
        shared: dict[int, Any] = {}  # large arguments (scenarios) are sent to the cluster once
        scattered = []
        for args in tasks:
            row = []
            for arg in args:
                if hasattr(arg, "model_dump"):
                    if id(arg) not in shared:
                        shared[id(arg)] = self._client.scatter(arg, broadcast=False)
                    row.append(shared[id(arg)])
                else:
                    row.append(arg)
            scattered.append(row)
        futures = [
            self._client.submit(_indexed, i, fn, *row, pure=False)
            for i, row in enumerate(scattered)
        ]
        return (result for _, result in as_completed(futures, with_results=True))
