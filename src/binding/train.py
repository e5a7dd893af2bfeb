"""Training: AdamW with warmup + cosine decay, loss on the answer token only, periodic per-N ID
evaluation, early stopping once ID accuracy holds at the threshold, and resumable run directories.

Resuming is exact: the batch of step t depends only on (seed, t), model and optimizer states come
back from the checkpoint, and metrics logged after the checkpoint are dropped and redone, so a
run killed at any point (even `kill -9`) ends with the same metrics as one never interrupted.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lab import config as cfglib
from lab.checkpoint import (checkpoint_exists, load_checkpoint, optimizer_from_tensors,
                            optimizer_to_tensors, save_checkpoint)
from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.rundir import MetricsLog, write_config
from lab.seeding import seed_everything, step_rng

from .config import BindingConfig
from .evaluate import EVAL_STREAM_TRAINING, accuracy_by_n, evaluate, token_predictor
from .hooks import run_with_cache
from .model import Transformer
from .plots import plot_accuracy_by_n
from .step_loop import StepLoop, new_state
from .task import PAD, Batch, Vocab, more_queries, sample_batch

CHECKPOINT = "checkpoint"
QUERY_STREAM = 3   # the extra queries' own draw: runs without them keep their data


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available")
    return name


def lr_at(step: int, cfg) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_model(cfg: BindingConfig) -> Transformer:
    return Transformer(cfg.model, Vocab.of(cfg.task).size)


def _resid_name(layer: int) -> str:
    return f"blocks.{layer - 1}.hook_resid_post"


def aid_hook_names(tc, aids_on: bool) -> list[str]:
    """The residual-stream hook points the active training aids read."""
    layers = {layer for layer, w in ((tc.hop_loss_layer, tc.hop_loss_weight),
                                     (tc.prev_token_layer, tc.prev_token_loss_weight)) if aids_on and w > 0}
    return [_resid_name(layer) for layer in sorted(layers)]


def aid_losses(model: Transformer, cache: dict[str, torch.Tensor], tc, qpos: torch.Tensor,
               hop_target: torch.Tensor, prev_target: torch.Tensor, total: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """`total` plus the auxiliary training aids (not in the paper; spec §7), read from `cache`:

    hop loss         at the query position, the residual after `hop_loss_layer` blocks, read out
                     through the final norm + unembedding, predicts the first hop (queried shape);
    prev-token loss  at every position, the residual after `prev_token_layer` blocks predicts the
                     previous token (a dense signal for the previous-token heads both hops are
                     built on). prev_target [B, T-1] holds the token before each position, -100
                     where no loss is wanted (padding, noise, image tokens).
    Only the aids whose residuals are in `cache` (see `aid_hook_names`) contribute.
    """
    stats = {}
    hop = _resid_name(tc.hop_loss_layer)
    if tc.hop_loss_weight > 0 and hop in cache:
        rows = torch.arange(len(qpos), device=qpos.device)
        hop_loss = F.cross_entropy(model.readout(cache[hop][rows, qpos]), hop_target)   # [B, V] logits
        total = total + tc.hop_loss_weight * hop_loss
        stats["hop_loss"] = hop_loss.item()
    prev = _resid_name(tc.prev_token_layer)
    if tc.prev_token_loss_weight > 0 and prev in cache:
        logits = model.readout(cache[prev][:, 1:])                                       # [B, T-1, V]
        prev_loss = F.cross_entropy(logits.flatten(0, 1), prev_target.flatten(), ignore_index=-100)
        total = total + tc.prev_token_loss_weight * prev_loss
        stats["prev_token_loss"] = prev_loss.item()
    return total, stats


def losses(model: Transformer, batch: Batch, tc, aids_on: bool, device: str,
           queries: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
           ) -> tuple[torch.Tensor, dict[str, float]]:
    """Answer-token cross-entropy, plus the training aids while they are on (`aid_losses`).

    queries: (tokens, positions [B, K], answers [B, K]) from `more_queries`, asking K queries of
    each example instead of one; -100 answers carry no loss. None = the batch as it is."""
    if queries is None:
        tokens, qpos, answer = batch.tokens, batch.query_pos[:, None], batch.answer[:, None]
    else:
        tokens, qpos, answer = queries
    tokens, qpos, answer = tokens.to(device), qpos.to(device), answer.to(device)
    positions = qpos[:, 0] if qpos.shape[1] == 1 else None      # one query: read out only there
    logits, cache = run_with_cache(model, aid_hook_names(tc, aids_on), tokens, positions=positions, detach=False)
    if positions is None:
        logits = logits[torch.arange(len(qpos), device=device)[:, None], qpos]    # [B, K, V]
    else:
        logits = logits[:, None]                                                   # [B, 1, V]
    answer_loss = F.cross_entropy(logits.flatten(0, 1), answer.flatten(), ignore_index=-100)
    asked = answer != -100
    hits = (logits.argmax(-1) == answer) & asked
    stats = {"loss": answer_loss.item(), "train_acc": (hits.sum() / asked.sum()).item()}
    prev_target = tokens[:, :-1].masked_fill(tokens[:, 1:] == PAD, -100)            # ignore padding
    total, aux_stats = aid_losses(model, cache, tc, qpos[:, 0], batch.hop_target.to(device), prev_target,
                                  answer_loss)
    return total, stats | aux_stats


def save_training_state(stem: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                        meta: dict) -> None:
    """Checkpoint modules (keys `PREFIX.param`), the optimizer and `meta` (loop state, configs)."""
    opt_tensors, opt_meta = optimizer_to_tensors(opt)
    tensors = dict(opt_tensors)
    for prefix, module in modules.items():
        tensors |= {f"{prefix}.{k}": v for k, v in module.state_dict().items()}
    save_checkpoint(stem, tensors, {**meta, "optimizer": opt_meta})


def restore_training_state(stem: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict:
    """Load what `save_training_state` wrote into modules and optimizer; returns the saved meta."""
    tensors, meta = load_checkpoint(stem)
    for prefix, module in modules.items():
        n = len(prefix) + 1
        module.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    optimizer_from_tensors(opt, tensors, meta["optimizer"])
    return meta


def _check_same_config(run_dir: Path, cfg: BindingConfig, seed: int) -> None:
    saved = read_json(run_dir / "config.json", "run config")
    # Compared as dataclasses: a field added since the run was written takes its default, so older
    # runs stay resumable and reusable as curriculum stages.
    if cfglib.from_dict(BindingConfig, saved.get("config") or {}) != cfg or saved.get("seed") != seed:
        raise UserError(f"{run_dir} already holds a run with a different config or seed; "
                        f"use another --out, or the same settings to resume it")


def _load_weights(model, run: Path) -> None:
    """train.init_from: another run's final model weights (same architecture and vocabulary)."""
    if not checkpoint_exists(run / CHECKPOINT):
        raise UserError(f"train.init_from={run}: no checkpoint there")
    tensors = load_checkpoint(run / CHECKPOINT)[0]
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise UserError(f"train.init_from={run}: its model does not fit this config ({first})") from None


