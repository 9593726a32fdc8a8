"""The bus parts of a run report (docs/bus.md): which partner's deliveries wait, for how long, and
which bucket binds — one section and one backlog plot per destination, and the account.

Only formatting: every number comes from the summary metrics `sim.results.bus` computed.
"""

from __future__ import annotations

import math

import pandas as pd

from sim.report.outputs import human_seconds, number
from sim.results.run import RunResult

OWN_LIMIT_REACHED = 0.95
"""A destination's own bucket binds when its busiest second reached this share of its limit."""
ACCOUNT_HOLDS = 0.001
"""The account binds for a destination when it held at least this share of its attempts."""


def backlog_plot_name(destination: str) -> str:
    """The file of a destination's backlog plot in the report folder."""
    return f"backlog-{destination}.png"


def _mean(result: RunResult, key: str) -> float:
    m = result.metrics["mean"]
    return float(m[key]) if key in m.index else math.nan


def binding(result: RunResult, destination: str) -> str:
    """Which bucket held this destination's deliveries back: 'its own limit', 'the account
    quota', 'both' or 'neither'."""
    limit = result.scenario.bus.destination(destination).invocation_rate_limit_per_second
    prefix = f"destinations.{destination}."
    peak = _mean(result, prefix + "endpoint_peak_rps")
    own = limit is not None and peak >= OWN_LIMIT_REACHED * limit
    account = _mean(result, prefix + "account_throttled_fraction") >= ACCOUNT_HOLDS
    if own and account:
        return "both"
    if own:
        return "its own limit"
    if account:
        return "the account quota"
    return "neither"


def bus_intro(result: RunResult) -> str:
    """The report's first line for a bus."""
    bus = result.scenario.bus
    quota = bus.account.invocation_limit_per_second
    account = (
        "no account quota"
        if quota is None
        else f"account quota {quota:g}/s (burst {bus.account.burst:g}, order {bus.account.order})"
    )
    return (
        f"{len(bus.destinations)} destinations, {len(bus.rules)} rules, {account}; "
        f"{number(_mean(result, 'bus_events_arrived'))} events put on the bus per replication, "
        f"{_mean(result, 'fan_out'):.2f} deliveries per event."
    )


def account_lines(result: RunResult) -> list[str]:
    """The answer for the whole bus: does the account quota bind, and whose deliveries wait."""
    bus = result.scenario.bus
    quota = bus.account.invocation_limit_per_second
    lines = []
    held = _mean(result, "account.throttled_fraction")
    peak = _mean(result, "account.peak_rps")
    if quota is None:
        lines.append(
            f"No account quota is modelled; the account's busiest second had {number(peak)} attempts."
        )
    elif held < ACCOUNT_HOLDS:
        lines.append(
            f"The account quota ({quota:g}/s) never bound: it held {held:.2%} of attempts "
            f"(busiest second {number(peak)} attempts)."
        )
    else:
        lines.append(
            f"The account quota ({quota:g}/s) binds: it held {held:.2%} of all attempts after "
            f"their destination let them go (busiest second {number(peak)} attempts, burst included)."
        )
    waits = sorted(
        ((d.name, _mean(result, f"destinations.{d.name}.delivery_delay_s.p99_with_pending"))
         for d in bus.destinations),
        key=lambda item: -item[1] if not math.isnan(item[1]) else math.inf,
    )  # fmt: skip
    listed = ", ".join(f"{name} {human_seconds(p99)}" for name, p99 in waits)
    lines.append(
        f"Whose deliveries wait (p99 delivery delay, pending counted at their age): {listed}."
    )
    return lines


