"""The `sim` command line: a thin layer where each command parses options and makes one library call.

Every command module registers itself on `app`. Bad input anywhere surfaces as `InputError`
and becomes one line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from sim.errors import InputError

FLAGS = {
    "batch_size": "--batch-size",
    "dask": "--dask",
    "grid": "--vary",
    "layout": "--log-format",
    "max_rate": "--max",
    "min_rate": "--min",
    "model_overrides": "--model-set",
    "out_dir": "--out",
    "overload_tolerance": "--max-overload",
    "path": "--path",
    "replications": "--replications",
    "step": "--step",
    "timeout": "--timeout",
    "window": "--start/--end",
    "warm_up": "--warm-up",
    "workers": "--workers",
}
"""The option that sets each library parameter, so an error names what the user typed."""


def as_flags(err: InputError) -> InputError:
    """A library error naming a parameter (`out_dir`, `grid.x`) as one naming its option
    (`--out`, `--vary: x`)."""
    head, _, rest = (err.key or "").partition(".")
    if err.source is None and head in FLAGS:
        return InputError(FLAGS[head], rest or None, err.problem)
    return err


class _Group(TyperGroup):
    """Turns InputError into `error: file: key: problem` and exit code 2, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as err:
            typer.echo(f"error: {as_flags(err)}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Capacity planner for HTTP event delivery (EventBridge API destinations).",
)


def file_plots() -> None:
    """Commands only write plot files: select the non-GUI backend before pyplot loads."""
    import matplotlib

    matplotlib.use("Agg")


def _register() -> None:
    from sim.cli import model  # noqa: F401  (commands register themselves on import)

    for optional in ("live", "endpoint", "analysis", "validation", "fit"):
        try:
            __import__(f"sim.cli.{optional}")
        except ModuleNotFoundError as err:
            if err.name != f"sim.cli.{optional}":
                raise


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
