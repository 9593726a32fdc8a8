"""The discrete-event model (SimPy) of the delivery semantics."""

from sim.des.engine import Model, Sink, simulate_replication

__all__ = ["Model", "Sink", "simulate_replication"]
