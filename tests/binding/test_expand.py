"""Vocabulary expansion (appendix D): old tokens keep their meaning, new ones are learned, the stage
resumes like every other, and an impossible expansion is refused with one message."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from binding.config import preset
from binding.curriculum import regime_stages, run_regime
from binding.evaluate import token_predictor
from binding.expand import expand_state, old_token_ids, retokenize
from binding.model import Transformer
from binding.run import load_trained
from binding.task import TaskConfig, Vocab, sample_batch
from binding.train import Stage, plan_stage
from lab.config import apply_overrides
from lab.errors import UserError

SMOKE = preset("smoke")


def test_expansion_keeps_every_output_on_old_vocabulary_inputs():
    old_task = SMOKE.task
    new_cfg = SMOKE.expanded()
    old, new = Vocab.of(old_task), Vocab.of(new_cfg.task)
    assert (new.n_colors, new.n_shapes, new.n_items) == (16, 16, 10)
    torch.manual_seed(0)
    model = Transformer(SMOKE.model, old.size).eval()
    grown = Transformer(new_cfg.model, new.size).eval()
    grown.load_state_dict(expand_state(model.state_dict(), old, new, seed=0))
    batch = sample_batch(old_task, 64, np.random.default_rng(0))
    with torch.no_grad():
        before = model(batch.tokens, positions=batch.query_pos)                          # [B, old V]
        after = grown(retokenize(batch.tokens, old, new), positions=batch.query_pos)     # [B, new V]
    assert torch.allclose(after[:, old_token_ids(old, new)], before, atol=1e-5)
    assert after.shape[1] == new.size > before.shape[1]


def test_new_rows_look_like_their_kind():
    old, new = Vocab(4, 4, 4), Vocab(8, 8, 8)
    w = torch.zeros(old.size, 3)
    w[old.color0:old.shape0] = 10.0 + torch.randn(4, 3) * 0.1
    w[old.item0:] = -10.0 + torch.randn(4, 3) * 0.1
    grown = expand_state({"embed.weight": w, "unembed.weight": w}, old, new, seed=1)["embed.weight"]
    assert grown[new.color0 + 4:new.shape0].mean() == pytest.approx(10.0, abs=0.3)
    assert grown[new.item0 + 4:].mean() == pytest.approx(-10.0, abs=0.3)


# the cpu preset's model (with its aids) on a small task learns it in ~300 steps
LEARNS = ["task.n_colors=8", "task.n_shapes=8", "task.n_items=6", "task.train_n=2,3", "task.id_n=2,3",
          "task.ood_n=4,5", "model.n_layers=4", "model.d_model=64", "model.n_heads=4", "model.d_ff=256",
          "model.init_std=0", "model.max_len=64", "train.hop_loss_layer=2", "train.max_steps=1500",
          "train.lr=2e-3", "train.batch_size=64", "train.eval_every=50", "train.stop_threshold=0.95",
          "train.extra_steps=0", "curriculum.expand_n_colors=12", "curriculum.expand_n_shapes=12",
          "curriculum.expand_n_items=8", "curriculum.stage_max_steps=1000", "curriculum.stage_lr=2e-3",
          "curriculum.stage_extra_steps=0", "train.final_samples_per_n=200"]


def test_an_expanded_and_trained_model_answers_with_new_tokens(tmp_path):
    cfg = apply_overrides(SMOKE, LEARNS)
    res = run_regime("text-only+expand", cfg, tmp_path, seed=0)
    assert res["ood_range"] == [4, 8] and [s["stage"] for s in res["stages"]] == ["text", "text-expand"]
    model, stage_cfg, _ = load_trained(res["final_run_dir"])
    task, new = stage_cfg.task, Vocab.of(stage_cfg.task)
    # examples drawn only from the new colours, shapes and items
    only_new = TaskConfig(n_colors=4, n_shapes=4, n_items=2, train_n=(2, 2), id_n=(2, 2), ood_n=(2, 2))
    batch = sample_batch(only_new, 400, np.random.default_rng(5), split="eval")
    small = Vocab.of(only_new)
    shift = torch.tensor(list(range(small.color0)) + [new.color0 + 8 + i for i in range(4)]
                         + [new.shape0 + 8 + i for i in range(4)] + [new.item0 + 6 + i for i in range(2)])
    moved = dataclasses.replace(batch, tokens=shift[batch.tokens], answer=shift[batch.answer])
    right = (token_predictor(model, "cpu")(moved) == moved.answer).float().mean().item()
    assert task.n_colors == 12 and right > 0.8   # chance: 1/2


def test_the_expansion_stage_resumes_exactly_after_kill_9(tmp_path):
    cli = [sys.executable, "-m", "binding.cli", "curriculum", "--preset", "smoke", "--quiet"]
    for out in ("whole", "cut"):
        subprocess.run([*cli, "--regime", "text-only", "--out", str(tmp_path / out)], check=True, capture_output=True)
    subprocess.run([*cli, "--regime", "text-only+expand", "--out", str(tmp_path / "whole")], check=True,
                   capture_output=True)
    killed = subprocess.run([*cli, "--regime", "text-only+expand", "--out", str(tmp_path / "cut")],
                            capture_output=True, env={**os.environ, "BINDING_CRASH_AT_STEP": "10"})
    assert killed.returncode == -9
    subprocess.run([*cli, "--regime", "text-only+expand", "--out", str(tmp_path / "cut")], check=True,
                   capture_output=True)

    def rows(out):
        log = tmp_path / out / "seed0" / "text" / "text-expand" / "metrics.jsonl"
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in log.read_text().splitlines()]
    assert rows("whole") == rows("cut") and len(rows("whole")) >= 2


@pytest.mark.parametrize("overrides, message", [
    (["curriculum.expand_n_items=4"], "expand_n_items=4 is smaller than the trained vocabulary"),
    (["model.pos_encoding=learned", "curriculum.expand_n_items=12", "curriculum.expand_n_colors=16",
      "curriculum.expand_n_shapes=16"], "learned positions stop at model.max_len=32"),
    (["curriculum.expand_n_colors=0", "curriculum.expand_n_shapes=0", "curriculum.expand_n_items=0"],
     "needs curriculum.expand_n_colors"),
])
def test_an_impossible_expansion_is_refused_before_training(tmp_path, overrides, message):
    cfg = apply_overrides(SMOKE, overrides)
    with pytest.raises(UserError, match=message):
        run_regime("text-only+expand", cfg, tmp_path, seed=0)
    assert not (tmp_path / "seed0").exists()


def test_any_main_regime_can_end_with_the_expansion_and_others_are_named():
    cur = SMOKE.curriculum
    assert [s.tag for s in regime_stages("image-text+expand", cur)] == ["text", "image", "mix20", "mix20-expand"]
    assert [s.tag for s in regime_stages("appendix", cur)] == ["text", "noise", "image", "mix20", "mix20-expand"]
    assert [s.tag for s in regime_stages("noise-text+expand", cur)][-1] == "text-expand"
    with pytest.raises(UserError, match="unknown regime 'bogus\\+expand'"):
        regime_stages("bogus+expand", cur)


def test_the_expansion_stage_has_its_own_rate_and_extra_steps(tmp_path):
    """curriculum.expand_lr / expand_extra_steps: the expansion (also one that continues a mix)
    learns at its own rate and trains (and cools down) longer after its threshold holds; every
    other later stage keeps its mode's rate and stage_extra_steps; 0 falls back to those."""
    cfg = apply_overrides(SMOKE, ["curriculum.stage_extra_steps=10", "curriculum.expand_extra_steps=30",
                                  "curriculum.stage_cooldown=true", "curriculum.stage_lr=1e-3",
                                  "curriculum.mix_stage_lr=5e-4", "curriculum.expand_lr=2e-3"])
    mix_expand = regime_stages("image-text+expand", cfg.curriculum)[-1]
    stages = [mix_expand, Stage("mix", 0.2), Stage("noise")]
    plans = {s.tag: plan_stage(cfg, s, 1, parent=tmp_path) for s in stages}
    assert {t: (p.schedule.lr, p.extra_steps, p.schedule.cooldown_steps) for t, p in plans.items()} == {
        "mix20-expand": (2e-3, 30, 30), "mix20": (5e-4, 10, 10), "noise": (1e-3, 10, 10)}
    fallback = apply_overrides(cfg, ["curriculum.expand_extra_steps=0", "curriculum.expand_lr=0"])
    plan = plan_stage(fallback, mix_expand, 1, parent=tmp_path)
    assert (plan.schedule.lr, plan.extra_steps) == (5e-4, 10)
    for bad, message in (("expand_extra_steps=-1", "expand_extra_steps must be >= 0"),
                         ("expand_lr=-1", "expand_lr must be >= 0")):
        with pytest.raises(UserError, match=message):
            apply_overrides(cfg, [f"curriculum.{bad}"])
