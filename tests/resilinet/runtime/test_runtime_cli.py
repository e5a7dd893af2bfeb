"""`resilinet serve` / `resilinet chaos`: bad input is one clear error line (no cluster started),
and a short chaos run end to end writes a report that loses no request."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lab.ray_local import alive_pids, session_pids
from resilinet.cli import main


@pytest.fixture
def x_folder(tmp_path, monkeypatch):
    """A folder `x` in the working directory: --run must name a folder that exists."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()


@pytest.mark.parametrize("argv, words", [
    (["serve", "--run", "no/such/run"], "--run: no/such/run not found"),
    (["serve", "--run", "x", "--hop-deadline-s", "0"], "--hop-deadline-s"),
    (["serve", "--run", "x", "--port", "70000"], "--port"),
    (["chaos", "--run", "x", "--duration", "0"], "--duration"),
    (["chaos", "--run", "x", "--clients", "0"], "--clients"),
    (["chaos", "--run", "no/such/run", "--duration", "1"], "--run: no/such/run not found"),
])
def test_bad_runtime_arguments_are_one_error_line(argv, words, capsys, x_folder):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err


EXE = str(Path(sys.executable).with_name("resilinet"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "run"
    subprocess.run([EXE, "train", "--preset", "cpu", "--out", str(run), "--quiet", "train.epochs=1",
                    "data.limit=600", "model.hidden_units=32"], check=True, capture_output=True, timeout=300)
    return run


class RayWatch:
    """Every process of the Ray cluster a child command starts, polled while it runs (its
    descendants and the processes naming its session; other Ray clusters on the machine are not
    counted); `left()` waits up to 20 s for them to end and returns those still running."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.proc, self.seen = proc, set()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.proc.poll() is None:
            self.seen |= set(session_pids(self.proc.pid)) - {self.proc.pid}
            time.sleep(0.2)

    def left(self) -> list[int]:
        self.thread.join()
        deadline = time.monotonic() + 20
        while alive_pids(sorted(self.seen)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return alive_pids(sorted(self.seen))


def test_serve_on_a_busy_port_is_one_error_before_ray_starts(tiny_run):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = subprocess.Popen([EXE, "serve", "--run", str(tiny_run), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watch = RayWatch(proc)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == ""
    assert err.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use (another `resilinet "
                                        f"serve`?); pick another with --port, or --port 0 for any free one"]
    assert watch.left() == [] and watch.seen == set()   # no Ray process was ever started


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stopped_by_a_signal_leaves_no_ray_process(tiny_run, sig):
    proc = subprocess.Popen([EXE, "serve", "--run", str(tiny_run), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watch = RayWatch(proc)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "/status", timeout=30) as r:
            assert set(json.load(r)["nodes"]) == {"iot", "e", "f2", "f1", "cloud"}
        assert watch.seen, "the Ray processes of the service were not found"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopping" in err and "Traceback" not in err, err
    assert watch.left() == []


@pytest.mark.slow
def test_serve_interrupted_while_starting_leaves_no_ray_process(tiny_run):
    proc = subprocess.Popen([EXE, "serve", "--run", str(tiny_run), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watch = RayWatch(proc)
    try:
        t0 = time.monotonic()
        while len(watch.seen) < 2:   # Ray's head processes are up; the node processes are not yet
            assert proc.poll() is None and time.monotonic() - t0 < 120
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 130) and "Traceback" not in err, err
    assert watch.left() == []


@pytest.mark.slow
def test_short_chaos_run_loses_no_request_nodes_come_back_and_no_ray_process_is_left(tiny_run, tmp_path):
    # A child process: its Ray cluster must not meet the session cluster of the other tests.
    out = tmp_path / "chaos"
    proc = subprocess.Popen([EXE, "chaos", "--run", str(tiny_run), "--out", str(out), "--duration", "8",
                             "--kill-every", "2.5", "--hang-every", "4", "--hang-s", "1", "--clients", "2",
                             "--batch", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = RayWatch(proc)
    stdout, stderr = proc.communicate(timeout=300)
    report = json.loads((out / "chaos.json").read_text())
    assert report["requests"]["lost"] == 0 and report["requests"]["failed"] == 0
    assert report["requests"]["answered"] == report["requests"]["sent"] > 0
    assert report["kills"] >= 2 and report["all_nodes_up_at_end"]
    assert (out / "chaos.md").read_text().startswith("# ResiliNet chaos run")
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert proc.returncode == (0 if report["verdict"]["ok"] else 1)
    # expected deaths: one line each, no "Unhandled error ... ActorDiedError" dump
    assert "Unhandled error" not in stderr and "Traceback" not in stderr, stderr
    assert watch.seen and watch.left() == []


def test_relay_input_switches_the_direct_input_off(x_folder):
    from resilinet.cli import _runtime_config, build_parser

    def cfg(*extra):
        return _runtime_config(build_parser().parse_args(["serve", "--run", "x", *extra]))

    assert cfg().input_direct is True and cfg("--relay-input").input_direct is False


def test_runtime_overrides_apply_and_a_flag_given_wins(x_folder):
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
def test_bad_runtime_overrides_are_one_error_line(argv, words, capsys, x_folder):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_config_lists_the_runtime_section_with_its_help(capsys):
    assert main(["config", "--preset", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("runtime.hop_deadline_s"))
    assert "0.5" in row and "dead for the request" in row
    for field in ("hop_deadline_max_s", "hop_deadline_quantile", "hop_deadline_factor", "hop_deadline_window"):
        assert any(line.startswith(f"runtime.{field}") for line in out.splitlines()), field
    assert any(line.startswith("model.method") for line in out.splitlines())
