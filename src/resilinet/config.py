"""Run configuration: one dataclass tree, named presets, `section.field=value` overrides.

    cfg = make_config("cpu", ["model.method=resilinet", "train.epochs=3"])

Presets (the arch-specific parts follow `model.arch`, so `--preset paper model.arch=mobilenet`
gives the CIFAR reference settings):
- paper: spec section 4. Health MLP: mHealth, Adam 1e-3, batch 1024, 50 epochs. CNNs: CIFAR-10,
  Adam 1e-3, batch 128, 75 epochs, rotation 30 / shift 0.2 / horizontal flip; ResNet adds L2 1e-4;
  Keras parity (BN momentum 0.01, eps 1e-3, glorot/he init). Needs data.root for mHealth/CIFAR.
- cpu: the embedded Fashion-MNIST, sized so `resilinet reproduce` finishes in ~10 min on 2 cores:
  MLP on 12k flattened images, 5 epochs; CNNs on 4k images, 3 epochs, narrow (ResNet-18 width
  0.125, MobileNet width 0.25 with ImageNet strides).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Literal

from lab.config import apply_overrides
from lab.errors import UserError

from .failout import FailoutConfig
from .models import ModelConfig


@dataclass
class DataConfig:
    name: Literal["fashion-mnist", "cifar10", "mhealth", "digits", "auto"] = field(
        default="auto", metadata={"help": "dataset; auto = Fashion-MNIST if installed, else sklearn digits"})
    root: str | None = field(default=None, metadata={"help": "data directory (needed for cifar10, mhealth)"})
    limit: int | None = field(default=None, metadata={"help": "cap on training examples (val/test shrink alike)"})
    legacy_mhealth: bool = field(default=False, metadata={"help": "original Health preprocessing (ints, dropped rows)"})


@dataclass
class TrainConfig:
    epochs: int = field(default=50, metadata={"help": "training epochs"})
    batch_size: int = field(default=1024, metadata={"help": "mini-batch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    l2: float = field(default=0.0, metadata={"help": "L2 loss term on conv/linear weights (ResNet: 1e-4)"})
    augment: bool = field(default=False, metadata={"help": "rotation 30 / shift 0.2 / horizontal flip"})
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size for evaluation"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: leave torch's default)"})


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    failout: FailoutConfig = field(default_factory=FailoutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _paper(arch: str) -> Config:
    if arch == "mlp":
        return Config(DataConfig(name="mhealth"), ModelConfig(arch="mlp"), FailoutConfig(),
                      TrainConfig(epochs=50, batch_size=1024, lr=1e-3))
    keras = dict(keras_init=True, bn_momentum=0.01, bn_eps=1e-3)
    model = (ModelConfig(arch="mobilenet", width=0.75, **keras) if arch == "mobilenet"
             else ModelConfig(arch="resnet18", width=1.0, **keras))
    return Config(DataConfig(name="cifar10"), model, FailoutConfig(),
                  TrainConfig(epochs=75, batch_size=128, lr=1e-3, augment=True, eval_batch_size=500,
                              l2=1e-4 if arch == "resnet18" else 0.0))


def _cpu(arch: str) -> Config:
    """Short schedules on Fashion-MNIST subsets; identical for every method (no per-method tuning)."""
    if arch == "mlp":
        return Config(DataConfig(name="auto", limit=12000), ModelConfig(arch="mlp"), FailoutConfig(),
                      TrainConfig(epochs=5, batch_size=128, lr=1e-3, threads=1))
    # The paper's widths take ~10x longer per image on this CPU; these keep the architectures and
    # the partition but shrink channels (and MobileNet uses ImageNet strides on 28x28 inputs).
    model = (ModelConfig(arch="mobilenet", width=0.25, small_input=False) if arch == "mobilenet"
             else ModelConfig(arch="resnet18", width=0.125))
    return Config(DataConfig(name="auto", limit=4000), model, FailoutConfig(),
                  TrainConfig(epochs=3, batch_size=64, lr=2e-3, threads=1, eval_batch_size=500,
                              l2=1e-4 if arch == "resnet18" else 0.0))


PRESETS: dict[str, Callable[[str], Config]] = {"paper": _paper, "cpu": _cpu}
ARCHS = ("mlp", "mobilenet", "resnet18")


def make_config(preset: str, overrides: list[str] | None = None) -> Config:
    """Preset for the arch named in the overrides (default mlp), then every override applied."""
    overrides = list(overrides or [])
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    arch = "mlp"
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "model.arch":
            arch = value.strip()
    if arch not in ARCHS:
        raise UserError(f"model.arch: {arch!r} is not one of {list(ARCHS)}")
    cfg = apply_overrides(PRESETS[preset](arch), overrides)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    t = cfg.train
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(t, name) < 1:
            raise UserError(f"train.{name} must be >= 1, got {getattr(t, name)}")
    if not t.lr > 0:
        raise UserError(f"train.lr must be > 0, got {t.lr}")
    if t.threads < 0:
        raise UserError(f"train.threads must be >= 0, got {t.threads}")
    if cfg.data.limit is not None and cfg.data.limit < 10:
        raise UserError(f"data.limit must be >= 10 (or none), got {cfg.data.limit}")
    if cfg.model.width <= 0 or cfg.model.hidden_units < 1:
        raise UserError("model.width must be > 0 and model.hidden_units >= 1")


def replace(cfg: Config, **sections) -> Config:
    return dataclasses.replace(cfg, **sections)
