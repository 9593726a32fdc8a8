"""Every `sim` command with bad option values: exit 2, one `error:` line naming the option, no
traceback, nothing left behind (design §9, issue 15).

The commands are discovered from the typer app, so a command added without an entry in
`CASES` fails `test_every_command_has_cases`, and a command with a path or address option
that no case exercises fails `test_every_path_and_address_option_is_covered`. Each case runs
the real command in-process (the whole table in seconds), in a working folder whose every
file is compared before and after: no database, records file, log or report folder may
appear. A few cases also run as real `python -m sim` processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from sim.cli import app
from tests.support import ROOT
from tests.support.processes import core_config_data, write_yaml

runner = CliRunner()
BUS = ROOT / "scenarios" / "validation" / "bus.yaml"

PATH_AND_ADDRESS_OPTIONS = (
    "--db", "--records", "--out", "--metrics", "--log", "--access-log", "--plot", "--events",
    "--listen", "--host", "--port", "--record-live", "--replay-live",
)  # fmt: skip
"""Options naming a file, folder or address: each one a command has must be tested."""


@dataclass(frozen=True)
class Env:
    """Inputs and bad places for the cases; everything under `root`."""

    root: Path
    scenario: Path
    config: Path
    events: Path
    busy_port: int
    unwritable: Path  # a folder no file can be created in (also for root)
    missing: Path  # a folder that does not exist
    a_file: Path  # a regular file, used where a folder is expected
    not_a_report: Path  # a non-empty folder that is not a report folder


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Env], list[str]]
    names: str | Callable[[Env], str]  # what the error line must contain (the option)

    def expected(self, env: Env) -> str:
        return self.names(env) if callable(self.names) else self.names


def c(name: str, names: str | Callable[[Env], str], args: Callable[[Env], list[str]]) -> Case:
    return Case(name, args, names)


def _run(env: Env, *more: str) -> list[str]:
    return ["run", str(env.scenario), *more]


def _core(env: Env, *more: str) -> list[str]:
    return ["core", "run", str(env.config), "--db", str(env.root / "work" / "core.db"), *more]


def _endpoint(env: Env, *more: str) -> list[str]:
    return ["endpoint", str(env.scenario), "--port", "0", *more]


def _analysis(command: str, env: Env, *more: str) -> list[str]:
    return [command, str(env.scenario), "--workers", "1", *more]


FROM_DATA = ROOT / "examples" / "from-data"
BUS = ROOT / "scenarios" / "bus.yaml"


def _fit_endpoint(env: Env, *more: str) -> list[str]:
    return ["fit", "endpoint", str(FROM_DATA / "access.log.gz"), *more]


def _fit_arrivals(env: Env, *more: str) -> list[str]:
    return ["fit", "arrivals", str(FROM_DATA / "metrics.json"), *more]


def _backtest(env: Env, *more: str) -> list[str]:
    production = str(FROM_DATA / "production.yaml")
    return ["backtest", production, "--metrics", str(FROM_DATA / "metrics.json"), *more]


def _sweep(env: Env, *more: str) -> list[str]:
    return _analysis(
        "sweep", env, "--vary", "destination.invocation_rate_limit_per_second=50,60", *more
    )


CASES: dict[str, list[Case]] = {
    "core run": [
        c("listen-busy", "--listen", lambda e: _core(e, "--listen", f"127.0.0.1:{e.busy_port}")),
        c("listen-unknown-host", "--listen", lambda e: _core(e, "--listen", "nohost.invalid:8080")),
        c("listen-not-loopback", "--listen", lambda e: _core(e, "--listen", "0.0.0.0:0")),
        c("listen-not-host-port", "--listen", lambda e: _core(e, "--listen", "127.0.0.1:abc")),
        c("listen-port-too-big", "--listen", lambda e: _core(e, "--listen", "127.0.0.1:70000")),
        c("db-missing-folder", "--db", lambda e: ["core", "run", str(e.config), "--db", str(e.missing / "c.db")]),
        c("db-unwritable", "--db", lambda e: ["core", "run", str(e.config), "--db", str(e.unwritable / "c.db")]),
        c("db-is-a-folder", "--db", lambda e: ["core", "run", str(e.config), "--db", str(e.root)]),
        c("db-under-a-file", "--db", lambda e: ["core", "run", str(e.config), "--db", str(e.a_file / "c.db")]),
        c("records-missing-folder", "--records", lambda e: _core(e, "--records", str(e.missing / "a.csv"))),
        c("metrics-missing-folder", "--metrics", lambda e: _core(e, "--metrics", str(e.missing / "m.json"))),
        c("metrics-unwritable", "--metrics", lambda e: _core(e, "--metrics", str(e.unwritable / "m.json"))),
        c("metrics-is-a-folder", "--metrics", lambda e: _core(e, "--metrics", str(e.root))),
        c("metrics-period", "--metrics-period", lambda e: _core(e, "--metrics", str(e.root / "work" / "m.json"), "--metrics-period", "0s")),
        c("records-unwritable", "--records", lambda e: _core(e, "--records", str(e.unwritable / "a.csv"))),
        c("records-is-a-folder", "--records", lambda e: _core(e, "--records", str(e.root))),
        c("events-missing", "--events", lambda e: _core(e, "--events", str(e.missing / "e.jsonl"))),
        c("events-is-a-folder", "--events", lambda e: _core(e, "--events", str(e.root))),
        c("loop", "--loop", lambda e: _core(e, "--loop", "fastest")),
        c("durability", "--durability", lambda e: _core(e, "--durability", "sometimes")),
        c("unknown-option", "--bogus", lambda e: _core(e, "--bogus")),
        c("no-config", "CONFIG_FILE", lambda e: ["core", "run"]),
        c("config-missing", lambda e: str(e.missing / "core.yaml"), lambda e: ["core", "run", str(e.missing / "core.yaml"), "--db", str(e.root / "work" / "c.db")]),
    ],
    "core dlq": [
        c("db-missing", "--db", lambda e: ["core", "dlq", "--db", str(e.root / "work" / "none.db")]),
        c("db-missing-folder", "--db", lambda e: ["core", "dlq", "--db", str(e.missing / "c.db")]),
        c("db-is-a-folder", "--db", lambda e: ["core", "dlq", "--db", str(e.root)]),
        c("no-db", "--db", lambda e: ["core", "dlq"]),
    ],
    "test-event-pattern": [
        c("pattern", "--event-pattern", lambda e: ["test-event-pattern", "--event-pattern", "{", "--event", "{}"]),
        c("event", "--event", lambda e: ["test-event-pattern", "--event-pattern", '{"source": ["a"]}', "--event", "[1]"]),
        c("no-event", "--event", lambda e: ["test-event-pattern", "--event-pattern", "{}"]),
    ],
    "run": [
        c("replications-word", "--replications", lambda e: _run(e, "--replications", "many")),
        c("replications-zero", "--replications", lambda e: _run(e, "--replications", "0")),
        c("horizon", "--horizon", lambda e: _run(e, "--horizon", "5x")),
        c("horizon-negative", "--horizon", lambda e: _run(e, "--horizon", "-1m")),
        c("seed", "--seed", lambda e: _run(e, "--seed", "-1")),
        c("workers", "--workers", lambda e: _run(e, "--workers", "0", "--out", str(e.root / "work" / "o"))),
        c("set", "--set", lambda e: _run(e, "--set", "horizon=soon")),
        c("out-unwritable", "--out", lambda e: _run(e, "--out", str(e.unwritable / "o"))),
        c("out-under-a-file", "--out", lambda e: _run(e, "--out", str(e.a_file / "o"))),
        c("out-not-a-report", "--out", lambda e: _run(e, "--out", str(e.not_a_report))),
        c("out-is-a-file", "--out", lambda e: _run(e, "--out", str(e.a_file))),
        c("scenario-missing", lambda e: str(e.missing / "s.yaml"), lambda e: ["run", str(e.missing / "s.yaml")]),
    ],
    "check": [
        c("set", "--set", lambda e: ["check", str(e.scenario), "--set", "bogus=1"]),
        c("scenario-missing", lambda e: str(e.missing / "s.yaml"), lambda e: ["check", str(e.missing / "s.yaml")]),
    ],
    "endpoint": [
        c("port-busy", "--port", lambda e: ["endpoint", str(e.scenario), "--port", str(e.busy_port)]),
        c("port-too-big", "--port", lambda e: ["endpoint", str(e.scenario), "--port", "70000"]),
        c("port-negative", "--port", lambda e: ["endpoint", str(e.scenario), "--port", "-1"]),
        c("port-word", "--port", lambda e: ["endpoint", str(e.scenario), "--port", "http"]),
        c("host-unknown", "--host", lambda e: _endpoint(e, "--host", "nohost.invalid")),
        c("host-not-local", "--host", lambda e: _endpoint(e, "--host", "192.0.2.1")),
        c("log-missing-folder", "--log", lambda e: _endpoint(e, "--log", str(e.missing / "r.jsonl"))),
        c("log-unwritable", "--log", lambda e: _endpoint(e, "--log", str(e.unwritable / "r.jsonl"))),
        c("log-is-a-folder", "--log", lambda e: _endpoint(e, "--log", str(e.root))),
        c("access-log-missing-folder", "--access-log", lambda e: _endpoint(e, "--access-log", str(e.missing / "a.log"))),
        c("access-log-unwritable", "--access-log", lambda e: _endpoint(e, "--access-log", str(e.unwritable / "a.log"))),
        c("log-and-busy-port", "--port", lambda e: ["endpoint", str(e.scenario), "--port", str(e.busy_port), "--log", str(e.root / "work" / "r.jsonl")]),
        c("seed", "--seed", lambda e: _endpoint(e, "--seed", "-3")),
        c("token-lifetime-nan", "--oauth-token-lifetime", lambda e: _endpoint(e, "--oauth-client-id", "a", "--oauth-client-secret", "b", "--oauth-token-lifetime", "nan")),
        c("token-lifetime-negative", "--oauth-token-lifetime", lambda e: _endpoint(e, "--oauth-client-id", "a", "--oauth-client-secret", "b", "--oauth-token-lifetime", "-5")),
        c("loop", "--loop", lambda e: _endpoint(e, "--loop", "fastest")),
    ],
    "sweep": [
        c("vary", "--vary", lambda e: _analysis("sweep", e, "--vary", "nonsense")),
        c("replications", "--replications", lambda e: _sweep(e, "--replications", "-1")),
        c("horizon", "--horizon", lambda e: _sweep(e, "--horizon", "later")),
        c("workers", "--workers", lambda e: _sweep(e, "--workers", "0", "--out", str(e.root / "work" / "o"))),
        c("batch-size", "--batch-size", lambda e: _sweep(e, "--batch-size", "0", "--out", str(e.root / "work" / "o"))),
        c("out-unwritable", "--out", lambda e: _sweep(e, "--out", str(e.unwritable / "o"))),
        c("out-missing-parents-and-bad-vary", "--vary", lambda e: _analysis("sweep", e, "--vary", "x", "--out", str(e.missing / "deep" / "o"))),
    ],
    "size": [
        c("min", "--min", lambda e: _analysis("size", e, "--min", "-5")),
        c("max-inf", "--max", lambda e: _analysis("size", e, "--max", "inf")),
        c("max-nan", "--max", lambda e: _analysis("size", e, "--max", "nan")),
        c("step", "--step", lambda e: _analysis("size", e, "--step", "0")),
        c("max-overload", "--max-overload", lambda e: _analysis("size", e, "--max-overload", "2")),
        c("slo", "--slo", lambda e: _analysis("size", e, "--slo", "bogus=1")),
        c("slo-duration", "--slo", lambda e: _analysis("size", e, "--slo", "max_p99_delivery_delay=soon")),
        c("out-unwritable", "--out", lambda e: _analysis("size", e, "--out", str(e.unwritable / "o"))),
        c("destination-on-single", "--destination", lambda e: _analysis("size", e, "--destination", "a")),
        c("account-on-single", "--account", lambda e: _analysis("size", e, "--account")),
        c("bus-without-target", "destinations", lambda e: ["size", str(BUS), "--workers", "1"]),
        c("destination-unknown", "--destination", lambda e: ["size", str(BUS), "--destination", "nope"]),
        c("account-and-destination", "--account", lambda e: ["size", str(BUS), "--account", "--destination", "crm"]),
    ],
    "sensitivity": [
        c("horizon", "--horizon", lambda e: _analysis("sensitivity", e, "--horizon", "-1m")),
        c("replications", "--replications", lambda e: _analysis("sensitivity", e, "--replications", "x")),
        c("out-unwritable", "--out", lambda e: _analysis("sensitivity", e, "--out", str(e.unwritable / "o"))),
        c("out-not-a-report", "--out", lambda e: _analysis("sensitivity", e, "--out", str(e.not_a_report))),
    ],
    "fit endpoint": [
        c("log-missing", lambda e: str(e.missing / "a.log"), lambda e: ["fit", "endpoint", str(e.missing / "a.log")]),
        c("format", "--format", lambda e: _fit_endpoint(e, "--format", "apache")),
        c("timeout", "--timeout", lambda e: _fit_endpoint(e, "--timeout", "soon")),
        c("log-format", "--log-format", lambda e: _fit_endpoint(e, "--log-format", "$nonsense")),
        c("empirical-without-out", "--empirical", lambda e: _fit_endpoint(e, "--empirical")),
        c("out-missing-folder", "--out", lambda e: _fit_endpoint(e, "--out", str(e.missing / "e.yaml"))),
        c("out-unwritable", "--out", lambda e: _fit_endpoint(e, "--out", str(e.unwritable / "e.yaml"))),
        c("out-is-a-folder", "--out", lambda e: _fit_endpoint(e, "--out", str(e.root))),
        c("plot-missing-folder", "--plot", lambda e: _fit_endpoint(e, "--out", str(e.root / "work" / "e.yaml"), "--plot", str(e.missing / "p.png"))),
    ],
    "fit arrivals": [
        c("metrics-missing", lambda e: str(e.missing / "m.json"), lambda e: ["fit", "arrivals", str(e.missing / "m.json")]),
        c("period", "--period", lambda e: _fit_arrivals(e, "--period", "soon")),
        c("out-missing-folder", "--out", lambda e: _fit_arrivals(e, "--out", str(e.missing / "a.yaml"))),
        c("out-unwritable", "--out", lambda e: _fit_arrivals(e, "--out", str(e.unwritable / "a.yaml"))),
        c("plot-unwritable", "--plot", lambda e: _fit_arrivals(e, "--out", str(e.root / "work" / "a.yaml"), "--plot", str(e.unwritable / "p.png"))),
    ],
    "backtest": [
        c("metrics-missing", "--metrics", lambda e: ["backtest", str(e.scenario), "--metrics", str(e.missing / "m.json")]),
        c("metrics-is-a-folder", "--metrics", lambda e: ["backtest", str(e.scenario), "--metrics", str(e.root)]),
        c("replications", "--replications", lambda e: _backtest(e, "--replications", "1")),
        c("fit", "--fit", lambda e: _backtest(e, "--fit", "x")),
        c("start", "--start", lambda e: _backtest(e, "--start", "yesterday")),
        c("arrivals", "--arrivals", lambda e: _backtest(e, "--arrivals", "both")),
        c("warm-up", "--warm-up", lambda e: _backtest(e, "--warm-up", "soon")),
        c("out-unwritable", "--out", lambda e: _backtest(e, "--out", str(e.unwritable / "o"))),
        c("out-not-a-report", "--out", lambda e: _backtest(e, "--out", str(e.not_a_report))),
    ],
    "scenario": [
        c("config-missing", lambda e: str(e.missing / "core.yaml"), lambda e: ["scenario", str(e.missing / "core.yaml")]),
        c("events-missing", "--events", lambda e: ["scenario", str(e.config), "--events", str(e.missing / "e.jsonl")]),
        c("events-is-a-folder", "--events", lambda e: ["scenario", str(e.config), "--events", str(e.root)]),
        c("out-missing-folder", "--out", lambda e: ["scenario", str(e.config), "--out", str(e.missing / "bus.yaml")]),
        c("out-unwritable", "--out", lambda e: ["scenario", str(e.config), "--out", str(e.unwritable / "bus.yaml")]),
        c("out-is-a-folder", "--out", lambda e: ["scenario", str(e.config), "--out", str(e.root)]),
        c("out-exists", "--out", lambda e: ["scenario", str(e.config), "--out", str(e.scenario)]),
    ],
    "validate": [
        c("replications", "--replications", lambda e: ["validate", str(e.scenario), "--replications", "5"]),
        c("arrivals", "--arrivals", lambda e: ["validate", str(e.scenario), "--arrivals", "both"]),
        c("loop", "--loop", lambda e: ["validate", str(e.scenario), "--loop", "fastest"]),
        c("workers", "--workers", lambda e: ["validate", str(e.scenario), "--workers", "-1"]),
        c("out-unwritable", "--out", lambda e: ["validate", str(e.scenario), "--out", str(e.unwritable / "o")]),
        c("out-two-scenarios", "--out", lambda e: ["validate", str(e.scenario), str(e.scenario), "--out", str(e.root / "work" / "o")]),
        c("set", "--set", lambda e: ["validate", str(e.scenario), "--set", "seed=-4"]),
        c("bus-core-cannot-run", "destinations.1.timeout", lambda e: ["validate", str(BUS), "--set", "destinations.crm.timeout=2s"]),
        c("bus-model-set-unknown-name", "destinations.nowhere", lambda e: ["validate", str(BUS), "--model-set", "destinations.nowhere.timeout=3s"]),
        c("bus-power", "--power", lambda e: ["validate", str(BUS), "--power"]),
        c("bus-record-live", "--record-live", lambda e: ["validate", str(BUS), "--record-live", str(e.root / "work" / "x.npz")]),
        c("bus-model-set-bad-quota", "account.invocation_limit_per_second", lambda e: ["validate", str(BUS), "--model-set", "account.invocation_limit_per_second=-3"]),
        c("record-live-folder", "--record-live", lambda e: ["validate", str(e.scenario), "--record-live", str(e.root)]),
        c("record-live-under-file", "--record-live", lambda e: ["validate", str(e.scenario), "--record-live", str(e.a_file / "x.npz")]),
        c("record-live-two", "--record-live", lambda e: ["validate", str(e.scenario), str(e.scenario), "--record-live", str(e.root / "work" / "x.npz")]),
        c("replay-live-missing", lambda e: str(e.missing / "x.npz"), lambda e: ["validate", "--replay-live", str(e.missing / "x.npz")]),
        c("replay-live-not-npz", lambda e: str(e.scenario), lambda e: ["validate", "--replay-live", str(e.scenario)]),
        c("replay-live-two", "--replay-live", lambda e: ["validate", str(e.scenario), str(e.scenario), "--replay-live", str(e.scenario)]),
        c("replay-and-record", "--record-live", lambda e: ["validate", "--replay-live", str(e.scenario), "--record-live", str(e.root / "work" / "x.npz")]),
        c("power-setting-alone", "--power-setting", lambda e: ["validate", str(e.scenario), "--power-setting", "backoff_base"]),
        c("power-setting-unknown", "--power-setting", lambda e: ["validate", str(e.scenario), "--power", "--power-setting", "nonsense"]),
    ],
}  # fmt: skip


def discovered_commands() -> dict[str, Any]:
    """Every leaf command of the `sim` app, as "group command" -> its click command."""
    found: dict[str, Any] = {}

    def walk(command: Any, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = command

    walk(typer.main.get_command(app), "")
    return found


def _unwritable(root: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: sysfs refuses even root
        return Path("/sys")
    folder = root / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("bad-arguments")
    inputs = root / "inputs"
    inputs.mkdir()
    (root / "work").mkdir()
    scenario = inputs / "s.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "name": "small",
                "horizon": "1m",
                "seed": 1,
                "replications": 2,
                "arrivals": [{"kind": "constant", "rate_per_second": 20}],
                "destination": {"invocation_rate_limit_per_second": 40},
                "endpoint": {
                    "latency": {"kind": "constant", "value": "20ms"},
                    "responses": {200: 1.0},
                },
                "slo": {"max_p99_delivery_delay": "1m"},
            }
        )
    )
    config = inputs / "core.yaml"
    write_yaml(config, core_config_data("http://127.0.0.1:9/", source="x"))
    events = inputs / "events.jsonl"
    events.write_text('{"source": "x", "detail-type": "t", "detail": {}}\n')
    a_file = inputs / "a-file.txt"
    a_file.write_text("not a folder\n")
    not_a_report = inputs / "somebody-s-folder"
    not_a_report.mkdir()
    (not_a_report / "notes.txt").write_text("keep me\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield Env(
            root=root, scenario=scenario, config=config, events=events,
            busy_port=busy.getsockname()[1], unwritable=_unwritable(root),
            missing=root / "missing", a_file=a_file, not_a_report=not_a_report,
        )  # fmt: skip


def _tree(root: Path) -> dict[str, tuple[float, int] | None]:
    """Every path under `root`, with (mtime, size) for files (a folder's own mtime moves when
    a probe file is made and removed in it, which leaves nothing)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime, p.stat().st_size) if p.is_file() else None
        for p in root.rglob("*")
    }


