"""Planning the whole bus from what the user will deploy: a core config or CloudFormation
template (read by the loader `sim core run` uses) becomes a bus scenario (`draft`), with each
rule's share of events measured by running its real event pattern on sample events
(`matching`). Behind `sim scenario`.

May import: `sim.runner` and everything below it (today `sim.live.config`, `sim.live.ingest`
and `sim.scenario`). Never `sim.analysis`, a report or matplotlib.
"""
