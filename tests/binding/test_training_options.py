"""The mechanism-neutral training options (issue 16): each off by default, each doing what it says,
none supervising an intermediate representation; and the plateau diagnostics."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from binding.config import preset
from binding.hooks import run_with_cache
from binding.diagnostics import attention_targets, diagnostic_batch, plateau_diagnostics
from binding.images.contexts import add_noise
from binding.model import ModelConfig, Transformer
from binding.optim import Optimizers, build_optimizer, muon_matrices
from binding.pool import Pool
from binding.task import PAD, Vocab, is_heldout, sample_batch
from binding.train import next_token_loss, train
from lab.checkpoint import restore_training_state, save_training_state
from lab.config import apply_overrides
from lab.errors import UserError

SMOKE = preset("smoke")
AID_FREE = ["train.hop_loss_weight=0", "train.prev_token_loss_weight=0"]


def smoke(*overrides):
    return apply_overrides(SMOKE, [*AID_FREE, *overrides])


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_options_are_off_by_default():
    tc, mc = preset("cpu").train, preset("cpu").model
    assert (tc.next_token_loss_weight, tc.pool_size, tc.optimizer, mc.attn_init) == (0.0, 0, "adamw", "default")


@pytest.mark.parametrize("override, fragment", [
    ("train.optimizer=sgd", "train.optimizer"), ("model.attn_init=xavier", "model.attn_init"),
    ("train.pool_fraction=1.5", "pool_fraction"), ("train.next_token_loss_weight=-1", "next_token_loss_weight")])
def test_impossible_options_are_refused(override, fragment):
    with pytest.raises(UserError, match=fragment):
        smoke(override)


def test_next_token_loss_is_the_successor_cross_entropy_over_text_tokens_only():
    task = SMOKE.task
    torch.manual_seed(0)
    model = Transformer(SMOKE.model, Vocab.of(task).size)
    batch = sample_batch(task, 16, np.random.default_rng(0))
    cb = add_noise(batch, 12, np.random.default_rng(1))        # noise tokens and padding in the rows
    _, resid = model(cb.tokens, attendable=cb.attendable, return_resid=True)
    got = next_token_loss(model, resid, cb.tokens, cb.text_mask)
    logits = model.readout(resid)
    terms = [torch.nn.functional.cross_entropy(logits[b, t], cb.tokens[b, t + 1])
             for b in range(len(cb)) for t in range(cb.tokens.shape[1] - 1)
             if cb.text_mask[b, t] and cb.text_mask[b, t + 1]]
    assert torch.allclose(got, torch.stack(terms).mean(), atol=1e-5)
    assert (~cb.text_mask & (cb.tokens != PAD)).any()           # there was noise to leave out


def test_next_token_loss_is_logged_and_trains(tmp_path):
    train(smoke("train.next_token_loss_weight=1", "train.max_steps=40"), tmp_path / "r", seed=0, quiet=True)
    log = rows(tmp_path / "r")
    assert all("next_token_loss" in r for r in log)
    assert log[-1]["next_token_loss"] < log[0]["next_token_loss"]


def test_pool_is_fixed_drawn_from_the_training_split_and_mixed_into_every_batch():
    task = SMOKE.task
    pool = Pool(task, 100, 0.25, 32, seed=7)
    assert not is_heldout(pool.batch.tokens.numpy(), task.heldout_fraction).any()
    assert torch.equal(pool.batch.tokens, Pool(task, 100, 0.25, 32, seed=7).batch.tokens)
    fresh = sample_batch(task, pool.fresh, np.random.default_rng(3))
    mixed = pool.mix(fresh, np.random.default_rng(4))
    assert (len(mixed), pool.take, pool.fresh) == (32, 8, 24)
    pool_rows = {tuple(r[r != PAD].tolist()) for r in pool.batch.tokens}
    in_pool = [tuple(r[r != PAD].tolist()) in pool_rows for r in mixed.tokens]
    assert all(in_pool[24:]) and torch.equal(mixed.answer[:24], fresh.answer)


def test_pool_accuracy_is_logged_and_a_small_pool_is_memorised(tmp_path):
    cfg = smoke("train.pool_size=32", "train.pool_fraction=0.5", "train.max_steps=150", "train.lr=5e-3")
    train(cfg, tmp_path / "r", seed=0, quiet=True)
    log = rows(tmp_path / "r")
    assert all("pool_accuracy" in r for r in log)
    assert log[-1]["pool_accuracy"] > log[-1]["id_accuracy"] + 0.2   # repeated sequences are learned first


def test_muon_updates_the_block_matrices_and_adamw_the_rest():
    model = Transformer(SMOKE.model, 40)
    opt = build_optimizer("muon", list(model.parameters()), model, 1e-3, 0.01)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    assert in_muon == {id(p) for p in muon_matrices(model)} and all(p.ndim == 2 for p in muon_matrices(model))
    assert {id(p) for g in adamw.param_groups for p in g["params"]} == {id(p) for p in model.parameters()} - in_muon
    assert id(model.embed.weight) not in in_muon and id(model.unembed.weight) not in in_muon


def _step(model, opt, seed):
    torch.manual_seed(seed)
    loss = model(torch.randint(5, 40, (4, 10)), positions=torch.full((4,), 9)).logsumexp(-1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_combined_optimizer_state_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    a, b = Transformer(SMOKE.model, 40), Transformer(SMOKE.model, 40)
    opt_a = build_optimizer("muon", list(a.parameters()), a, 1e-3, 0.01)
    _step(a, opt_a, 1)
    save_training_state(tmp_path / "ck", {"model": a}, opt_a, {})
    opt_b = build_optimizer("muon", list(b.parameters()), b, 1e-3, 0.01)
    restore_training_state(tmp_path / "ck", {"model": b}, opt_b)
    assert isinstance(opt_b, Optimizers)
    _step(a, opt_a, 2)
    _step(b, opt_b, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_a_muon_pool_next_token_run_resumes_exactly_after_kill_9(tmp_path):
    overrides = [f"train.{k}" for k in ("optimizer=muon", "pool_size=64", "next_token_loss_weight=1")] + \
        ["model.attn_init=mimetic", *AID_FREE]
    cli = [sys.executable, "-m", "binding.cli", "train", "--preset", "smoke", "--quiet"]
    subprocess.run([*cli, "--out", str(tmp_path / "whole"), *overrides], check=True, capture_output=True)
    killed = subprocess.run([*cli, "--out", str(tmp_path / "cut"), *overrides], capture_output=True,
                            env={**os.environ, "BINDING_CRASH_AT_STEP": "30"})
    assert killed.returncode == -9
    subprocess.run([*cli, "--out", str(tmp_path / "cut"), *overrides], check=True, capture_output=True)
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(rows(tmp_path / "whole")) == strip(rows(tmp_path / "cut"))


@pytest.mark.parametrize("pos_encoding, factor", [("nope", 5.0), ("rope", 1.5)])
def test_mimetic_init_makes_equal_tokens_attract_from_step_0(pos_encoding, factor):
    """The last token repeats the one 14 positions back: with mimetic init it attends there far
    more than uniformly (1/20); RoPE's rotation over that distance weakens the match."""
    tokens = torch.randint(10, 60, (64, 20), generator=torch.Generator().manual_seed(0))
    tokens[:, 19] = tokens[:, 5]
    mass = {}
    for init in ("default", "mimetic"):
        torch.manual_seed(0)
        cfg = ModelConfig(n_layers=1, d_model=64, n_heads=4, d_ff=64, max_len=64, init_std=0.0,
                          pos_encoding=pos_encoding, attn_init=init)
        _, cache = run_with_cache(Transformer(cfg, 64), ["blocks.0.attn.hook_pattern"], tokens)
        mass[init] = cache["blocks.0.attn.hook_pattern"][:, :, 19, 5].mean().item()
    assert mass["default"] == pytest.approx(1 / 20, abs=0.01)
    assert mass["mimetic"] > factor / 20