def _invoke(args: list[str], timeout_s: float = 120) -> Any:
    """`sim ARGS` in-process; fails (instead of hanging) if the command starts serving."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(runner.invoke(app, args)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert box, f"sim {' '.join(args)} did not exit within {timeout_s:.0f} s"
    return box[0]


def test_every_command_has_cases() -> None:
    commands = set(discovered_commands())
    assert commands - set(CASES) == set(), "commands without bad-argument cases"
    assert set(CASES) - commands == set(), "cases for commands that no longer exist"


def test_every_path_and_address_option_is_covered() -> None:
    for name, command in discovered_commands().items():
        options = {
            opt
            for param in command.params
            if not getattr(param, "is_flag", False)  # `sim run --records` is a switch
            for opt in getattr(param, "opts", [])
        }
        tested = {case.names for case in CASES[name] if isinstance(case.names, str)}
        missing = [o for o in PATH_AND_ADDRESS_OPTIONS if o in options and o not in tested]
        assert not missing, f"sim {name}: no bad-value case for {missing}"


ALL = [(command, case) for command, cases in CASES.items() for case in cases]


@pytest.mark.parametrize(
    ("command", "case"), ALL, ids=[f"{command}-{case.name}" for command, case in ALL]
)
def test_a_bad_value_is_one_error_line_naming_the_option_and_leaves_nothing(
    env: Env, command: str, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(env.root / "work")  # default report folders would land here
    before = _tree(env.root)
    result = _invoke(case.args(env))
    output = result.output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert case.expected(env) in errors[0], errors[0]
    assert _tree(env.root) == before, "files were created or changed"


@pytest.mark.slow
@pytest.mark.live
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (lambda e: _core(e, "--listen", f"127.0.0.1:{e.busy_port}"), "--listen"),
        (lambda e: _core(e, "--listen", "nohost.invalid:8080"), "--listen"),
        (lambda e: _core(e, "--records", "/nonexistent/x.csv"), "--records"),
    ],
    ids=["busy-port", "unknown-host", "records-folder-missing"],
)
def test_the_reported_cases_as_real_processes(
    env: Env, args: Callable[[Env], list[str]], option: str
) -> None:
    """The three cases issue 15 found, through the real entry point (`python -m sim`)."""
    before = _tree(env.root)
    process = subprocess.run(
        [sys.executable, "-m", "sim", *args(env)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env.root / "work",
    )
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr and process.stdout == ""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: "), lines
    assert _tree(env.root) == before
