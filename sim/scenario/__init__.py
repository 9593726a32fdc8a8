"""The what-if, as typed input (design §4): the bottom of the spine.

`model` (the frozen, strictly validated `Scenario`; defaults live only there), `loading` (YAML,
`--set` overrides, one-line errors), `durations` (`250ms`, `2h`, ...), `csv_inputs` (counts,
traces, latency samples read and checked), `metric_data` (CloudWatch GetMetricData responses
of EventBridge, read and written) and `arrivals` (the arrival processes a scenario
describes, drawn window by window).

May import: `sim.errors` only.
"""
