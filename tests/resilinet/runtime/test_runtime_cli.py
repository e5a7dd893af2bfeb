"""`resilinet serve` / `resilinet chaos`: bad input is one clear error line (no cluster started),
and a short chaos run end to end writes a report that loses no request."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resilinet.cli import main


@pytest.mark.parametrize("argv, words", [
    (["serve", "--run", "no/such/run"], "run directory not found"),
    (["serve", "--run", "x", "--hop-deadline-s", "0"], "--hop-deadline-s"),
    (["serve", "--run", "x", "--port", "70000"], "--port"),
    (["chaos", "--run", "x", "--duration", "0"], "--duration"),
    (["chaos", "--run", "x", "--clients", "0"], "--clients"),
    (["chaos", "--run", "no/such/run", "--duration", "1"], "run directory not found"),
])
def test_bad_runtime_arguments_are_one_error_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err


@pytest.mark.slow
def test_short_chaos_run_loses_no_request_and_nodes_come_back(tmp_path, capsys):
    # A child process: its Ray cluster must not meet the session cluster of the other tests.
    exe = str(Path(sys.executable).with_name("resilinet"))
    run = tmp_path / "run"
    subprocess.run([exe, "train", "--preset", "cpu", "--out", str(run), "--quiet", "train.epochs=1",
                    "data.limit=600", "model.hidden_units=32"], check=True, capture_output=True, timeout=300)
    out = tmp_path / "chaos"
    code = subprocess.run([exe, "chaos", "--run", str(run), "--out", str(out), "--duration", "8",
                           "--kill-every", "2.5", "--hang-every", "4", "--hang-s", "1", "--clients", "2",
                           "--batch", "8"], capture_output=True, timeout=300).returncode
    report = json.loads((out / "chaos.json").read_text())
    assert report["requests"]["lost"] == 0 and report["requests"]["failed"] == 0
    assert report["requests"]["answered"] == report["requests"]["sent"] > 0
    assert report["kills"] >= 2 and report["all_nodes_up_at_end"]
    assert (out / "chaos.md").read_text().startswith("# ResiliNet chaos run")
    assert code == (0 if report["verdict"]["ok"] else 1)


def test_relay_input_switches_the_direct_input_off():
    from resilinet.cli import _runtime_config, build_parser

    def cfg(*extra):
        return _runtime_config(build_parser().parse_args(["serve", "--run", "x", *extra]))

    assert cfg().input_direct is True and cfg("--relay-input").input_direct is False


def test_runtime_overrides_apply_and_a_flag_given_wins():
    from resilinet.cli import _runtime_config, build_parser

    def cfg(command, *extra):
        return _runtime_config(build_parser().parse_args([command, "--run", "x", *extra]))

    assert cfg("serve").port == 8100 and cfg("chaos").port == 0
    got = cfg("serve", "runtime.batch_examples=0", "runtime.hop_deadline_s=0.2", "runtime.port=9000")
    assert (got.batch_examples, got.hop_deadline_s, got.port) == (0, 0.2, 9000)
    assert cfg("serve", "--hop-deadline-s", "0.3", "runtime.hop_deadline_s=0.2").hop_deadline_s == 0.3


@pytest.mark.parametrize("argv, words", [
    (["serve", "--run", "x", "train.epochs=2"], "runtime.* overrides only"),
    (["serve", "--run", "x", "runtime.batch_examples=-1"], "runtime.batch_examples must be >= 0"),
    (["chaos", "--run", "x", "runtime.nope=1"], "unknown config field 'runtime.nope'"),
])
def test_bad_runtime_overrides_are_one_error_line(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_config_lists_the_runtime_section_with_its_help(capsys):
    assert main(["config", "--preset", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("runtime.hop_deadline_s"))
    assert "0.5" in row and "dead for the request" in row
    assert any(line.startswith("model.method") for line in out.splitlines())
