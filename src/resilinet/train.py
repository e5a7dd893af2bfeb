"""Training (spec section 4) with failout, model selection on clean validation accuracy, resume.

Run directory (lab.rundir):
    config.json       resolved config, seed, git commit
    metrics.jsonl     one row per epoch: train loss, clean validation accuracy, seconds
    checkpoint.*      latest state (model, best model, optimizer, epoch; the sidecar also holds what
                      `run.load_trained` needs: config, shapes, class prior, guess accuracy)
    results.json      the selected model's evaluation (see evaluate.evaluate_model)
An interrupted run resumes from its checkpoint when the same command is run again. Data order,
augmentation and failout draws depend only on (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lab.checkpoint import checkpoint_exists, restore_training_state, save_training_state
from lab.device import set_threads
from lab.diverged import check_finite
from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.rundir import MetricsLog, held, write_config
from lab.seeding import seed_everything, step_rng

from .config import Config, run_config, same_trained_model, trained_sections
from .data import Splits, load_splits
from .evaluate import clean_accuracy, evaluate_model
from .failout import Failout, survival_rates
from .hyperconnections import METHODS
from .models import PartitionedModel, build_model
from .run import CHECKPOINT


def make_failout(cfg: Config, model: PartitionedModel) -> Failout | None:
    on = {"auto": METHODS[cfg.model.method].failout, "on": True, "off": False}[cfg.failout.enabled]
    if not on:
        return None
    return Failout(model.topology, survival_rates(cfg.failout, model.topology), cfg.failout.granularity)


def augment(x: torch.Tensor, gen: torch.Generator, rotation_deg: float = 30.0, shift: float = 0.2) -> torch.Tensor:
    """Keras-style ImageDataGenerator(rotation_range=30, width/height_shift_range=0.2,
    horizontal_flip=True) on a batch x [B, C, H, W], one random transform per image. Pixels from
    outside the image repeat the nearest edge pixel (Keras' default fill_mode="nearest")."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(rotation_deg)
    t = (torch.rand(b, 2, generator=gen) * 2 - 1) * shift * 2  # grid units span [-1, 1]
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * flip, -sin, t[:, 0]], 1),
                         torch.stack([sin * flip, cos, t[:, 1]], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def l2_term(model: PartitionedModel) -> torch.Tensor:
    """sum of squared conv kernels of the node bodies: what the official ResNet's Keras
    kernel_regularizer=l2(1e-4) covers (its dense head and skip projections are not regularised)."""
    kernels = [m.weight for node in model.nodes.values() for m in node.body.modules() if isinstance(m, torch.nn.Conv2d)]
    return sum((w * w).sum() for w in kernels)


@dataclass
class _State:
    """What training carries from epoch to epoch (and what a checkpoint restores)."""
    model: PartitionedModel
    best: PartitionedModel            # the selected model: best clean validation accuracy so far
    opt: torch.optim.Optimizer
    epoch: int = 0                    # epochs done
    best_val: float = -1.0
    best_epoch: int = 0


def train(cfg: Config, out: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Train (or resume) the run in `out`; returns results.json's content. One process at a time
    writes a run folder (a second is refused)."""
    with held(out):
        return _train(cfg, Path(out), seed, progress)


def _train(cfg: Config, out: Path, seed: int, progress: bool) -> dict:
    set_threads(cfg.train.threads)
    resuming = _check_out_dir(out, cfg, seed)
    splits = load_splits(cfg, seed)
    seed_everything(seed)
    model = build_model(cfg.model, splits.input_shape, splits.n_classes, seed)
    best = build_model(cfg.model, splits.input_shape, splits.n_classes, seed)
    state = _State(model, best, torch.optim.Adam(model.parameters(), lr=cfg.train.lr))
    failout = make_failout(cfg, model)
    log = MetricsLog(out / "metrics.jsonl")
    if resuming:
        _resume(out, state, log, progress)
    else:
        write_config(out, trained_sections(cfg), seed, extra={"dataset_source": splits.source,
                                                             "input_shape": list(splits.input_shape)})
    for epoch in range(state.epoch, cfg.train.epochs):
        t0 = time.time()
        train_loss = _train_epoch(cfg, state, splits, failout, seed, epoch, progress)
        val = clean_accuracy(model, splits.x_val, splits.y_val, cfg.train.eval_batch_size)
        if val > state.best_val:  # model selection: best validation accuracy without failures
            state.best_val, state.best_epoch = val, epoch + 1
            best.load_state_dict(model.state_dict())
        state.epoch = epoch + 1
        row = {"step": epoch + 1, "epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val,
               "seconds": round(time.time() - t0, 3)}
        log.append(row)
        if progress:
            print(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {row['train_loss']:.4f}  "
                  f"val {val:.4f}  ({row['seconds']:.1f}s)")
        _save(out, cfg, seed, state, splits)

    results = evaluate_model(best, splits, eval_batch_size=cfg.train.eval_batch_size)
    results.update({"method": cfg.model.method, "arch": cfg.model.arch, "seed": seed,
                    "best_epoch": state.best_epoch, "val_accuracy": state.best_val, "dataset": splits.name})
    atomic_write_json(out / "results.json", results)
    return results


def _check_out_dir(out: Path, cfg: Config, seed: int) -> bool:
    """True when `out` holds this run's checkpoint to resume; refuses a folder holding another run."""
    if checkpoint_exists(out / CHECKPOINT):
        saved = read_json(out / "config.json", "run config")
        if not same_trained_model(run_config(saved.get("config") or {}), cfg) or saved.get("seed") != seed:
            raise UserError(f"{out} holds a run with a different config or seed; use another --out "
                            f"or run the command that started it again to resume it")
        return True
    if (out / "results.json").exists() or (out / "metrics.jsonl").exists():
        raise UserError(f"{out} already holds a run without a checkpoint to resume from; use another --out")
    return False


def _resume(out: Path, state: _State, log: MetricsLog, progress: bool) -> None:
    meta = restore_training_state(out / CHECKPOINT, {"model": state.model, "best": state.best}, state.opt)
    state.epoch, state.best_val, state.best_epoch = meta["epoch"], meta["best_val_accuracy"], meta["best_epoch"]
    log.truncate_after(state.epoch)
    if progress:
        print(f"resuming {out} after epoch {state.epoch}")


def _train_epoch(cfg: Config, state: _State, splits: Splits, failout: Failout | None, seed: int, epoch: int,
                 progress: bool) -> float:
    """One pass over the training split; returns the mean training loss. Order, augmentation and
    failout draws depend only on (seed, epoch)."""
    model, opt = state.model, state.opt
    n, bs = len(splits.y_train), cfg.train.batch_size
    model.train()
    perm = torch.from_numpy(step_rng(seed, epoch, stream=1).permutation(n))
    gen = torch.Generator().manual_seed(int(step_rng(seed, epoch, stream=2).integers(2**62)))
    starts = list(range(0, n, bs))
    if len(starts) > 1 and n - starts[-1] == 1:   # a lone last example breaks BatchNorm's batch statistics
        starts.pop()
    total, bar = 0.0, tqdm(list(zip(starts, starts[1:] + [n])), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           leave=False, disable=not progress)
    for i, (lo, hi) in enumerate(bar):
        idx = perm[lo:hi]
        xb, yb = splits.x_train[idx], splits.y_train[idx]
        if cfg.train.augment and xb.dim() == 4:
            xb = augment(xb, gen)
        masks = failout.sample(len(idx), gen) if failout else None  # {node: 0/1 or [B]}
        loss = F.cross_entropy(model(xb, masks), yb)
        if cfg.train.l2:
            loss = loss + cfg.train.l2 * l2_term(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))   # factor 1.0: a check
        check_finite(float(loss.detach()), grad_norm, f"epoch {epoch + 1}, batch {i + 1}",
                     f"the checkpoint after epoch {epoch} is kept" if epoch else "no checkpoint had been written")
        opt.step()
        total += float(loss.detach()) * len(idx)
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return total / n


def _save(out: Path, cfg: Config, seed: int, state: _State, splits: Splits) -> None:
    """The resumable checkpoint; its sidecar alone rebuilds the selected model (`run.load_trained`)."""
    save_training_state(out / CHECKPOINT, {"model": state.model, "best": state.best}, state.opt, {
        "epoch": state.epoch, "best_val_accuracy": state.best_val, "best_epoch": state.best_epoch,
        "config": trained_sections(cfg), "seed": seed, "input_shape": list(splits.input_shape),
        "n_classes": splits.n_classes, "class_prior": splits.class_prior().tolist(),
        "guess_accuracy": splits.guess_accuracy()})
