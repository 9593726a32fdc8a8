"""The validation report folder `reports/validation/<name>/`: verdict table, overlay plots, the
method, the assumptions and the live core's overhead, written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from sim.records import to_frame
from sim.report.outputs import json_safe, number, save_figure, write_folder
from sim.validation.bus_observe import live_matches
from sim.validation.compare import KS_ITEM, ItemResult
from sim.validation.observe import SCALARS, SERIES
from sim.validation.plots import PLOTS, plot_power

if TYPE_CHECKING:
    from sim.validation.power import Power
    from sim.validation.result import Validation


def _num(value: float, delay: bool = False) -> str:
    if delay and value is not None and math.isfinite(value):
        return f"{value * 1e3:,.1f} ms" if abs(value) < 1 else f"{value:,.3g} s"
    return number(value, digits=3)


def _row(item: ItemResult, raw: ItemResult, note: str = "") -> str:
    parts = item.name.rsplit(".", 2)  # a bus part's delays too: destinations.NAME.delivery_...
    delay = parts[-2:-1] == ["delivery_delay_s"] and parts[-1].startswith("p")
    low, high = item.interval
    interval = (
        f"≤ {_num(high)}" if low == -math.inf else f"{_num(low, delay)} … {_num(high, delay)}"
    )
    pi = f"{_num(item.pi95[0], delay)} … {_num(item.pi95[1], delay)}"
    if not item.tested:
        verdict = f"undefined in {item.undefined_share:.0%} of model runs: not tested"
    else:
        verdict = "PASS" if item.inside else "**FAIL**"
    verdict += note
    raw_mark = "" if raw.inside else " (outside)"
    return (
        f"| {item.name} | {_num(item.live, delay)} | {_num(raw.live, delay)}{raw_mark} | "
        f"{_num(item.median, delay)} | {pi} | {interval} | {item.z:+.2f} | {verdict} |"
    )


def verdict_table(v: Validation) -> str:
    """The PASS/FAIL table of the scalar metrics, the KS distance and each series' worst bin."""
    c, raw = v.comparison, v.comparison_raw
    lines = [
        "| metric | live | live raw | model median | model 95 % PI | simultaneous interval | z | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in (*SCALARS, KS_ITEM):
        lines.append(_row(c.item(name), raw.item(name)))
    for name in SERIES:
        bins = c.series(name)
        worst = max(bins, key=lambda i: abs(i.z))
        raw_worst = raw.item(worst.name)
        failed = sum(not i.inside for i in bins)
        note = f", {failed} bins outside" if failed else ""
        lines.append(
            _row(worst, raw_worst, note).replace(
                f"| {worst.name} |", f"| {name}: worst of {len(bins)} bins, {worst.name} |"
            )
        )
    lines.extend(_part_rows(v))
    return "\n".join(lines)


def _part_rows(v: Validation) -> list[str]:
    """A bus: the rows of each destination's, each rule's and the account's metrics
    (`bus_observe`), then the worst bin of each destination's series."""
    c, raw = v.comparison, v.comparison_raw
    parts = [i for i in c.items if i.name.startswith(("destinations.", "rules.", "account."))]
    rows = [_row(item, raw.item(item.name)) for item in parts if "[" not in item.name]
    first_series = f".{next(iter(SERIES))}["  # destinations.NAME.backlog[5s]: NAME has a series
    destinations = dict.fromkeys(
        i.name[: i.name.index(first_series)]
        for i in parts
        if i.name.startswith("destinations.") and first_series in i.name
    )
    for destination in destinations:
        for name in SERIES:
            bins = c.series(f"{destination}.{name}")
            worst = max(bins, key=lambda i: abs(i.z))
            failed = sum(not i.inside for i in bins)
            note = f", {failed} bins outside" if failed else ""
            label = f"| {destination}.{name}: worst of {len(bins)} bins, "
            row = _row(worst, raw.item(worst.name), note)
            rows.append(row.replace(f"| {worst.name} |", f"{label}{worst.name} |"))
    return rows


def _arrivals(v: Validation) -> int:
    """Arrivals the model replays: the bus's events (not its deliveries), or the events."""
    if v.scenario.is_bus:
        return int(np.count_nonzero(v.live.submitted_at < v.scenario.horizon))
    return int(v.live_corrected.arrivals.sum())


def _timeouts(v: Validation) -> str:
    """The client timeout line(s) of the assumptions."""
    if not v.scenario.is_bus:
        return f"* client timeout (`destination.timeout`): {v.scenario.destination.timeout:g} s"
    return "\n".join(
        f"* client timeout (`destinations.{d.name}.timeout`): {d.timeout:g} s"
        for d in v.scenario.bus.destinations
    )


def _overhead_table(figures: dict[str, Any]) -> str:
    labels = {
        "loadgen_lag_ms": "load generator: submission − scheduled arrival",
        "dispatch_lag_ms": "dispatch lag: live dispatch − token-bucket schedule",
        "client_excess_ms": "client latency − endpoint's queue wait + service",
        "connect_ms": "of which: dispatch → request at the endpoint",
        "endpoint_lag_ms": "endpoint answer − its planned answer time",
    }
    lines = ["| overhead (ms) | p50 | p99 | max |", "|---|---:|---:|---:|"]
    for key, label in labels.items():
        f = figures[key]
        lines.append(f"| {label} | {f['p50']:.1f} | {f['p99']:.1f} | {f['max']:.1f} |")
    return "\n".join(lines)


METHOD = """\
* **Live**: one realization (replication index {live_rep}: arrivals, endpoint draws and backoff
  jitter) in real time: load generator → delivery core (temporary SQLite database) → local
  endpoint serving the scenario's `endpoint` model on 127.0.0.1, one shared time zero, stopped
  at the horizon. **Model**: {n} replications (0…{last}) of the {model_what}; {arrivals}
* Every item — each metric in the table, each time bin of backlog, retry pool and endpoint
  requests ({bins} bins of {bin}), and the KS distance of the delivery-delay distribution — is
  standardized against the model replications: z = (x − median) / scale, with separate scales
  below and above the median (semi-deviations: the standard deviation for a symmetric
  distribution; floors 1 event, 1 ms, 0.001 of a fraction or KS distance).
* The family statistic T = max |z| is calibrated on the model itself: each replication is held
  out in turn and scored against the others (its KS distance against the pool of the others).
  The live run FAILs if its T exceeds c = {c:.2f}, the ⌈95 % · (N + 1)⌉-th smallest held-out T,
  so a correct model fails at most 5 % of the time for the whole family of {k} items, however
  correlated. (Bonferroni over {k} items would need thousands of replications and lose power
  to their correlation.) Each item's *simultaneous interval* is median − c·scale … median +
  c·scale; the *model 95 % PI* column is the marginal 2.5–97.5 % range, for orientation.
* Delays: plain two-sample KS p-values assume independent delays, but delays within a run are
  strongly dependent (events share a backlog), which makes them anti-conservative; the KS
  distance is calibrated like every other item instead. Plain KS p-value, for information:
  {ks_p}.
* **Core overhead** is measured per attempt and shown below. The verdict uses the live records
  *re-timed on an ideal core*: attempts replayed oldest-ready first through a fresh token
  bucket, each taking the endpoint's own response time (client time minus client excess), with
  the same waits between attempts and every decision and response as it happened live. What
  the overhead did to the endpoint (e.g. requests bunched after an event-loop stall) is not
  undone. Intervals are never widened. Raw live values stand beside the corrected ones; raw,
  the verdict would be **{raw_verdict}** (T = {raw_t:.2f}{raw_failed}).
* The correction may only remove *lateness*. The core must keep to the schedule it replays:
  its k-th dispatch no earlier than the ideal bucket's k-th token, no attempt before it was
  ready, and oldest-ready first (no attempt sent while one ready earlier waited), each within
  {tol:g} ms. Otherwise the validation FAILs whatever T is. Here: {conformance}.
"""

ARRIVALS = {
    "replay": "each replays the live run's {n_arrivals:,} arrival times (as the core recorded "
    "them), so the comparison is conditional on the arrivals and only the delivery side "
    "(endpoint draws, queueing, backoff, retries) varies. The arrival process itself is the "
    "model's own code and random stream (checked exactly by the test suite).",
    "model": "each draws its own arrivals from the scenario (unconditional comparison).",
}


BUS_METHOD = """\
* **The bus** ({destinations} destinations, {rules} rules, account quota {quota}, order
  `{order}`). Live: one local endpoint per destination, the core configured from the scenario
  (one API destination per destination, one rule per rule, the quota as
  `sim.account_invocation_limit_per_second`: docs/live-core.md); the load generator draws which
  rules each event matches (independently, with each rule's `match_fraction`, on a stream of
  its own) and lists them in the event, where each rule's real event pattern selects them
  (`live_matches.csv`). The model replays the bus's events and draws its own matches (B2).
* Items: the unprefixed ones are **the whole bus**, every delivery of every rule — hence the
  account's view: `requests[...]` is what the account quota let through per bin. Then every
  scalar and series **per destination** (`destinations.NAME.*`: its shared bucket, its
  endpoint), every scalar **per rule** (`rules.NAME.*`: its matches, retry policy and DLQ)
  and **the account's** `account.throttled_fraction` (attempts that waited for
  an account token after their destination let them go; live, on the ideal core below) and
  `account.peak_rps`, all computed by the shared results code for a bus
  (`sim.results.bus.BusAccumulator`). All {k} items are one family, calibrated together.
* The ideal core of the re-timing and of the conformance check is the bus's: each
  destination's bucket *and* the account's, arbitrated by `sim.policy`'s rule of
  `account.order` (docs/bus.md B5), the one the core and the model use. Conformance is checked
  per destination (bucket and order) and for the account's bucket over all dispatches.
"""


def _bus_method(v: Validation, items: int) -> list[str]:
    if not v.scenario.is_bus:
        return []
    bus = v.scenario.bus
    limit = bus.account.invocation_limit_per_second
    text = BUS_METHOD.format(
        destinations=len(bus.destinations),
        rules=len(bus.rules),
        quota="none" if limit is None else f"{limit:g}/s (burst {bus.account.burst:g})",
        order=bus.account.order,
        k=items,
    )
    return [text]


def report_markdown(v: Validation) -> str:
    """report.md: verdict, table, plots, method, assumptions, overhead."""
    c, raw = v.comparison, v.comparison_raw
    verdict = v.verdict
    scenario = v.scenario
    lines = [
        f"# Validation: {scenario.name} — {verdict}",
        "",
        f"Live run of {scenario.horizon:g} s ({v.live.scheduled_at.size:,} events) against "
        f"{c.replications} model replications: T = {c.statistic:.2f} against the 95 % family "
        f"limit c = {c.critical:.2f}, **{verdict}**.",
    ]
    if not v.conformance.ok:
        lines += [
            "",
            "**The live core did not keep to its schedule** (this FAILs the validation "
            "whatever T is: the overhead correction may only remove lateness):",
            "",
        ]
        lines += [f"* {problem}" for problem in v.conformance.problems()]
        lines.append("")
    if c.failed():
        lines.append(f"Outside their simultaneous interval: {', '.join(c.failed())}.")
    elif not c.passed:
        lines.append(f"T = {c.statistic:.2f} is above the limit {c.critical:.2f}.")
    if c.undefined():
        lines.append(
            f"Not tested, undefined (NaN) in too many model runs: {', '.join(c.undefined())}."
        )
    if v.model_overrides:
        shown = ", ".join(f"`{k}={json.dumps(val)}`" for k, val in v.model_overrides.items())
        lines.append(f"The model ran with overrides (live did not): {shown}.")
    if v.replayed_from is not None:
        lines.append(
            f"The live run was replayed from `{v.replayed_from.name}` (`sim validate "
            "--replay-live`), recorded earlier; no new live run was made."
        )
    figures = v.overhead.figures()
    lag, excess = figures["dispatch_lag_ms"], figures["client_excess_ms"]
    lines += [
        "",
        f"Live core overhead: dispatch {lag['p50']:.1f} ms (p50) / {lag['p99']:.1f} ms (p99) "
        f"behind the token bucket, {excess['p50']:.1f} / {excess['p99']:.1f} ms of request "
        "latency beyond the endpoint's; the verdict uses live records corrected for it "
        f"(raw: {'PASS' if raw.passed else 'FAIL'}, T = {raw.statistic:.2f}). See Method.",
        "",
        "![items](items.png)",
        "",
        verdict_table(v),
        "",
        "![backlog and retry pool](levels.png)",
        "",
        "![throughput](throughput.png)",
        "",
        "![delay CDF](delay_cdf.png)",
        "",
        *(power_markdown(v.power) if v.power is not None else []),
        "## Method",
        "",
        METHOD.format(
            live_rep=v.live.replication,
            n=c.replications,
            last=c.replications - 1,
            model_what="scenario with the overrides above"
            if v.model_overrides
            else "same scenario",
            arrivals=ARRIVALS[v.arrivals].format(n_arrivals=_arrivals(v)),
            bins=v.live_corrected.bin_end_s.size,
            bin=f"{scenario.sample_every:g} s",
            c=c.critical,
            k=len(c.items),
            ks_p=_num(c.ks_plain_p),
            raw_verdict="PASS" if raw.passed else "FAIL",
            raw_t=raw.statistic,
            raw_failed=f"; outside: {', '.join(raw.failed())}" if raw.failed() else "",
            tol=v.conformance.tolerance_s * 1e3,
            conformance=(
                f"all {v.conformance.attempts:,} dispatches conform"
                if v.conformance.ok
                else "; ".join(v.conformance.problems())
            ),
        ),
        *_bus_method(v, len(c.items)),
        "## Assumptions used",
        "",
        *(f"* `{k}`: {val}" for k, val in scenario.assumptions().items()),
        _timeouts(v),
        "",
        "## Live core overhead",
        "",
        _overhead_table(figures),
        "",
        f"Attempts the core recorded: {v.overhead.n_sent:,}; requests the endpoint received: "
        f"{v.overhead.n_requests:,}; attempts with no request in the endpoint's log: "
        f"{v.overhead.n_unmatched:,}; requests with no attempt: {v.overhead.n_orphans:,}. "
        "(The core runs until just after the horizon; the comparison uses what happened "
        f"before it.) Event loop: {v.live.loop}. Live run wall time {v.live.wall_s:.0f} s, "
        f"model {v.model_wall_s:.0f} s.",
        "",
        "![overhead](overhead.png)",
        "",
        "Files: `validation.json` (every item), `live_attempts.csv` (the core's attempt records), "
        "`endpoint_requests.csv` (the endpoint's log), `live_arrivals.csv` (arrival times the "
        "core recorded), `scenario.yaml` (resolved)"
        + (
            ", `power.csv` (every deviation: setting, deviation, T, limit, verdict)"
            if v.power
            else ""
        )
        + (
            "; for a bus, `live_matches.csv` (each event's arrival and the rules it matched) "
            "and a `rule` column in `live_attempts.csv`."
            if v.scenario.is_bus
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def power_markdown(power: Power) -> list[str]:
    """The resolution section: per setting, the smallest deviation that FAILs; then every row."""
    lines = [
        "## Resolution: which wrong models this live run catches",
        "",
        f"Each setting of the model was changed alone, by the steps below, and the same live run "
        f"tested against that wrong model ({power.replications} replications each, the same "
        "calibrated test: T against the wrong model's own limit), exactly as `--model-set` "
        "would. *Smallest FAIL* is the smallest step, on each side of the validated value, "
        "whose model this live run rejects: an error at least that large in that setting would "
        "have FAILed the validation; a smaller one may pass unnoticed. Every row is one test "
        "of one live run: a step just below the resolution can FAIL with another live run, and "
        "one beyond it can PASS. All rows are in `power.csv`.",
        "",
        "| setting | validated | steps tried | smallest FAIL below | smallest FAIL above "
        "| resolution |",
        "|---|---|---|---|---|---|",
    ]
    rows = {(r.deviation.setting, r.deviation.label): r for r in power.rows}
    for res in power.resolution():

        def cell(label: str | None, setting: str = res.setting) -> str:
            if label is None:
                return "none"
            row = rows[(setting, label)]
            return f"{label} (T {row.statistic:.2f} > {row.critical:.2f})"

        note = f"; PASS beyond: {', '.join(res.passed_beyond)}" if res.passed_beyond else ""
        below, above = (cell(res.below), cell(res.above)) if res.numeric else ("–", "–")
        lines.append(
            f"| `{res.setting}` | {power.values.get(res.setting, '')} | "
            f"{', '.join(res.tested)} | {below} | {above} | {res.summary}{note} |"
        )
    for setting, why in power.skipped.items():
        lines.append(f"| `{setting}` | – | – | – | – | not tested: {why} |")
    baseline = power.baseline
    lines += [
        "",
        f"The validated model itself: T = {baseline.statistic:.2f}, limit "
        f"{baseline.critical:.2f}, {baseline.verdict}."
        + (
            ""
            if baseline.passed
            else " **The validated model FAILs already, so FAILs below say little.**"
        ),
        "",
        "![resolution](power.png)",
        "",
        "<details><summary>Every deviation</summary>",
        "",
        "| setting | step | model value | T | limit | verdict | outside |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in power.rows:
        outside = ", ".join(r.outside[:4]) + (" …" if len(r.outside) > 4 else "")
        lines.append(
            f"| `{r.deviation.setting}` | {r.deviation.label} | {r.deviation.value} | "
            f"{r.statistic:.2f} | {r.critical:.2f} | {r.verdict} | {outside} |"
        )
    lines += ["", "</details>", ""]
    return lines


def _item_json(item: ItemResult) -> dict[str, Any]:
    return {
        "live": item.live,
        "model_median": item.median,
        "model_pi95": list(item.pi95),
        "interval": list(item.interval),
        "z": item.z,
        "inside": item.inside,
        "tested": item.tested,
        "undefined_share": item.undefined_share,
    }


def document(v: Validation) -> dict[str, Any]:
    """Everything in validation.json (non-finite numbers as null)."""
    c = v.comparison
    raw = v.comparison_raw
    doc = {
        "scenario": v.scenario.name,
        "verdict": v.verdict,
        "reasons": v.reasons(),
        "conformance": v.conformance.figures(),
        "comparison_verdict": "PASS" if c.passed else "FAIL",
        "statistic": c.statistic,
        "critical": c.critical,
        "alpha": c.alpha,
        "replications": c.replications,
        "live_replication": v.live.replication,
        "model_overrides": v.model_overrides,
        "arrivals": v.arrivals,
        "failed": c.failed(),
        "undefined": c.undefined(),
        "raw_verdict": "PASS" if raw.passed else "FAIL",
        "raw_statistic": raw.statistic,
        "raw_failed": raw.failed(),
        "ks_plain_p": c.ks_plain_p,
        "items": {i.name: {**_item_json(i), "live_raw": raw.item(i.name).live} for i in c.items},
        "overhead": v.overhead.figures(),
        "assumptions": v.scenario.assumptions(),
        "loop": v.live.loop,
        "live_wall_s": v.live.wall_s,
        "model_wall_s": v.model_wall_s,
        "replayed_from": None if v.replayed_from is None else str(v.replayed_from),
        "power": None if v.power is None else v.power.document(),
    }
    return json_safe(doc)


def write_report(v: Validation, out_dir: Path) -> Path:
    """Write the report folder atomically (staged, then renamed into place); returns its path."""
    from sim.endpoint.server import RequestLog

    def fill(folder: Path) -> None:
        (folder / "validation.json").write_text(json.dumps(document(v), indent=2))
        (folder / "scenario.yaml").write_text(
            yaml.safe_dump(v.scenario.resolved(), sort_keys=False)
        )
        attempts = to_frame(v.live.records)
        if v.live.matches is not None:  # a bus: which rule each delivery was for
            attempts["rule"] = [v.live.rule_of_delivery[int(e)] for e in attempts["event_id"]]
            live_matches(v.live).to_csv(folder / "live_matches.csv", index=False)
        attempts.to_csv(folder / "live_attempts.csv", index=False)
        arrivals = np.sort(v.live.arrival_times)
        (folder / "live_arrivals.csv").write_text(
            "arrival_s\n" + "".join(f"{float(t)!r}\n" for t in arrivals)
        )
        log = RequestLog()
        log.records = v.live.requests
        log.write(folder / "endpoint_requests.csv")
        for name, plot in PLOTS.items():
            save_figure(plot(v), folder / name, dpi=100)
        if v.power is not None:
            v.power.frame().to_csv(folder / "power.csv", index=False)
            save_figure(plot_power(v.power), folder / "power.png", dpi=100)
        (folder / "report.md").write_text(report_markdown(v))

    return write_folder(out_dir, fill)
