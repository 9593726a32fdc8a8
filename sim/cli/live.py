"""Live-core commands: `sim core run`, `sim core dlq` and `sim test-event-pattern`."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sim.cli import app
from sim.cli.checks import database, existing_file, new_file
from sim.errors import InputError

if TYPE_CHECKING:
    import socket

    from sim.live.config.loading import CoreConfig
    from sim.live.delivery.store import Durability
    from sim.live.service import Events, RunSummary
    from sim.records import Sink

# aiohttp and the core load inside the commands that need them: `sim` starts fast.

core_app = typer.Typer(
    no_args_is_help=True, help="The live delivery core: deliver events to real HTTP endpoints."
)
app.add_typer(core_app, name="core")

DbOption = Annotated[Path, typer.Option("--db", help="SQLite database of the core (WAL).")]
LoopOption = typer.Option(
    "--loop", help="Event loop: asyncio or uvloop (default: uvloop when installed)."
)


def event_loop(name: str | None) -> str:
    """The `--loop` choice, checked (exit 2 with one line when unknown or not installed)."""
    from sim.live.delivery.loops import check_loop

    try:
        return check_loop(name)
    except ValueError as err:
        raise InputError(None, "--loop", str(err)) from None


@core_app.command("run")
def run(
    config_file: Annotated[Path, typer.Argument(help="Core config (YAML or JSON).")],
    db: DbOption,
    events: Annotated[
        str | None, typer.Option("--events", help="Events as JSONL: a file, or - for stdin.")
    ] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="Serve PutEvents on HOST:PORT (port 0: any).")
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option("--until-idle", help="Exit once every accepted event has ended."),
    ] = False,
    records: Annotated[
        Path | None, typer.Option("--records", help="Write attempt records to this CSV file.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log core activity.")] = False,
    loop: Annotated[str | None, LoopOption] = None,
    durability: Annotated[
        str,
        typer.Option(
            "--durability",
            help="normal: every acknowledged event survives a crash of the process; full: also "
            "a power loss or OS crash (an fsync per commit).",
        ),
    ] = "normal",
    metrics: Annotated[
        Path | None,
        typer.Option("--metrics", help="Write the run's CloudWatch metrics (GetMetricData JSON)."),
    ] = None,
    metrics_period: Annotated[
        str, typer.Option("--metrics-period", help="Period of the --metrics datapoints.")
    ] = "1m",
) -> None:
    """Deliver events: resume pending deliveries, ingest events, run until idle or Ctrl-C."""
    from sim.cli.core_metrics import CoreMetrics
    from sim.live.config.loading import load_config
    from sim.live.delivery import loops
    from sim.live.ingest import Envelope, read_event_file, stdin_events
    from sim.live.service import CsvRecords

    # Every option is checked before anything is created: no database, file or socket is
    # left behind by a bad one.
    loop_name = event_loop(loop)
    mode = _durability(durability)
    address = _address(listen) if listen is not None else None
    database(db)
    for path, option in ((records, "--records"), (metrics, "--metrics")):
        if path is not None:
            new_file(path, option)
    watch = CoreMetrics(metrics, metrics_period) if metrics is not None else None
    if events not in (None, "-"):
        existing_file(Path(events), "--events")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    config = load_config(config_file)
    envelope = Envelope(config.sim.account, config.sim.region)
    source: Events | None = None
    if events == "-":
        source = stdin_events(envelope)
    elif events is not None:
        source = read_event_file(Path(events), envelope)  # checked whole before accepting any
    listener = _listener(config, address) if address is not None else None
    sink = CsvRecords(records) if records is not None else None
    if watch is not None:
        watch.sink.inner = sink
    try:
        work = _serve(config, db, source, listener, until_idle, watch.sink if watch else sink, mode)
        summary = loops.run(work, loop_name)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    finally:
        if listener is not None:
            listener.close()
    if sink is not None:
        sink.close()
    if watch is not None:
        watch.write(db)
    _report(summary)


def _durability(text: str) -> Durability:
    if text == "normal":
        return "normal"
    if text == "full":
        return "full"
    raise InputError(None, "--durability", f"must be normal or full (got {text!r})")


def _listener(config: CoreConfig, address: tuple[str, int]) -> socket.socket:
    """The PutEvents socket, bound now (before the database exists); says when requests are
    not authenticated, which restricts it to loopback."""
    from sim.live.put_events import listen_socket

    authenticated = bool(config.sim.ingest_credentials)
    listener = listen_socket(*address, authenticated=authenticated)
    if not authenticated:
        typer.echo(
            "note: PutEvents requests are not authenticated (no sim.ingest_credentials in the "
            "config), so the core listens on loopback only",
            err=True,
        )
    return listener


async def _serve(
    config: CoreConfig,
    db: Path,
    source: Events | None,
    listener: socket.socket | None,
    until_idle: bool,
    sink: Sink | None,
    durability: Durability,
) -> RunSummary:
    from sim.live.service import run_core

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass

    def listening(url: str) -> None:
        typer.echo(f"listening for PutEvents on {url}", err=True)
        sys.stderr.flush()

    return await run_core(
        config,
        db,
        events=source,
        listen=listener,
        until_idle=until_idle,
        sink=sink,
        stop=stop,
        on_listening=listening,
        durability=durability,
    )


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(None, "--listen", f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _report(summary: RunSummary) -> None:
    c = summary.counts
    typer.echo(
        f"accepted {summary.accepted} events in this run; deliveries: {c['delivered']} delivered,"
        f" {c['dlq']} dead-lettered, {c['dropped']} dropped, {c['pending']} pending",
        err=True,
    )
    if summary.orphans:
        typer.echo(
            f"warning: {summary.orphans} pending deliveries belong to rules or targets "
            "that are not in this config",
            err=True,
        )


@core_app.command("dlq")
def dlq(db: DbOption) -> None:
    """Print the dead-letter queue as JSONL: original event plus the S9 attributes."""
    from sim.live.delivery.store import Store

    database(db, must_exist=True)
    store = Store(db)
    try:
        for record in store.dead_letters():
            typer.echo(json.dumps(record, ensure_ascii=False))
    finally:
        store.close()


@app.command("test-event-pattern")
def test_event_pattern_command(
    event_pattern: Annotated[str, typer.Option("--event-pattern", help="Event pattern (JSON).")],
    event: Annotated[str, typer.Option("--event", help="Event (JSON).")],
) -> None:
    """Test an event against an event pattern, like `aws events test-event-pattern`."""
    from sim.live.eventbridge.patterns import InvalidEvent, InvalidEventPattern, test_event_pattern

    try:
        result = test_event_pattern(event_pattern, event)
    except InvalidEventPattern as err:
        raise InputError(None, "--event-pattern", str(err)) from None
    except InvalidEvent as err:
        raise InputError(None, "--event", str(err)) from None
    typer.echo(json.dumps({"Result": result}))
