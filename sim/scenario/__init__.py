"""The what-if, as typed input (design §4): the bottom of the spine.

`model` (the frozen, strictly validated `Scenario`, in its single-destination or bus form;
defaults live only there), `sections` (arrivals, endpoint, destination, retry policy, SLO),
`bus` (the bus form's sections and `Bus`, the one normalized view every engine reads),
`loading` (YAML, `--set` overrides, one-line errors), `durations` (`250ms`, `2h`, ...),
`csv_inputs` (counts, traces, latency samples read and checked), `metric_data` (CloudWatch
GetMetricData responses of EventBridge, read and written), `arrivals` (the arrival processes a
scenario describes, drawn window by window) and `offered` (the first-attempt load a bus offers
each limit, as `sim check` prints it).

May import: `sim.errors` only.
"""
