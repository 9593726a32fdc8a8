"""Metrics from attempt records (design §6): the only place summaries and time series are computed.

`accumulator` (a sink for either engine that folds records into counts per time bin, and one
replication's summary), `bus` (a bus's sink: the same metrics per destination, per rule and for
the account; `accumulator_for` picks the sink a scenario needs), `tables` (across replications: means, Student-t CIs, SLO verdicts;
`SLO_METRICS` names the metric each SLO is checked on) and `run` (`RunResult`, what a model run
produced).

May import: `sim.records`, `sim.policy`, `sim.scenario`. Never an engine, a report or matplotlib.
"""
