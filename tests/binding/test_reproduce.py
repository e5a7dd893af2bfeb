"""`binding reproduce`'s job scheduler: dependency order, and the analysis jobs beside the training."""
import sys
from pathlib import Path

import pytest

from binding import reproduce
from lab.errors import UserError


def fake_commands(monkeypatch, tmp_path, fail: str = ""):
    """Each job appends "start NAME" / "end NAME" to a log instead of training; `fail` names one that fails."""
    log = tmp_path / "order.txt"

    def command(preset, out, overrides, job):
        name = reproduce._job_name(job)
        code = (f"import time; open({str(log)!r}, 'a').write('start {name}\\n'); time.sleep(0.05); "
                f"open({str(log)!r}, 'a').write('end {name}\\n'); raise SystemExit({int(name == fail)})")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(reproduce, "_command", command)
    return log


def test_jobs_start_after_their_dependencies_and_analyses_after_their_regime(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path)
    reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=True)
    events = log.read_text().split("\n")[:-1]
    at = {e: i for i, e in enumerate(events)}
    for regime, deps in reproduce.DEPENDS.items():
        for d in deps:
            dep = "encoder" if d == "@encoder" else f"{d}-seed0"
            assert at[f"end {dep}"] < at[f"start {regime}-seed0"]
        assert at[f"end {regime}-seed0"] < at[f"start analyze-{regime}-seed0"]
    assert sum(e.startswith("start analyze-") for e in events) == len(reproduce.REGIME_ORDER)


def test_without_analysis_no_analysis_job_runs(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path)
    reproduce.run_jobs("smoke", tmp_path, [0, 1], [], workers=2, quiet=True, analysis=False)
    events = log.read_text().split("\n")[:-1]
    assert not any("analyze-" in e for e in events) and sum(e.startswith("start") for e in events) == 13


def test_a_failed_job_blocks_what_depends_on_it_and_is_named(monkeypatch, tmp_path):
    log = fake_commands(monkeypatch, tmp_path, fail="noise-text-seed0")
    with pytest.raises(UserError, match="noise-text-seed0.*noise-image-text-seed0"):
        reproduce.run_jobs("smoke", tmp_path, [0], [], workers=2, quiet=True, analysis=True)
    events = log.read_text()
    assert "start image-text-seed0" in events and "start noise-image-text-seed0" not in events


def test_each_job_is_a_binding_curriculum_command():
    train = reproduce._command("cpu", Path("o"), ["train.lr=1e-3"], ("image-text", 1))
    analyse = reproduce._command("cpu", Path("o"), ["train.lr=1e-3"], (reproduce.ANALYZE + "image-text", 1))
    assert train[2:4] == ["binding.cli", "curriculum"] and train[-1] == "train.lr=1e-3"
    assert "--analyze" not in train and analyse == train[:-1] + ["--analyze", "train.lr=1e-3"]
    assert "--encoder-only" in reproduce._command("cpu", Path("o"), [], ("@encoder", 0))
