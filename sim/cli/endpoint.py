"""`sim endpoint`: serve a scenario's endpoint model over real HTTP (for clients and validation)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from sim.cli import app, naming_options
from sim.cli.checks import listen_address, new_file
from sim.cli.live import LoopOption, event_loop
from sim.errors import InputError
from sim.scenario.loading import load_scenario


@app.command()
def endpoint(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)],
    port: Annotated[int, typer.Option(help="Port to listen on (0 = any free port).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    log: Annotated[
        Path | None, typer.Option(help="Request log: .csv, else JSONL (secrets redacted).")
    ] = None,
    access_log: Annotated[
        Path | None,
        typer.Option(help='nginx-style access log ("timed combined"), for `sim fit endpoint`.'),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: scenario's).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a scenario key: key.path=value (repeatable)."),
    ] = None,
    oauth_client_id: Annotated[
        str | None, typer.Option(help="Serve POST /oauth/token for this client id.")
    ] = None,
    oauth_client_secret: Annotated[
        str | None,
        typer.Option(
            help="Client secret the token endpoint accepts.", envvar="SIM_OAUTH_CLIENT_SECRET"
        ),
    ] = None,
    oauth_token_lifetime: Annotated[
        float, typer.Option(help="Lifetime of issued tokens, seconds.")
    ] = 3600.0,
    loop: Annotated[str | None, LoopOption] = None,
) -> None:
    """Serve a scenario's endpoint: latency, status mix, Retry-After, capacity, incidents, hangs.

    Prints `listening on URL` once ready; runs until Ctrl-C or SIGTERM.
    """
    from sim.endpoint.access_log import AccessLog
    from sim.endpoint.server import EndpointServer, OAuthSettings, RequestLog, describe, serve
    from sim.live.delivery import loops

    loop_name = event_loop(loop)
    with naming_options(scenario_file, sets=set_ or []):
        scenario = load_scenario(scenario_file, set_ or [])
    if (oauth_client_id is None) != (oauth_client_secret is None):
        raise InputError(None, None, "give both --oauth-client-id and --oauth-client-secret")
    if seed is not None and seed < 0:
        raise InputError(None, "--seed", f"must be 0 or more (got {seed})")
    if not 0 < oauth_token_lifetime < math.inf:
        problem = f"must be a positive number of seconds (got {oauth_token_lifetime:g})"
        raise InputError(None, "--oauth-token-lifetime", problem)
    oauth = None
    if oauth_client_id is not None and oauth_client_secret is not None:
        oauth = OAuthSettings(oauth_client_id, oauth_client_secret, oauth_token_lifetime)
    for path, option in ((log, "--log"), (access_log, "--access-log")):
        if path is not None:
            new_file(path, option)
    listen_address(host, port, "--host", "--port")  # before the log files are created
    created = [p for p in (log, access_log) if p is not None and not p.exists()]
    request_log = RequestLog(log, keep=False)
    access = AccessLog(access_log) if access_log is not None else None
    server = EndpointServer(scenario, seed=seed, oauth=oauth, log=request_log, access_log=access)
    typer.echo(f"serving {describe(scenario)}", err=True)
    try:
        serve(server, host, port, announce=_announce, run=lambda main: loops.run(main, loop_name))
    except OSError as err:  # taken since it was checked
        for path in created:
            path.unlink(missing_ok=True)
        raise InputError(None, "--port", f"cannot listen on {host}:{port}: {err}") from None


def _announce(url: str) -> None:
    typer.echo(f"listening on {url}")
