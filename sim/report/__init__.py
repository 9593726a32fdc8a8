"""What people read: the report folder of a run (`run`), of the analyses (`analysis`), every plot
(`plots`, public as `sim.plots`), the interactive what-if of notebooks (`explore`, public as
`sim.explore`: ipywidgets lives here only) and what all outputs share (`outputs`: atomic folders, numbers
for people, JSON-safe values).

May import: `sim.analysis`, `sim.runner`, `sim.results` and everything below. matplotlib lives
here (and in `sim.validation`'s plots), nowhere lower.
"""
