"""The partner endpoint's behaviour (design S9a), shared by the model and the local endpoint.

`model` (time-segmented regimes: status mix, latency, hangs, Retry-After, capacity; inverse-CDF
samplers), `queue` (the M/G/c/K queue, one request at a time) and `server` (the same behaviour
served over real HTTP with aiohttp, for the live core, validation and `sim endpoint`).

May import: `sim.scenario`, `sim.rng`, `sim.errors`. Never an engine: both engines sit above it.
"""
