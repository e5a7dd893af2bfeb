"""Run configuration: one tree of frozen dataclasses, named presets, `section.field=value` overrides.

    Config
      data      the dataset (data.py)                 model     the partitioned DNN (models.py)
      failout   failout in training (failout.py)      train     the training loop (train.py)
      runtime   `serve` / `chaos` on Ray (runtime/)

    cfg = make_config("cpu", ["model.method=resilinet", "train.epochs=3"])

Every section validates itself when it is built (and `Config` checks across sections), so an
impossible config never exists; `resilinet config --preset cpu` lists every field with its value
and meaning. A run directory records the sections that define its trained model
(`TRAINED_SECTIONS`); runtime settings never make a trained run "different".

Presets (the arch-specific parts follow `model.arch`, and `data.name=imagenet` under paper, so
`--preset paper model.arch=mobilenet` gives the CIFAR reference settings):
- paper: the official experiment (clearShallowAtEase Experiment/, docs/resilinet.md "Fidelity").
  Health MLP: mHealth with the official preprocessing (legacy_mhealth), Adam 1e-3, batch 1024, 50
  epochs. CNNs: CIFAR-10 scaled to [0, 1] only, Adam 1e-3, batch 128, 75 epochs, rotation 30 / shift
  0.2 / horizontal flip; the official ResNet-18 adds L2 1e-4 on conv kernels; Keras parity (BN
  momentum 0.01, eps 1e-3, glorot/he init). ImageNet: MobileNet 0.75 at 160 px, ImageNet strides, 10
  epochs, batch 4096 (1024 x 4 GPUs). Needs data.root.
- cpu: the embedded Fashion-MNIST, sized so `resilinet reproduce` finishes in ~10 min on 2 cores:
  MLP on 12k flattened images, 5 epochs; CNNs on 4k images, 3 epochs, narrow (official ResNet-18 at
  width 0.25, MobileNet width 0.25 with ImageNet strides).
"""
from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from typing import Callable, Literal

from lab import config as cfglib
from lab.errors import UserError

from .hyperconnections import METHODS
from .topology import parse_skips, topology_for

ARCHS = ("mlp", "mobilenet", "resnet18")
WEIGHT_SCHEMES = (1, 2, 3, 4)
TRAINED_SECTIONS = ("data", "model", "failout", "train")   # what a run directory's config.json records


def _at_least(section: object, prefix: str, names: tuple[str, ...], low: float) -> None:
    for name in names:
        if getattr(section, name) < low:
            raise UserError(f"{prefix}.{name} must be >= {low:g}, got {getattr(section, name)}")


