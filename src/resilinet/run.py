"""A trained run rebuilt from its folder alone (checkpoint + JSON sidecar), with no training code.

    run = load_trained("runs/mlp-resilinet")     # the selected model, eval mode, on the CPU
    run.model(x, AliveMask.from_pattern(run.model.topology, (1, 0, 1)).floats())
    run.class_prior, run.guess_accuracy          # what a cloud cut off from the IoT guesses with

The sidecar (`checkpoint.json`, written by `resilinet train` after every epoch) records the
trained sections of the config, the seed, the input shape, the number of classes and the
training label prior, so serving and chaos need neither the trainer nor the dataset. Runs trained
before the prior was recorded still load: their prior is recomputed from the dataset once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lab.checkpoint import checkpoint_exists, load_checkpoint, module_state
from lab.errors import UserError

from .config import Config, run_config
from .data import load_splits
from .models import PartitionedModel, build_model

CHECKPOINT = "checkpoint"   # RUN/checkpoint.safetensors + RUN/checkpoint.json
SELECTED = "best"           # the checkpoint prefix of the selected model (best clean validation accuracy)


@dataclass(frozen=True)
class TrainedRun:
    cfg: Config
    model: PartitionedModel        # the selected model, eval mode
    seed: int
    class_prior: torch.Tensor      # float32 [n_classes], training label frequencies
    guess_accuracy: float          # sum_c p_c^2: the accuracy of guessing from the prior


def _read(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not checkpoint_exists(run_dir / CHECKPOINT):
        raise UserError(f"{run_dir} has no checkpoint ({CHECKPOINT}.safetensors + .json); "
                        f"is it a `resilinet train` output directory?")
    return load_checkpoint(run_dir / CHECKPOINT)


def _rebuild(run_dir: Path, tensors: dict[str, torch.Tensor], meta: dict) -> tuple[Config, PartitionedModel, int]:
    try:
        cfg = run_config(meta["config"])
        model = build_model(cfg.model, tuple(meta["input_shape"]), meta["n_classes"], meta["seed"])
        model.load_state_dict(module_state(tensors, SELECTED))
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{run_dir}: checkpoint does not match this version's model ({e})") from None
    return cfg, model.eval(), int(meta["seed"])


def load_run(run_dir: str | Path) -> tuple[Config, PartitionedModel, int]:
    """A run's config, selected model (eval mode) and seed, from its checkpoint and sidecar alone."""
    run_dir = Path(run_dir)
    return _rebuild(run_dir, *_read(run_dir))


def load_trained(run_dir: str | Path) -> TrainedRun:
    """`load_run` plus the training label prior and guess accuracy the sidecar records."""
    run_dir = Path(run_dir)
    tensors, meta = _read(run_dir)
    cfg, model, seed = _rebuild(run_dir, tensors, meta)
    if "class_prior" in meta:
        prior = torch.tensor(meta["class_prior"], dtype=torch.float32)
        guess = float(meta["guess_accuracy"])
    else:  # trained before the sidecar kept them: the training split has them
        splits = load_splits(cfg, seed)
        prior, guess = splits.class_prior(), splits.guess_accuracy()
    return TrainedRun(cfg, model, seed, prior, guess)
