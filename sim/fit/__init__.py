"""From the user's data to scenario inputs: fit the endpoint from access logs, the traffic from
CloudWatch metrics.

`requests` (one table of requests read from log files, `.gz` too, with line numbers for
errors), `nginx` (nginx's own `log_format` syntax compiled to a line parser), `alb` (AWS
Application Load Balancer access logs), `endpoint` (status mix, lognormal latency, hangs past
the timeout, Retry-After and observed peak concurrency -> an `endpoint:` block) and `arrivals`
(a GetMetricData series -> a `counts` arrival source with its CSV). Plots of the fits are in
`sim.report.fit`; the backtest against observed metrics is `sim.validation.backtest`.

May import: `sim.results`, `sim.endpoint`, `sim.scenario`, `sim.errors` and what lies below
them. Never an engine, a report or matplotlib.
"""
