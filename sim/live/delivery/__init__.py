"""Delivering events for real: `request` (S10/S12 request building), `auth` (connections, S11),
`transport` (HTTP on asyncio, S4 timeouts, S10 limits), `lanes` (token bucket and FIFO per
destination), `core` (the delivery loop and its decisions through `sim.policy`), `endings`
(delivered, DLQ, dropped), `recorder` (attempt records), `store` (SQLite durability), `loops`
(asyncio or uvloop) and `loop_lag` (event-loop stall watch).

May import: `sim.live.config`, `sim.live.eventbridge`, `sim.policy`, `sim.rng`, `sim.records`.
"""
