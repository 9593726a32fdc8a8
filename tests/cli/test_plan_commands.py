"""`sim scenario` on the command line: stdout, --out/--force, one-line errors, and the round
trip `sim scenario ... | sim check -` (through CliRunner, and through a real pipe)."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from tests.support import ROOT
from tests.support.processes import assert_one_error_line, sim_process

runner = CliRunner()
TEMPLATE = ROOT / "examples" / "core-cloudformation.yaml"
CORE = ROOT / "examples" / "core.yaml"
SAMPLE = ROOT / "examples" / "events-sample.jsonl"


@pytest.fixture(autouse=True)
def no_partner_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTNER_API_KEY", raising=False)  # a plan needs no credentials


@pytest.mark.parametrize("config", [CORE, TEMPLATE], ids=["core", "cloudformation"])
def test_scenario_output_passes_sim_check_from_stdin(config):
    drafted = runner.invoke(app, ["scenario", str(config), "--events", str(SAMPLE)])
    assert drafted.exit_code == 0, drafted.output
    assert drafted.stderr == ""
    data = yaml.safe_load(drafted.stdout)
    assert data["rules"][0]["match_fraction"] == 0.5  # 10 of the 20 sample events
    checked = runner.invoke(app, ["check", "-"], input=drafted.stdout)
    assert checked.exit_code == 0, checked.output
    assert "# valid: <stdin>" in checked.stdout
    assert "# bus: 1 destination, 1 rule, 0.5 invocations per event" in checked.stdout


def test_out_writes_the_file_and_refuses_to_replace_it_without_force(tmp_path):
    out = tmp_path / "plan.yaml"
    first = runner.invoke(app, ["scenario", str(CORE), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert first.stdout == "" and f"sim check {out}" in first.stderr
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0
    out.write_text("# my edits\n")
    again = runner.invoke(app, ["scenario", str(CORE), "--out", str(out)])
    assert again.exit_code == 2
    assert "use --force" in assert_one_error_line(again.stderr, "--out")
    assert out.read_text() == "# my edits\n"
    forced = runner.invoke(app, ["scenario", str(CORE), "--out", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_text().startswith("# A bus scenario drafted")


def test_bad_config_and_events_are_one_line_with_exit_2(tmp_path):
    missing = runner.invoke(app, ["scenario", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert_one_error_line(missing.stderr, str(tmp_path / "nope.yaml"))
    events = tmp_path / "events.jsonl"
    events.write_text('{"source": "shop.orders", "detail-type": "OrderPlaced"}\nnot json\n')
    bad = runner.invoke(app, ["scenario", str(CORE), "--events", str(events)])
    assert bad.exit_code == 2
    assert_one_error_line(bad.stderr, str(events), "line 2")


@pytest.mark.live
def test_round_trip_through_a_real_pipe():
    draft = sim_process("scenario", str(TEMPLATE), "--events", str(SAMPLE), stdout=subprocess.PIPE)
    check = sim_process(
        "check", "-", stdin=draft.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert draft.stdout is not None
    draft.stdout.close()  # the check process holds the pipe now
    out, err = check.communicate(timeout=120)
    assert draft.wait(timeout=120) == 0
    assert check.returncode == 0, err
    assert "# valid: <stdin>" in out and "match_fraction: 0.5" in out
