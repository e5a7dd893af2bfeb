"""`binding sweep`: a file of recipes x seeds, each a normal `binding train` run, on a loopback Ray."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from binding.config import preset
from binding.sweep_file import load_sweep, run_dir
from binding.train import train
from lab.config import apply_overrides
from lab.errors import UserError

SWEEP = """
preset = "smoke"
seeds = [0]
overrides = ["train.hop_loss_weight=0", "train.prev_token_loss_weight=0", "train.max_steps=30"]
[recipes.plain]
[recipes.next-token]
overrides = ["train.next_token_loss_weight=1"]
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("preset = 'smoke'\n[recipes.a]\noverrides = ['train.nope=1']", "recipe 'a'.*nope"),
    ("preset = 'tiny'\n[recipes.a]", "unknown preset 'tiny'"),
    ("preset = 'smoke'\nseed = [1]\n[recipes.a]", "unknown keys \\['seed'\\]"),
    ("preset = 'smoke'\nseeds = [1, 1]\n[recipes.a]", "distinct"),
    ("preset = 'smoke'", "no \\[recipes.NAME\\]"),
    ("preset = 'smoke'\n[recipes.'a/b']", "names a folder"),
    ("preset = ", "not valid TOML"),
])
def test_a_bad_sweep_file_is_refused_with_one_message(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_sweep(write(tmp_path, text))


def test_a_missing_sweep_file_is_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_sweep(tmp_path / "none.toml")


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes() and \
                        (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def test_a_smoke_sweep_trains_every_run_on_ray_and_leaves_no_process_behind(tmp_path):
    spec_file = write(tmp_path, SWEEP)
    out = tmp_path / "sweep"
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")      # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    cmd = [sys.executable, "-m", "binding.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "2",
           "--quiet"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        time.sleep(1)
        assert not _processes_mentioning(ray_tmp), "Ray processes outlived the sweep"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # each run is exactly the `binding train` run of its config
    direct = apply_overrides(preset("smoke"), ["train.hop_loss_weight=0", "train.prev_token_loss_weight=0",
                                               "train.max_steps=30", "train.next_token_loss_weight=1"])
    expected = train(direct, tmp_path / "direct", seed=0, quiet=True)
    got = json.loads((run_dir(out, "next-token", 0) / "results.json").read_text())
    assert {k: v for k, v in got.items() if k != "train_seconds"} == \
        {k: v for k, v in expected.items() if k != "train_seconds"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["recipe"] for r in summary["recipes"]] == ["plain", "next-token"]
    assert all(r["finished"] and r["steps"] == 30 for r in summary["runs"])
    assert "| plain |" in (out / "summary.md").read_text() and (out / "id_accuracy.png").stat().st_size > 0
    assert (out / "sweep.toml").read_text() == SWEEP
    # a rerun finds everything done: no training, no Ray
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Ray" not in again.stderr


def test_a_folder_holding_another_run_is_refused_before_anything_starts(tmp_path):
    spec = load_sweep(write(tmp_path, SWEEP))
    other = apply_overrides(preset("smoke"), ["train.max_steps=10"])
    train(other, run_dir(tmp_path / "sweep", "plain", 0), seed=0, quiet=True)
    from binding.sweep import run_sweep
    with pytest.raises(UserError, match="recipe 'plain' seed 0: .*different config"):
        run_sweep(spec, tmp_path / "sweep")
    assert not run_dir(tmp_path / "sweep", "next-token", 0).exists()


def test_report_only_summarises_unfinished_runs(tmp_path):
    spec_file = write(tmp_path, SWEEP)
    out = tmp_path / "sweep"
    cfg = load_sweep(spec_file).config(load_sweep(spec_file).recipes[0])
    env = {**os.environ, "BINDING_CRASH_AT_STEP": "20"}
    subprocess.run([sys.executable, "-m", "binding.cli", "train", "--preset", "smoke", "--quiet", "--out",
                    str(run_dir(out, "plain", 0)), "train.hop_loss_weight=0", "train.prev_token_loss_weight=0",
                    "train.max_steps=30"], env=env, capture_output=True)
    assert cfg.train.max_steps == 30
    done = subprocess.run([sys.executable, "-m", "binding.cli", "sweep", str(spec_file), "--out", str(out),
                           "--report-only"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = json.loads((out / "summary.json").read_text())["runs"]
    plain = next(r for r in runs if r["recipe"] == "plain")
    assert plain["started"] and not plain["finished"] and plain["steps"] == 20
    assert "Not started yet: next-token seed 0" in (out / "summary.md").read_text()
    assert (out / "id_accuracy.png").exists() and (out / "diagnostics.png").exists()


def test_the_trend_extrapolates_only_a_slope_clearly_above_noise():
    from binding.sweep_report import trend

    rising = [(s, 0.25 + 0.01 * s / 1000) for s in range(500, 20001, 500)]   # +0.1 per 10k steps
    t = trend(rising)
    assert t["slope_per_10k"] == pytest.approx(0.1) and t["slope_se"] == pytest.approx(0.0, abs=1e-9)
    assert t["extrapolated_step_to_0.99"] == pytest.approx(20000 + (0.99 - 0.45) / 0.1 * 1e4, abs=1)
    flat = [(s, 0.245 + (0.01 if (s // 500) % 2 else -0.01)) for s in range(500, 20001, 500)]   # noise only
    t = trend(flat)
    assert abs(t["slope_per_10k"]) < 2 * t["slope_se"] and t["extrapolated_step_to_0.99"] is None
    assert trend(rising[:5])["slope_per_10k"] is None   # too few evaluations to say


def test_a_worker_killed_mid_run_is_one_line_and_the_run_resumes_later(tmp_path):
    spec_file = write(tmp_path, SWEEP.replace("train.max_steps=30", "train.max_steps=100000")
                      .replace('[recipes.next-token]\noverrides = ["train.next_token_loss_weight=1"]\n', ""))
    out = tmp_path / "sweep"
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-m", "binding.cli", "sweep", str(spec_file), "--out", str(out),
                             "--workers", "1", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        metrics = run_dir(out, "plain", 0) / "metrics.jsonl"
        deadline = time.time() + 240
        while not (metrics.exists() and metrics.stat().st_size) and time.time() < deadline:
            time.sleep(0.5)
        from lab.ray_local import session_pids   # this sweep's Ray processes only, not another cluster's

        workers = [p for p in session_pids(proc.pid) if p in _processes_mentioning("ray::_train_one")]
        assert workers, "no training worker found"
        for pid in workers:
            os.kill(pid, 9)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "Traceback" not in err, err
        assert "failed: plain seed 0: " in err and "rerun the sweep to resume it" in err
    finally:
        proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert metrics.exists() and not (run_dir(out, "plain", 0) / "results.json").exists()


def test_a_gpu_sweep_needs_a_gpu_share_and_a_cluster_that_has_one(tmp_path):
    from binding.sweep import run_sweep
    cuda = load_sweep(write(tmp_path, SWEEP.replace('"train.max_steps=30"', '"train.max_steps=30", "train.device=cuda"')))
    with pytest.raises(UserError, match="recipe 'plain' trains on train.device=cuda: .*--gpus-per-task"):
        run_sweep(cuda, tmp_path / "cuda")          # else every run would land on one GPU, uncounted
    cpu = load_sweep(write(tmp_path, SWEEP.replace('"train.max_steps=30"', '"train.max_steps=30", "train.device=cpu"')))
    with pytest.raises(UserError, match="--gpus-per-task 0.5 but recipe 'plain' trains on train.device=cpu"):
        run_sweep(cpu, tmp_path / "cpu", gpus_per_task=0.5)
    import torch
    if torch.cuda.is_available():
        return   # the last check needs a cluster without GPUs
    auto = load_sweep(write(tmp_path, SWEEP.replace('"train.max_steps=30"', '"train.max_steps=30", "train.device=auto"')))
    with pytest.raises(UserError, match="no node of this Ray cluster has that many GPUs"):
        run_sweep(auto, tmp_path / "auto", workers=1, gpus_per_task=0.5)   # this machine has none: waiting would be for ever
    assert not any((tmp_path / "auto").glob("*/seed0/metrics.jsonl"))
    import ray
    assert not ray.is_initialized()