def test_diagnostic_targets_point_at_the_queried_object_and_its_association():
    batch = diagnostic_batch(SMOKE.task, 64, seed=0)
    rows_ = np.arange(64)
    t = attention_targets(batch)
    tokens = batch.tokens.numpy()
    q_colour = tokens[rows_, batch.query_pos.numpy()]
    assert (tokens[rows_, t["query_color"]] == q_colour).all()
    assert (tokens[rows_, t["query_shape"]] == batch.hop_target.numpy()).all()
    assert (tokens[rows_, t["assoc_shape"]] == batch.hop_target.numpy()).all()
    assert (tokens[rows_, t["assoc_item"]] == batch.answer.numpy()).all()
    assert (t["assoc_shape"] > 2 * batch.n.numpy()).all()          # in the associations, after [CTX_END]


def test_plateau_diagnostics_are_logged_at_every_evaluation(tmp_path):
    train(smoke("train.max_steps=20"), tmp_path / "r", seed=0, quiet=True)
    for r in rows(tmp_path / "r"):
        assert set(r["slot_accuracy"]) <= {"0", "1", "2", "3"} and len(r["slot_accuracy"]) == 4
        for key in ("attn_query_color", "attn_query_shape", "attn_assoc_shape", "attn_assoc_item"):
            assert len(r[key]) == SMOKE.model.n_layers and all(0 <= v <= 1 for v in r[key])


def test_slot_accuracy_agrees_with_the_predictions():
    torch.manual_seed(0)
    model = Transformer(SMOKE.model, Vocab.of(SMOKE.task).size).eval()
    out = plateau_diagnostics(model, SMOKE.task, 128, seed=0, device="cpu")
    batch = diagnostic_batch(SMOKE.task, 128, seed=0)
    with torch.no_grad():
        right = (model(batch.tokens, positions=batch.query_pos).argmax(-1) == batch.answer).numpy()
    for slot, acc in out["slot_accuracy"].items():
        assert acc == pytest.approx(right[batch.query_slot.numpy() == int(slot)].mean(), abs=1e-4)
