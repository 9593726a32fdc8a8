"""Running many scenarios × replications as tasks: in this process, on local processes, or on Dask.

A task is one (scenario, batch of replication indices) — never one event — and returns the
summary metrics of those replications. Replication i of any scenario always draws from the
random streams of (scenario seed, i) (`sim.rng`), so the numbers are identical whatever the
backend, the worker count, the batch size or the order in which tasks finish.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from joblib import Parallel, delayed

from sim.errors import InputError
from sim.runner import default_workers, run_one
from sim.scenario import Scenario

if TYPE_CHECKING:
    from distributed import Client

Progress = Callable[[float], None]
"""Called with the fraction of the work done, 0..1."""

Summaries = list[list[dict[str, Any]]]
"""Per scenario, the summary dict of each replication, in replication order."""

_ADDRESS = re.compile(r"^([a-z]+://)?[^\s:/]+:\d+$")


def run_batch(scenario: Scenario, replications: Sequence[int]) -> list[dict[str, Any]]:
    """One task: simulate the given replications of a scenario; their summary metrics."""
    return [run_one(scenario, i).summary for i in replications]


def _indexed_batch(
    task: int, scenario: Scenario, replications: Sequence[int]
) -> tuple[int, list[dict[str, Any]]]:
    return task, run_batch(scenario, replications)


def batch_size_for(n_scenarios: int, n_replications: int, workers: int) -> int:
    """Replications per task: about four tasks per worker, so uneven tasks still balance."""
    target_tasks = 4 * max(1, workers)
    size = math.ceil(n_scenarios * n_replications / target_tasks)
    return max(1, min(n_replications, size))


class Executor:
    """Where tasks run: `workers` local processes (default all cores; 1 = this process), or a
    Dask cluster — `dask="local"` starts a `distributed.LocalCluster` of `workers` processes,
    an address such as `tcp://host:8786` connects to a running scheduler, and a `Client` is
    used as given. Use as a context manager so a started cluster is shut down again.
    """

    def __init__(self, workers: int | None = None, dask: str | Client | None = None) -> None:
        if workers is not None and workers < 1:
            raise InputError("--workers", None, f"must be at least 1 (got {workers})")
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
                    "--dask",
                    None,
                    f"expected 'local' or a scheduler address like tcp://host:8786 (got {dask!r})",
                )
            try:
                client = Client(dask, timeout=10)
            except (OSError, TimeoutError) as err:
                raise InputError(
                    "--dask", None, f"cannot reach the Dask scheduler at {dask}: {err}"
                ) from None
        self._owned.append(client)
        return client

    def run(
        self,
        scenarios: Sequence[Scenario],
        replications: Sequence[int],
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> Summaries:
        """Simulate every replication of every scenario; summaries per scenario, in replication order."""
        replications = list(replications)
        size = batch_size or batch_size_for(len(scenarios), len(replications), self.parallelism)
        tasks = [
            (s, replications[start : start + size])
            for s in range(len(scenarios))
            for start in range(0, len(replications), size)
        ]
        out: list[dict[int, dict[str, Any]]] = [{} for _ in scenarios]
        total, done = len(scenarios) * len(replications), 0
        for task, summaries in self._results(scenarios, tasks):
            for summary in summaries:
                out[tasks[task][0]][summary["replication"]] = summary
            done += len(summaries)
            if progress is not None:
                progress(done / total)
        return [[by_rep[i] for i in replications] for by_rep in out]

    def _results(
        self, scenarios: Sequence[Scenario], tasks: list[tuple[int, list[int]]]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        if self._client is not None:
            yield from self._dask_results(scenarios, tasks)
        elif self.workers == 1 or len(tasks) == 1:
            for task, (s, batch) in enumerate(tasks):
                yield task, run_batch(scenarios[s], batch)
        else:
            parallel = Parallel(
                n_jobs=min(self.workers, len(tasks)), return_as="generator_unordered"
            )
            yield from parallel(
                delayed(_indexed_batch)(task, scenarios[s], batch)
                for task, (s, batch) in enumerate(tasks)
            )

    def _dask_results(
        self, scenarios: Sequence[Scenario], tasks: list[tuple[int, list[int]]]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        from distributed import as_completed

        assert self._client is not None
        shared = self._client.scatter(list(scenarios), broadcast=False)
        futures = [
            self._client.submit(_indexed_batch, task, shared[s], batch, pure=False)
            for task, (s, batch) in enumerate(tasks)
        ]
        for _, result in as_completed(futures, with_results=True):
            yield result
