"""Planning commands: `sim scenario` drafts a bus scenario from a core config or CloudFormation
template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sim.cli import app
from sim.cli.checks import existing_file, new_file
from sim.errors import InputError

# The live config loader and event patterns load inside the command: `sim` starts fast.


@app.command("scenario")
def scenario(
    config_file: Annotated[
        Path,
        typer.Argument(help="Core config or CloudFormation template (what `sim core run` reads)."),
    ],
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", help="Sample events (JSONL) to measure each rule's match fraction on."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the scenario here (default: stdout).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
) -> None:
    """Draft a bus scenario from the template you will deploy: destinations, rules, retry
    policies and DLQs from the template; arrivals and endpoint behaviour marked TODO."""
    from sim.plan.draft import draft_from_files, write_draft

    if events is not None:
        existing_file(events, "--events")
    if out is not None:
        if out.exists() and not force and not out.is_dir():
            raise InputError(None, "--out", f"{out} exists (use --force to replace it)")
        new_file(out, "--out")  # before the config is read: a bad --out is found at once
    draft = draft_from_files(config_file, events)
    if out is None:
        typer.echo(draft.text, nl=False)
        return
    write_draft(draft, out, force=force)
    typer.echo(f"wrote {out}; fill in the TODOs, then: sim check {out}", err=True)