@dataclass(frozen=True)
class DataConfig:
    name: Literal["fashion-mnist", "cifar10", "mhealth", "imagenet", "digits", "auto"] = field(
        default="auto", metadata={"help": "dataset; auto = Fashion-MNIST if installed, else sklearn digits"})
    root: str | None = field(default=None, metadata={"help": "data directory (needed for cifar10, mhealth, imagenet)"})
    limit: int | None = field(default=None, metadata={"help": "cap on training examples (val/test shrink alike)"})
    legacy_mhealth: bool = field(default=False, metadata={
        "help": "the official Health preprocessing (ints, dropped first rows, no scaling)"})
    standardise: bool = field(default=True, metadata={
        "help": "standardise on the training split (false: images only scaled to [0, 1], as the official code)"})
    image_size: int = field(default=160, metadata={"help": "imagenet: images resized to this many pixels square"})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 10:
            raise UserError(f"data.limit must be >= 10 (or none), got {self.limit}")
        if self.image_size < 8:
            raise UserError(f"data.image_size must be >= 8, got {self.image_size}")


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["mlp", "mobilenet", "resnet18"] = field(
        default="mlp", metadata={"help": "mlp: Health chain (flattened input); mobilenet; resnet18"})
    method: Literal["vanilla", "deepfogguard", "resilinet", "resilinet+"] = field(
        default="resilinet", metadata={"help": "how nodes combine their inputs (spec section 2)"})
    skips: str = field(default="all", metadata={
        "help": "skip hyperconnections: all, none, or e.g. 'iot-f2,f2-cloud' (ignored by vanilla)"})
    partition: int = field(default=1, metadata={
        "help": "layers per node: MLP 1 = 1,2,3,4 / 2 = 2,3,2,3 (edge..cloud); MobileNet blocks 1 = 1-3-5-5 / "
                "2 = 2-2-4-6 (iot..cloud); ResNet-18 stages 1 = edge 0, fog 1, cloud 2-3 / 2 = edge 0-1, fog 2, cloud 3"})
    resnet: Literal["official", "preact"] = field(default="official", metadata={
        "help": "ResNet-18 variant: official (7x7/2 stem, stride 2 in every stage; the authors' Keras net) "
                "or preact (3x3/1 stem, stage 0 at stride 1; ours before issue 17)"})
    hidden_units: int = field(default=250, metadata={"help": "MLP hidden width"})
    width: float = field(default=0.75, metadata={"help": "MobileNet alpha / ResNet channel multiplier"})
    small_input: bool = field(default=True, metadata={
        "help": "CIFAR strides for MobileNet (no downsampling in first conv and block 2)"})
    weight_scheme: int = field(default=1, metadata={
        "help": "hyperconnection weights: 1 ones, 2 normalised reliability, 3 reliability, 4 uniform"})
    weight_setting: str = field(default="normal", metadata={
        "help": "reliability setting that weight schemes 2 and 3 read"})
    keras_init: bool = field(default=True, metadata={
        "help": "glorot-uniform (he-normal ResNet) init as in Keras; false: PyTorch defaults (train slower)"})
    bn_momentum: float = field(default=0.1, metadata={"help": "PyTorch convention; Keras 0.99 = 0.01"})
    bn_eps: float = field(default=1e-5, metadata={"help": "Keras uses 1e-3"})

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"model.arch: {self.arch!r} is not one of {list(ARCHS)}")
        if self.method not in METHODS:
            raise UserError(f"model.method: {self.method!r} is not one of {list(METHODS)}")
        if self.weight_scheme not in WEIGHT_SCHEMES:
            raise UserError(f"model.weight_scheme must be 1, 2, 3 or 4, got {self.weight_scheme}")
        if self.partition not in (1, 2):
            raise UserError(f"model.partition must be 1 or 2, got {self.partition}")
        if self.width <= 0 or self.hidden_units < 1:
            raise UserError("model.width must be > 0 and model.hidden_units >= 1")
        topology = topology_for(self.arch)
        parse_skips(topology, self.skips)           # an unknown skip name is an error here
        topology.reliabilities(self.weight_setting)  # so is an unknown setting


@dataclass(frozen=True)
class FailoutConfig:
    enabled: Literal["auto", "on", "off"] = field(
        default="auto", metadata={"help": "auto: on for resilinet and resilinet+, off otherwise"})
    survival: str = field(default="0.9", metadata={
        "help": "survival rate: one for all nodes, a comma list in spec order, or 'variable'"})
    variable_setting: str = field(default="poor", metadata={
        "help": "reliability setting whose rates 'variable' uses"})
    granularity: Literal["batch", "sample"] = field(
        default="batch", metadata={"help": "one draw per node per mini-batch (paper) or per sample"})

    def __post_init__(self) -> None:
        if self.enabled not in ("auto", "on", "off"):
            raise UserError(f"failout.enabled must be auto, on or off, got {self.enabled!r}")
        if self.granularity not in ("batch", "sample"):
            raise UserError(f"failout.granularity must be 'batch' or 'sample', got {self.granularity!r}")
        self.rates()

    def rates(self) -> tuple[float, ...] | None:
        """The survival rates as written (one, or one per node), or None for 'variable'; how many
        a topology needs is checked by `failout.survival_rates`."""
        text = self.survival.strip()
        if text == "variable":
            return None
        try:
            rates = tuple(float(t) for t in text.split(","))
        except ValueError:
            raise UserError(f"failout.survival: {text!r} is not a rate, a comma list of rates (one per "
                            f"failure-prone node), or 'variable'") from None
        if not all(0.0 <= r <= 1.0 for r in rates):
            raise UserError(f"failout.survival: rates must lie in [0, 1], got {rates}")
        return rates


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=50, metadata={"help": "training epochs"})
    batch_size: int = field(default=1024, metadata={"help": "mini-batch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    l2: float = field(default=0.0, metadata={
        "help": "L2 loss term on the nodes' conv kernels, as the official Keras ResNet (ResNet: 1e-4)"})
    augment: bool = field(default=False, metadata={"help": "rotation 30 / shift 0.2 / horizontal flip"})
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size for evaluation"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: leave torch's default)"})

    def __post_init__(self) -> None:
        _at_least(self, "train", ("epochs", "batch_size", "eval_batch_size"), 1)
        if not self.lr > 0:
            raise UserError(f"train.lr must be > 0, got {self.lr}")
        _at_least(self, "train", ("threads",), 0)


