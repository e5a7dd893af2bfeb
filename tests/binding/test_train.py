"""Training runs: the run directory's contents, early stopping, and exact resume after kill -9."""
import json
import os
import subprocess
import sys

import pytest

from binding.config import preset
from binding.run import load_trained
from binding.train import lr_at, train
from lab.config import apply_overrides
from lab.errors import UserError

SMOKE = preset("smoke")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "binding.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def comparable(run_dir):
    """Everything a run reports, minus wall-clock fields."""
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("train_seconds")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return results, rows


def test_run_directory_holds_config_metrics_checkpoint_and_results(tmp_path):
    results = train(SMOKE, tmp_path / "run", seed=3, quiet=True)
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 3 and config["git_commit"] and config["config"]["model"]["n_layers"] == 2
    assert (run / "checkpoint.safetensors").exists() and (run / "checkpoint.json").exists()
    for key in ("accuracy_by_n", "id_accuracy", "ood_accuracy", "id_range", "ood_range", "samples_per_n"):
        assert key in results
    assert set(results["accuracy_by_n"]) == {"2", "3", "4", "5", "6"}
    assert results["id_range"] == [2, 4] and results["ood_range"] == [5, 6]
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == SMOKE.train.max_steps // SMOKE.train.eval_every
    model, cfg, seed = load_trained(run)
    assert seed == 3 and cfg == SMOKE


def test_same_seed_gives_the_same_run(tmp_path):
    train(SMOKE, tmp_path / "a", seed=1, quiet=True)
    train(SMOKE, tmp_path / "b", seed=1, quiet=True)
    assert comparable(tmp_path / "a") == comparable(tmp_path / "b")