def destination_table(result: RunResult) -> list[str]:
    """One row per destination: its deliveries, delays, backlog, losses and binding bucket."""
    lines = [
        "| destination | limit /s | deliveries | p50 delay | p99 delay | max delay | backlog peak "
        "(at) | dead-lettered | dropped | pending | held by account | binds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in result.scenario.bus.destinations:
        p = f"destinations.{d.name}."
        limit = d.invocation_rate_limit_per_second
        peak_at = _mean(result, p + "backlog_peak_at_s")
        lines.append(
            f"| {d.name} | {'unlimited' if limit is None else f'{limit:g}'} | "
            f"{number(_mean(result, p + 'events_arrived'))} | "
            f"{human_seconds(_mean(result, p + 'delivery_delay_s.p50'))} | "
            f"{human_seconds(_mean(result, p + 'delivery_delay_s.p99_with_pending'))} | "
            f"{human_seconds(_mean(result, p + 'delivery_delay_s.max'))} | "
            f"{number(_mean(result, p + 'backlog_peak'))} ({human_seconds(peak_at)}) | "
            f"{number(_mean(result, p + 'InvocationsSentToDlq'))} | "
            f"{number(_mean(result, p + 'events_dropped'))} | "
            f"{number(_mean(result, p + 'events_pending'))} | "
            f"{_mean(result, p + 'account_throttled_fraction'):.2%} | {binding(result, d.name)} |"
        )
    return lines


def destination_sections(result: RunResult) -> list[str]:
    """One section per destination: its rules, its numbers, its binding bucket, its plot."""
    bus = result.scenario.bus
    lines: list[str] = []
    for d in bus.destinations:
        p = f"destinations.{d.name}."
        rules = bus.rules_for(d.name)
        limit = d.invocation_rate_limit_per_second
        lines += [f"### {d.name}", ""]
        lines.append(
            f"Rate limit {'unlimited' if limit is None else f'{limit:g}/s'} (burst {d.burst:g}), "
            f"shared by {len(rules)} rule{'s' if len(rules) > 1 else ''}: "
            + ", ".join(
                f"{r.name} (match {r.match_fraction:g}, DLQ {'on' if r.dead_letter_queue else 'off'})"
                for r in rules
            )  # fmt: skip
            + "."
        )
        lines.append(
            f"Busiest second {number(_mean(result, p + 'endpoint_peak_rps'))} attempts; the account "
            f"held {_mean(result, p + 'account_throttled_fraction'):.2%} of its attempts; "
            f"what held it back: **{binding(result, d.name)}**."
        )
        lines += ["", "| rule | deliveries | delivered | p99 delay | dead-lettered | dropped | retries |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rules:
            q = f"rules.{r.name}."
            lines.append(
                f"| {r.name} | {number(_mean(result, q + 'events_arrived'))} | "
                f"{number(_mean(result, q + 'events_delivered'))} | "
                f"{human_seconds(_mean(result, q + 'delivery_delay_s.p99_with_pending'))} | "
                f"{number(_mean(result, q + 'InvocationsSentToDlq'))} | "
                f"{number(_mean(result, q + 'events_dropped'))} | "
                f"{number(_mean(result, q + 'RetryInvocationAttempts'))} |"
            )
        lines += ["", f"![backlog of {d.name}]({backlog_plot_name(d.name)})", ""]
    return lines


def bus_markdown(result: RunResult) -> list[str]:
    """The report's bus part: the account, the table of destinations, a section for each."""
    bus = result.scenario.bus
    lines = ["## The bus: which partner's deliveries wait, and for how long", ""]
    lines += account_lines(result)
    lines += ["", *destination_table(result), ""]
    lines.append(
        "Binds: *its own limit* when the destination's busiest second reached "
        f"{OWN_LIMIT_REACHED:.0%} of its rate limit; *the account quota* when the account held "
        f"at least {ACCOUNT_HOLDS:.1%} of its attempts after the destination let them go."
    )
    lines += ["", "ASSUMPTION (account order, `account.order`: "
              f"{bus.account.order}): " + ORDER_TEXT[bus.account.order], ""]  # fmt: skip
    lines += ["## Destinations", "", *destination_sections(result)]
    return lines


ORDER_TEXT = {
    "after_destination": (
        "every attempt takes its destination's token first, then an account token; the account "
        "grants its tokens to the destinations' waiting heads oldest-eligible first. AWS documents "
        "only that invocations over the quota are delayed; `before_destination` (account token "
        "first) is the plausible alternative and starves the other partners when one partner's own "
        "limit binds: run both when the quota binds (docs/bus.md, B5)."
    ),
    "before_destination": (
        "every attempt takes an account token when it becomes ready (one line for the account, "
        "oldest first), then its destination's token; a quota token is spent even while the "
        "delivery then waits at its destination. AWS documents only that invocations over the "
        "quota are delayed; the default `after_destination` is the alternative (docs/bus.md, B5)."
    ),
}


def timeseries_table(result: RunResult) -> pd.DataFrame:
    """timeseries.csv: each destination's rows, then the whole bus's (`destination` = all); the
    single form's rows with its destination's name."""
    whole = result.timeseries
    per_destination = result.destination_timeseries
    if per_destination is None:
        return whole.assign(destination=result.scenario.destination.name)
    return pd.concat([per_destination, whole], ignore_index=True)
