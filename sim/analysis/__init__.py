"""Questions asked of many model runs: what-if `sweeps`, rate-limit `sizing`, `sensitivity` to the
ASSUMPTION settings, and the queueing `theory` the model is checked against.

May import: `sim.runner`, `sim.results` and everything below them. Never a report or matplotlib:
plots and folders of the analyses are in `sim.report`.
"""