def train(cfg: BindingConfig, run_dir: str | Path, seed: int, quiet: bool = False) -> dict:
    """Train (or resume) a run in `run_dir`; returns the final results (also in results.json)."""
    cfg = cfg.validate()
    run_dir = Path(run_dir)
    tc = cfg.train
    device = resolve_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    if (run_dir / "results.json").exists():
        _check_same_config(run_dir, cfg, seed)
        if not quiet:
            print(f"{run_dir} is already complete; results.json kept")
        return read_json(run_dir / "results.json")

    seed_everything(seed)
    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.98))
    log = MetricsLog(run_dir / "metrics.jsonl")
    state = new_state()
    if checkpoint_exists(run_dir / CHECKPOINT):
        _check_same_config(run_dir, cfg, seed)
        state = restore_training_state(run_dir / CHECKPOINT, {"model": model}, opt)["state"]
        log.truncate_after(state["step"])
        print(f"resuming {run_dir} from step {state['step']}", file=sys.stderr)
    else:
        if tc.init_from:
            _load_weights(model, Path(tc.init_from))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfglib.to_dict(cfg), seed,
                     {"n_params": model.n_params(), "vocab_size": model.vocab_size, "device": device})
        log.truncate_after(-1)
    loop = StepLoop(tc, state, done=lambda step, threshold_step: step >= tc.max_steps or (
        threshold_step is not None and step >= threshold_step + tc.extra_steps))

    def train_step(step: int) -> dict:
        model.train()
        aids_on = loop.aids_on()
        batch = sample_batch(cfg.task, tc.batch_size, step_rng(seed, step),
                             one_hop_fraction=tc.one_hop_fraction if aids_on else 0.0,
                             first_hop_fraction=tc.first_hop_fraction if aids_on else 0.0)
        queries = None
        if aids_on and tc.queries_per_example > 1:
            queries = more_queries(batch, cfg.task, tc.queries_per_example, step_rng(seed, step, QUERY_STREAM))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        loss, stats = losses(model, batch, tc, aids_on, device, queries)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        return {"lr": lr_at(step, tc), **stats, "aids_on": aids_on}

    id_ns = range(cfg.task.id_n[0], cfg.task.id_n[1] + 1)

    def id_accuracy(step: int) -> tuple[float, dict]:
        model.eval()
        acc, _ = accuracy_by_n(token_predictor(model, device), cfg.task, id_ns, tc.eval_samples_per_n,
                               seed, EVAL_STREAM_TRAINING)
        id_acc = sum(acc.values()) / len(acc)
        return id_acc, {"id_accuracy": id_acc, "accuracy_by_n": {str(k): v for k, v in acc.items()}}

    def checkpoint() -> None:
        save_training_state(run_dir / CHECKPOINT, {"model": model}, opt, {
            "state": state, "seed": seed, "model_config": cfglib.to_dict(cfg.model),
            "task_config": cfglib.to_dict(cfg.task), "vocab_size": model.vocab_size})

    bar = tqdm(total=tc.max_steps, initial=state["step"], desc=f"train {run_dir.name}", disable=quiet,
               unit="step", dynamic_ncols=True)
    loop.run(train_step, id_accuracy, checkpoint, log, after_step=lambda: bar.update(1),
             after_eval=lambda step, id_acc, stats: bar.set_postfix(loss=f"{stats['loss']:.3f}", id_acc=f"{id_acc:.3f}"))
    bar.close()

    model.eval()
    results = evaluate(token_predictor(model, device), cfg.task, tc.final_samples_per_n, seed)
    results.update({
        "steps": state["step"], "threshold_step": state["threshold_step"],
        "reached_threshold": state["threshold_step"] is not None, "seed": seed,
        # wall time is reported, not compared: it is the one field that differs between reruns
        "train_seconds": round(state["train_seconds"], 1),
    })
    atomic_write_json(run_dir / "results.json", results)
    plot_accuracy_by_n({run_dir.name: results}, run_dir / "accuracy_by_n.png",
                       f"{run_dir.name}: ID {results['id_accuracy']:.3f}, OOD {results['ood_accuracy']:.3f}")
    return results


def load_trained(run_dir: str | Path, device: str = "cpu") -> tuple[Transformer, BindingConfig, int]:
    """Rebuild a trained model from its run directory (config.json + checkpoint)."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / "config.json", "run config")
    cfg = cfglib.from_dict(BindingConfig, saved["config"])
    tensors, _ = load_checkpoint(run_dir / CHECKPOINT)
    model = build_model(cfg)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.to(device).eval(), cfg, int(saved["seed"])
