"""Training (spec section 4) with failout, model selection on clean validation accuracy, resume.

Run directory (lab.rundir):
    config.json       resolved config, seed, git commit
    metrics.jsonl     one row per epoch: train loss, clean validation accuracy, seconds
    checkpoint.*      latest state (model, best model, optimizer, epoch), written atomically
    results.json      the selected model's evaluation (see evaluate.evaluate_model)
An interrupted run resumes from its checkpoint when the same command is run again. Data order,
augmentation and failout draws depend only on (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lab.checkpoint import (checkpoint_exists, load_checkpoint, optimizer_from_tensors, optimizer_to_tensors,
                            save_checkpoint)
from lab.config import from_dict, to_dict
from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.rundir import MetricsLog, write_config
from lab.seeding import seed_everything, step_rng

from .config import Config
from .data import Splits, load_dataset
from .evaluate import clean_accuracy, evaluate_model
from .failout import Failout, survival_rates
from .hyperconnections import METHODS
from .models import PartitionedModel, build_model

CHECKPOINT = "checkpoint"


def load_splits(cfg: Config, seed: int) -> Splits:
    d = cfg.data
    if d.root is None and d.name in ("mhealth", "cifar10"):
        what = "the UCI MHEALTHDATASET folder" if d.name == "mhealth" else "CIFAR-10's binary batches"
        raise UserError(f"data.name={d.name} needs data.root=DIR pointing at {what} "
                        f"(or use --preset cpu for the embedded Fashion-MNIST)")
    return load_dataset(d.name, d.root, seed=seed, limit=d.limit, flatten=cfg.model.arch == "mlp",
                        legacy_mhealth=d.legacy_mhealth)


def make_failout(cfg: Config, model: PartitionedModel) -> Failout | None:
    on = {"auto": METHODS[cfg.model.method].failout, "on": True, "off": False}[cfg.failout.enabled]
    if not on:
        return None
    return Failout(model.topology, survival_rates(cfg.failout, model.topology), cfg.failout.granularity)


def augment(x: torch.Tensor, gen: torch.Generator, rotation_deg: float = 30.0, shift: float = 0.2) -> torch.Tensor:
    """Keras-style ImageDataGenerator(rotation_range=30, width/height_shift_range=0.2,
    horizontal_flip=True) on a batch x [B, C, H, W], one random transform per image."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(rotation_deg)
    t = (torch.rand(b, 2, generator=gen) * 2 - 1) * shift * 2  # grid units span [-1, 1]
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * flip, -sin, t[:, 0]], 1),
                         torch.stack([sin * flip, cos, t[:, 1]], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def l2_term(model: torch.nn.Module) -> torch.Tensor:
    return sum((p * p).sum() for n, p in model.named_parameters() if p.dim() > 1)


def _state(prefix: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in model.state_dict().items()}


def _unprefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def train(cfg: Config, out: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Train (or resume) the run in `out`; returns results.json's content."""
    out = Path(out)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    resuming = checkpoint_exists(out / CHECKPOINT)
    if resuming:
        saved = read_json(out / "config.json", "run config")
        if saved.get("config") != to_dict(cfg) or saved.get("seed") != seed:
            raise UserError(f"{out} holds a run with a different config or seed; use another --out "
                            f"or the run's own config (resilinet train --resume {out})")
    elif (out / "results.json").exists() or (out / "metrics.jsonl").exists():
        raise UserError(f"{out} already holds a run without a checkpoint to resume from; use another --out")

    splits = load_splits(cfg, seed)
    seed_everything(seed)
    model = build_model(cfg.model, splits.input_shape, splits.n_classes, seed)
    best = build_model(cfg.model, splits.input_shape, splits.n_classes, seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    failout = make_failout(cfg, model)
    log = MetricsLog(out / "metrics.jsonl")

    start_epoch, best_val, best_epoch = 0, -1.0, 0
    if resuming:
        tensors, meta = load_checkpoint(out / CHECKPOINT)
        model.load_state_dict(_unprefix(tensors, "model"))
        best.load_state_dict(_unprefix(tensors, "best"))
        optimizer_from_tensors(opt, tensors, meta["optimizer"])
        start_epoch, best_val, best_epoch = meta["epoch"], meta["best_val_accuracy"], meta["best_epoch"]
        log.truncate_after(start_epoch)
        if progress:
            print(f"resuming {out} after epoch {start_epoch}")
    else:
        write_config(out, to_dict(cfg), seed, extra={"dataset_source": splits.source,
                                                     "input_shape": list(splits.input_shape)})

    n, bs = len(splits.y_train), cfg.train.batch_size
    steps = math.ceil(n / bs)
    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.time()
        model.train()
        perm = torch.from_numpy(step_rng(seed, epoch, stream=1).permutation(n))
        gen = torch.Generator().manual_seed(int(step_rng(seed, epoch, stream=2).integers(2**62)))
        total, bar = 0.0, tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
                               disable=not progress)
        for i in bar:
            idx = perm[i * bs:(i + 1) * bs]
            xb, yb = splits.x_train[idx], splits.y_train[idx]
            if cfg.train.augment and xb.dim() == 4:
                xb = augment(xb, gen)
            masks = failout.sample(len(idx), gen) if failout else None  # {node: 0/1 or [B]}
            loss = F.cross_entropy(model(xb, masks), yb)
            if cfg.train.l2:
                loss = loss + cfg.train.l2 * l2_term(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        val = clean_accuracy(model, splits.x_val, splits.y_val, cfg.train.eval_batch_size)
        if val > best_val:  # model selection: best validation accuracy without failures
            best_val, best_epoch = val, epoch + 1
            best.load_state_dict(model.state_dict())
        row = {"step": epoch + 1, "epoch": epoch + 1, "train_loss": total / n, "val_accuracy": val,
               "seconds": round(time.time() - t0, 3)}
        log.append(row)
        if progress:
            print(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {row['train_loss']:.4f}  "
                  f"val {val:.4f}  ({row['seconds']:.1f}s)")
        opt_tensors, opt_meta = optimizer_to_tensors(opt)
        save_checkpoint(out / CHECKPOINT, {**_state("model", model), **_state("best", best), **opt_tensors},
                        {"epoch": epoch + 1, "best_val_accuracy": best_val, "best_epoch": best_epoch,
                         "optimizer": opt_meta, "config": to_dict(cfg), "seed": seed,
                         "input_shape": list(splits.input_shape), "n_classes": splits.n_classes})

    results = evaluate_model(best, splits, eval_batch_size=cfg.train.eval_batch_size)
    results.update({"method": cfg.model.method, "arch": cfg.model.arch, "seed": seed,
                    "best_epoch": best_epoch, "val_accuracy": best_val, "dataset": splits.name})
    atomic_write_json(out / "results.json", results)
    return results


def load_run(run_dir: str | Path) -> tuple[Config, PartitionedModel, int]:
    """Rebuild a run's selected (best) model from its checkpoint and JSON sidecar alone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not checkpoint_exists(run_dir / CHECKPOINT):
        raise UserError(f"{run_dir} has no checkpoint ({CHECKPOINT}.safetensors + .json); "
                        f"is it a `resilinet train` output directory?")
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT)
    try:
        cfg = from_dict(Config, meta["config"])
        model = build_model(cfg.model, tuple(meta["input_shape"]), meta["n_classes"], meta["seed"])
        model.load_state_dict(_unprefix(tensors, "best"))
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{run_dir}: checkpoint does not match this version's model ({e})") from None
    return cfg, model, int(meta["seed"])
