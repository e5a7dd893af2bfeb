"""Run folders: one writer at a time, strict JSON logs, files with the usual mode."""
import json
import os
import signal
import subprocess
import sys

import pytest

from lab.errors import UserError
from lab.io import FILE_MODE, atomic_write_json
from lab.rundir import MetricsLog, held

HOLD = "import sys, time; from lab.rundir import held\nwith held(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with held(tmp_path / "run"):
        with pytest.raises(UserError, match=rf"is being written by pid {os.getpid()} on .*use another --out"):
            with held(tmp_path / "run"):
                pass
    with held(tmp_path / "run"):   # released on exit: the next writer gets it
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            with held(tmp_path / "run"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with held(tmp_path / "run"):   # no stale lock to clean up by hand
        assert f"pid {os.getpid()}" in (tmp_path / "run" / ".lock").read_text()


def test_json_written_by_the_project_is_strict(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) == {
        "a": None, "b": [None, 1.5], "c": {"d": None}}
    log = MetricsLog(tmp_path / "m.jsonl")
    log.append({"step": 1, "loss": float("nan")})
    log.truncate_after(5)
    assert "NaN" not in (tmp_path / "m.jsonl").read_text() and log.rows() == [{"step": 1, "loss": None}]


def test_written_files_keep_the_usual_mode_not_0600(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == FILE_MODE