@dataclass(frozen=True)
class RuntimeConfig:
    """`resilinet serve` and `resilinet chaos` (runtime/): the HTTP front end, the router and the
    supervisor of the node processes."""
    host: str = field(default="127.0.0.1", metadata={"help": "HTTP bind address (--host)"})
    port: int = field(default=8100, metadata={
        "help": "HTTP port (--port); 0 = any free port, which `chaos` uses unless a port is given"})
    address: str | None = field(default=None, metadata={
        "help": "join a running Ray cluster (e.g. 127.0.0.1:6379) whose machines carry the role resources "
                "iot/edge/fog/cloud (--address); none: start a local loopback cluster"})
    hop_deadline_s: float = field(default=0.5, metadata={
        "help": "the floor of every node's hop deadline: a producer that has not answered this long after its "
                "inputs were there may be dead for the request (--hop-deadline-s)"})
    hop_deadline_max_s: float = field(default=5.0, metadata={
        "help": "the ceiling of a node's adaptive hop deadline; = hop_deadline_s: a fixed deadline (as before issue 19)"})
    hop_deadline_quantile: float = field(default=0.99, metadata={
        "help": "a node's deadline follows this quantile of its recent hop latencies ..."})
    hop_deadline_factor: float = field(default=3.0, metadata={
        "help": "... times this factor, clamped to [hop_deadline_s, hop_deadline_max_s]"})
    hop_deadline_window: int = field(default=200, metadata={
        "help": "how many recent hop latencies (and health checks answered in time) per node the quantile is over"})
    health_interval_s: float = field(default=0.2, metadata={"help": "health-check period"})
    health_deadline_s: float = field(default=1.0, metadata={"help": "a health check overdue this long marks the node hung"})
    hung_restart_s: float = field(default=2.0, metadata={
        "help": "a node hung this long is killed (SIGKILL via Ray) and replaced"})
    start_timeout_s: float = field(default=90.0, metadata={"help": "a new node process not healthy after this long is replaced again"})
    threads: int = field(default=1, metadata={"help": "torch threads per node process"})
    endpoint_wait_s: float = field(default=30.0, metadata={
        "help": "how long a request waits for a crashed IoT/cloud process to come back"})
    batch_examples: int = field(default=1024, metadata={
        "help": "concurrent requests are merged into routed batches up to this many examples (0: off)"})
    routes_in_flight: int = field(default=2, metadata={"help": "merged batches travelling the chain at once"})
    input_direct: bool = field(default=True, metadata={
        "help": "the router itself sends a link that carries the raw input unchanged (the MLP's IoT -> edge); "
                "false: relay it through the IoT process (--relay-input)"})

    def __post_init__(self) -> None:
        if not 0 < self.hop_deadline_s <= 60:
            raise UserError(f"runtime.hop_deadline_s (--hop-deadline-s) must be in (0, 60], got {self.hop_deadline_s}")
        if not self.hop_deadline_s <= self.hop_deadline_max_s <= 60:
            raise UserError(f"runtime.hop_deadline_max_s must be in [hop_deadline_s, 60] = [{self.hop_deadline_s}, 60], "
                            f"got {self.hop_deadline_max_s}")
        if not 0 < self.hop_deadline_quantile <= 1:
            raise UserError(f"runtime.hop_deadline_quantile must be in (0, 1], got {self.hop_deadline_quantile}")
        _at_least(self, "runtime", ("hop_deadline_factor", "hop_deadline_window"), 1)
        if not 0 <= self.port <= 65535:
            raise UserError(f"runtime.port (--port) must be in 0..65535, got {self.port}")
        for name in ("health_interval_s", "health_deadline_s", "hung_restart_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"runtime.{name} must be > 0, got {getattr(self, name)}")
        _at_least(self, "runtime", ("threads", "routes_in_flight"), 1)
        _at_least(self, "runtime", ("endpoint_wait_s", "batch_examples"), 0)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    failout: FailoutConfig = field(default_factory=FailoutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def trained_sections(cfg: Config) -> dict:
    """The sections that define a trained model, as a run directory's config.json records them."""
    return {name: cfglib.to_dict(getattr(cfg, name)) for name in TRAINED_SECTIONS}


def same_trained_model(a: Config, b: Config) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in TRAINED_SECTIONS)


def run_config(saved: dict) -> Config:
    """A run's recorded sections (`trained_sections`) back as a Config; fields added since take
    their defaults, and so does the runtime section. One exception: a ResNet-18 run recorded before
    `model.resnet` existed was trained with the pre-activation variant."""
    model = saved.get("model") or {}
    if model.get("arch") == "resnet18" and "resnet" not in model:
        saved = {**saved, "model": {**model, "resnet": "preact"}}
    return cfglib.from_dict(Config, saved)


def _paper(arch: str, dataset: str | None) -> Config:
    """The official experiment (clearShallowAtEase Experiment/common_*.py), per model."""
    if arch == "mlp":   # common_MLP_health.py + data_handler_health.py
        return Config(DataConfig(name="mhealth", legacy_mhealth=True), ModelConfig(arch="mlp"), FailoutConfig(),
                      TrainConfig(epochs=50, batch_size=1024, lr=1e-3))
    keras = dict(keras_init=True, bn_momentum=0.01, bn_eps=1e-3)
    if dataset == "imagenet":   # common_CNN_imagenet.py: MobileNet 0.75, ImageNet strides, 160 px
        model = ModelConfig(arch=arch, width=0.75 if arch == "mobilenet" else 1.0, small_input=False, **keras)
        return Config(DataConfig(name="imagenet", standardise=False, image_size=160), model, FailoutConfig(),
                      TrainConfig(epochs=10, batch_size=4096, lr=1e-3, augment=True, eval_batch_size=1024))
    # common_CNN_cifar.py: images / 255 only, 75 epochs, batch 128, augmentation; ResNet L2 1e-4
    model = (ModelConfig(arch="mobilenet", width=0.75, **keras) if arch == "mobilenet"
             else ModelConfig(arch="resnet18", width=1.0, resnet="official", **keras))
    return Config(DataConfig(name="cifar10", standardise=False), model, FailoutConfig(),
                  TrainConfig(epochs=75, batch_size=128, lr=1e-3, augment=True, eval_batch_size=500,
                              l2=1e-4 if arch == "resnet18" else 0.0))


CPU_RESNET_WIDTH = 0.25   # the official ResNet-18 at 1/4 width: about the cost per image of the preact variant at 0.125


def _cpu(arch: str, dataset: str | None) -> Config:
    """Short schedules on Fashion-MNIST subsets; identical for every method (no per-method tuning)."""
    if arch == "mlp":
        return Config(DataConfig(name="auto", limit=12000), ModelConfig(arch="mlp"), FailoutConfig(),
                      TrainConfig(epochs=5, batch_size=128, lr=1e-3, threads=1))
    # The paper's widths take ~10x longer per image on this CPU; these keep the architectures and
    # the partition but shrink channels (and MobileNet uses ImageNet strides on 28x28 inputs).
    model = (ModelConfig(arch="mobilenet", width=0.25, small_input=False) if arch == "mobilenet"
             else ModelConfig(arch="resnet18", width=CPU_RESNET_WIDTH))
    return Config(DataConfig(name="auto", limit=4000), model, FailoutConfig(),
                  TrainConfig(epochs=3, batch_size=64, lr=2e-3, threads=1, eval_batch_size=500,
                              l2=1e-4 if arch == "resnet18" else 0.0))


def _smoke(arch: str, dataset: str | None = None) -> Config:
    """Seconds for every command: the cpu preset's models on a few hundred examples, one epoch.
    For trying commands and for the tests; its accuracies mean little."""
    cpu = _cpu(arch, dataset)
    return dataclasses.replace(cpu, data=dataclasses.replace(cpu.data, limit=600 if arch == "mlp" else 300),
                               train=dataclasses.replace(cpu.train, epochs=1))


PRESETS: dict[str, Callable[[str, str | None], Config]] = {"paper": _paper, "cpu": _cpu, "smoke": _smoke}


def _preset_keys(overrides: list[str]) -> tuple[str, str | None]:
    """The arch (default mlp) and dataset (default: the preset's) the overrides name."""
    found = {"model.arch": "mlp", "data.name": None}
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() in found:
            found[key.strip()] = value.strip()
    if found["model.arch"] not in ARCHS:
        raise UserError(f"model.arch: {found['model.arch']!r} is not one of {list(ARCHS)}")
    return found["model.arch"], found["data.name"]


def make_config(preset: str, overrides: list[str] | None = None) -> Config:
    """Preset for the arch (and dataset) named in the overrides (default mlp), then every override applied."""
    overrides = list(overrides or [])
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return cfglib.apply_overrides(PRESETS[preset](*_preset_keys(overrides)), overrides)