def test_resume_after_kill_9_ends_with_identical_metrics(tmp_path):
    uninterrupted = tmp_path / "whole"
    train(SMOKE, uninterrupted, seed=5, quiet=True)
    run = tmp_path / "killed"
    # the child SIGKILLs itself at step 30, after the checkpoint at step 20 and two more evaluations
    crashed = run_cli("train", "--preset", "smoke", "--out", str(run), "--seed", "5", "--quiet",
                      env={"BINDING_CRASH_AT_STEP": "30"})
    assert crashed.returncode == -9
    assert not (run / "results.json").exists()
    assert json.loads((run / "checkpoint.json").read_text())["state"]["step"] == 20
    resumed = run_cli("train", "--preset", "smoke", "--out", str(run), "--seed", "5", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert comparable(run) == comparable(uninterrupted)


def test_early_stopping_ends_the_run_after_the_threshold_holds_plus_extra_steps(tmp_path):
    # a threshold of 0 holds at every evaluation: stop after `stop_patience` evaluations + extra steps
    cfg = apply_overrides(SMOKE, ["train.stop_threshold=0", "train.stop_patience=2", "train.extra_steps=5"])
    results = train(cfg, tmp_path / "r", seed=0, quiet=True)
    assert results["threshold_step"] == 2 * cfg.train.eval_every
    assert results["steps"] == results["threshold_step"] + 5
    rows = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["aids_on"] and "hop_loss" in rows[0]
    assert not rows[-1]["aids_on"] and "hop_loss" not in rows[-1]  # the training aids switch off


def test_a_run_directory_with_another_config_is_refused(tmp_path):
    train(SMOKE, tmp_path / "r", seed=0, quiet=True)
    with pytest.raises(UserError, match="different config"):
        train(SMOKE, tmp_path / "r", seed=1, quiet=True)
    with pytest.raises(UserError, match="different config"):
        train(apply_overrides(SMOKE, ["train.lr=0.5"]), tmp_path / "r", seed=0, quiet=True)


def test_a_run_written_before_a_config_field_existed_is_still_reused(tmp_path):
    first = train(SMOKE, tmp_path / "r", seed=0, quiet=True)
    path = tmp_path / "r" / "config.json"
    saved = json.loads(path.read_text())
    assert saved["config"]["train"].pop("first_hop_fraction") == 0.0  # as an older version wrote it
    path.write_text(json.dumps(saved))
    assert train(SMOKE, tmp_path / "r", seed=0, quiet=True) == first


def test_learning_rate_warms_up_then_decays():
    tc = SMOKE.train
    lrs = [lr_at(s, tc) for s in range(tc.max_steps)]
    assert lrs[0] < lrs[tc.warmup_steps - 1] == pytest.approx(tc.lr)
    assert lrs[-1] == pytest.approx(tc.lr * tc.min_lr_ratio, rel=0.05)
    assert all(a >= b for a, b in zip(lrs[tc.warmup_steps:], lrs[tc.warmup_steps + 1:]))


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    train(SMOKE, tmp_path / "r", seed=0, quiet=True)
    (tmp_path / "r" / "checkpoint.safetensors").write_bytes(b"garbage")
    out = run_cli("evaluate", "--run", str(tmp_path / "r"))
    assert out.returncode == 2 and "does not match its sidecar" in out.stderr and "Traceback" not in out.stderr


def test_init_from_starts_from_another_runs_final_weights(tmp_path):
    import torch

    from binding.run import build_model, model_weights
    from lab.checkpoint import load_checkpoint

    train(apply_overrides(SMOKE, ["train.max_steps=20"]), tmp_path / "a", seed=0, quiet=True)
    saved = {k[6:]: v for k, v in load_checkpoint(tmp_path / "a" / "checkpoint")[0].items() if k.startswith("model.")}
    model = build_model(SMOKE)
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    model.load_state_dict(model_weights(tmp_path / "a"))   # what train.init_from loads
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    # the run records where it started; a missing run or another architecture is one clear error
    train(apply_overrides(SMOKE, ["train.max_steps=10", f"train.init_from={tmp_path / 'a'}"]), tmp_path / "b",
          seed=0, quiet=True)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["config"]["train"]["init_from"] == str(tmp_path / "a")
    with pytest.raises(UserError, match="no checkpoint"):
        train(apply_overrides(SMOKE, [f"train.init_from={tmp_path / 'nowhere'}"]), tmp_path / "c", seed=0, quiet=True)
    with pytest.raises(UserError, match="does not fit"):
        train(apply_overrides(SMOKE, ["model.d_model=64", f"train.init_from={tmp_path / 'a'}"]), tmp_path / "d",
              seed=0, quiet=True)


def test_several_queries_per_example_train_on_every_answer(tmp_path):
    """train.queries_per_example: one query is the plain loss exactly; more add every answer to it;
    the run trains and reports on the paper's one-query task."""
    import numpy as np
    import torch

    from binding.images.contexts import as_context
    from binding.run import build_model
    from binding.task import more_queries, sample_batch
    from binding.train import stage_losses

    model = build_model(SMOKE)
    batch = sample_batch(SMOKE.task, 16, np.random.default_rng(0))
    cb = as_context(batch)
    plain, _ = stage_losses(model, None, cb, SMOKE, False, 0.0, "cpu")
    one = (batch.tokens, batch.query_pos[:, None], batch.answer[:, None])
    assert torch.equal(stage_losses(model, None, cb, SMOKE, False, 0.0, "cpu", one)[0], plain)
    tokens, positions, answers = more_queries(batch, SMOKE.task, 3, np.random.default_rng(1))
    several, _ = stage_losses(model, None, cb, SMOKE, False, 0.0, "cpu", (tokens, positions, answers))
    logits = model(tokens)                                                       # [B, T, V]
    asked = answers != -100
    picked = logits[torch.arange(16)[:, None].expand(-1, 3)[asked], positions[asked]]
    assert torch.allclose(several, torch.nn.functional.cross_entropy(picked, answers[asked]))
    cfg = apply_overrides(SMOKE, ["train.queries_per_example=3", "train.max_steps=20"])
    results = train(cfg, tmp_path / "run", seed=0, quiet=True)
    assert results["steps"] == 20 and "id_accuracy" in results


def test_several_queries_must_fit_the_model(tmp_path):
    # smoke trains N 2..4: 4 queries make 26 tokens, more than the 24 of the longest test example
    fits = apply_overrides(SMOKE, ["task.ood_n=5,5", "model.max_len=24", "train.queries_per_example=3"])
    assert fits.validate().train.queries_per_example == 3
    with pytest.raises(UserError, match="train.queries_per_example=4.*needs 26 positions"):   # refused when built
        train(apply_overrides(fits, ["train.queries_per_example=4"]), tmp_path / "run", seed=0, quiet=True)
    assert not (tmp_path / "run").exists()
