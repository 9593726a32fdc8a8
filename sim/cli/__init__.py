"""The `sim` command line: a thin layer where each command parses options and makes one library call.

Every command module registers itself on `app`. Bad input anywhere surfaces as `InputError`
and becomes one line on stderr and exit code 2 — never a traceback. Option values the
parser refuses (a word where a number goes, a missing argument, an unknown option) are
reported the same way, as `error: --option: problem`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from sim.errors import InputError

try:  # recent typer vendors click; before, it used click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

FLAGS = {
    "account": "--account",
    "batch_size": "--batch-size",
    "dask": "--dask",
    "destination": "--destination",
    "grid": "--vary",
    "layout": "--log-format",
    "listen": "--listen",
    "max_rate": "--max",
    "min_rate": "--min",
    "model_overrides": "--model-set",
    "out_dir": "--out",
    "out_file": "--out",
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


def usage_error(err: click_errors.UsageError) -> InputError:
    """A value the option parser refused, as one error naming the option or argument."""
    param = getattr(err, "param", None)
    kind = getattr(param, "param_type_name", None)
    name: str | None = None
    if kind == "option":
        name = max(param.opts, key=len)  # type: ignore[union-attr]
    elif kind == "argument":
        name = str(param.name or "").upper()  # type: ignore[union-attr]
    elif isinstance(err, click_errors.NoSuchOption | click_errors.BadOptionUsage):
        name = err.option_name
    if isinstance(err, click_errors.MissingParameter):
        problem = "missing (required)"
    elif isinstance(err, click_errors.NoSuchOption):
        problem = "no such option"
        if err.possibilities:
            problem += f" (did you mean {', '.join(sorted(err.possibilities))}?)"
    else:
        problem = err.message.rstrip(".") or err.format_message()
    command = err.ctx.command_path if err.ctx is not None else "sim"
    return InputError(None, name, f"{problem}; see {command} --help")


def _fail(err: InputError) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def _is_help(err: click_errors.UsageError) -> bool:
    """`sim` or `sim core` with nothing after it: click shows the help, which is not an error."""
    return type(err).__name__ == "NoArgsIsHelpError"


class _Group(TyperGroup):
    """Turns InputError and refused option values into `error: file: key: problem` (or
    `error: --option: problem`) and exit code 2, for every command."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except click_errors.UsageError as err:
            if _is_help(err):
                raise
            raise _fail(usage_error(err)) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as err:
            raise _fail(as_flags(err)) from None
        except click_errors.UsageError as err:
            if _is_help(err):
                raise
            raise _fail(usage_error(err)) from None


@contextmanager
def naming_options(
    scenario_file: Path,
    given: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    pairs: Mapping[str, Iterable[str]] | None = None,
) -> Iterator[None]:
    """Say which option set the scenario key an error is about (`... (given with --slo p99)`).

    `given` maps option names to values (`{"replications": -1}` names `--replications` for
    key `replications` when the value is not None); `sets` are `--set key.path=value` items;
    `pairs` maps an option to its `name=value` items under a scenario section (`{"slo":
    [...]}` names `--slo NAME` for key `slo.NAME`).
    """
    options: dict[str, str] = {}
    for name, value in (given or {}).items():
        if value is not None:
            options[name] = f"--{name.replace('_', '-')}"
    for item in sets:
        key = item.partition("=")[0].strip()
        options[key] = f"--set {key}"
    for section, items in (pairs or {}).items():
        for item in items:
            name = item.partition("=")[0].strip()
            options[f"{section}.{name}"] = f"--{section} {name}"
    try:
        yield
    except InputError as err:
        key = err.key or ""
        found = [k for k in options if key == k or key.startswith(k + ".")]
        if err.source not in (None, str(scenario_file)) or not found:
            raise
        option = options[max(found, key=len)]
        raise InputError(err.source, err.key, f"{err.problem} (given with {option})") from None


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

    for optional in ("live", "endpoint", "analysis", "validation", "plan", "fit"):
        try:
            __import__(f"sim.cli.{optional}")
        except ModuleNotFoundError as err:
            if err.name != f"sim.cli.{optional}":
                raise


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
