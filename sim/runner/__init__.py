"""Running the model: one replication into an `Accumulator`, many replications and sweep tasks
on this process, local processes or a Dask cluster (`executor`, the one place work is spread
over cores), and `simulate`, the library call behind `sim run` and the notebooks.

May import: `sim.des`, `sim.results` and everything below them. Never `sim.live`.
"""
