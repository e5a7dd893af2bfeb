"""A trained run rebuilt from its folder alone (config.json + checkpoint), with no training code.

    model, cfg, seed = load_trained("runs/t0")        # eval mode, on the CPU

Works for `binding train` runs and every curriculum stage folder: the model's weights are the
checkpoint's "model." tensors (an image stage also holds its encoder side under "image.", which
the text path does not need).
"""
from __future__ import annotations

from pathlib import Path

import torch

from lab.checkpoint import checkpoint_exists, load_checkpoint, module_state
from lab.errors import UserError
from lab.io import read_json

from .config import BindingConfig
from .model import Transformer
from .task import Vocab

CHECKPOINT = "checkpoint"   # RUN/checkpoint.safetensors + RUN/checkpoint.json


def build_model(cfg: BindingConfig) -> Transformer:
    """A fresh model for the config's task vocabulary."""
    return Transformer(cfg.model, Vocab.of(cfg.task).size)


def is_trained(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "config.json").exists() and checkpoint_exists(run_dir / CHECKPOINT)


def load_config(run_dir: str | Path) -> tuple[BindingConfig, int]:
    """The run's config (sections it does not record take their defaults) and seed."""
    saved = read_json(Path(run_dir) / "config.json", "run config")
    return BindingConfig.from_run_dict(saved.get("config") or {}), int(saved["seed"])


def model_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The model's state dict in the run's checkpoint."""
    stem = Path(run_dir) / CHECKPOINT
    if not checkpoint_exists(stem):
        raise UserError(f"{run_dir}: no checkpoint there ({CHECKPOINT}.safetensors + .json)")
    return module_state(load_checkpoint(stem)[0], "model")


def load_trained(run_dir: str | Path, device: str = "cpu") -> tuple[Transformer, BindingConfig, int]:
    """Rebuild a trained model (eval mode) from its run directory; returns (model, config, seed)."""
    cfg, seed = load_config(run_dir)
    model = build_model(cfg)
    model.load_state_dict(model_weights(run_dir))
    return model.to(device).eval(), cfg, seed
