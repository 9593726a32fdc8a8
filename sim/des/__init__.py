"""The discrete-event model (SimPy) of delivery semantics S1–S9a.

Read `reference` first: the semantics, slowly — one SimPy process per event (per delivery, on a
bus), the model every speed-up is checked against. `engine` is the fast model (blocks of
attempts decided at once, so cost grows with attempts, not backlog): one `lane` per destination,
whose `rules` decide by each delivery's rule; `matching` splits bus events into deliveries;
under an account quota `joint` steps every lane together on the schedule of `account`.
`selection` chooses which waiting deliveries take the next tokens (FIFO or LIFO), `queues` holds
them compactly, `server` queues requests at a capacity-limited endpoint.

May import: `sim.endpoint`, `sim.records`, `sim.policy`, `sim.rng`, `sim.scenario`. Never
`sim.live` (the engines are independent), results, reports or the CLI.
"""

from sim.des.engine import Model, simulate_replication

__all__ = ["Model", "simulate_replication"]
