"""Run configuration (a dataclass per section) and the named presets.

Every field can be overridden on the command line as `section.field=value`, e.g.
`binding train --preset cpu --out runs/x model.pos_encoding=nope train.lr=1e-3`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lab.errors import UserError

from .model import ModelConfig
from .task import TaskConfig, seq_len


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = field(default=200_000, metadata={"help": "hard cap on optimizer steps"})
    batch_size: int = field(default=256, metadata={"help": "examples per step"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=1000, metadata={"help": "linear warmup steps"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine decays to lr * this at max_steps"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip (0 = off)"})
    eval_every: int = field(default=500, metadata={"help": "steps between ID evaluations"})
    eval_samples_per_n: int = field(default=256, metadata={"help": "held-out samples per N at each evaluation"})
    stop_threshold: float = field(default=0.999, metadata={"help": "ID accuracy that counts as saturated"})
    stop_patience: int = field(default=2, metadata={"help": "consecutive evaluations at/above threshold"})
    extra_steps: int = field(default=0, metadata={"help": "steps to keep training after the threshold holds"})
    hop_loss_weight: float = field(default=0.0, metadata={
        "help": "auxiliary intermediate-hop loss (not in the paper; spec §7): predict the queried "
                "shape at the query position from the residual after hop_loss_layer"})
    hop_loss_layer: int = field(default=2, metadata={"help": "read the hop loss after this many blocks"})
    prev_token_loss_weight: float = field(default=0.0, metadata={
        "help": "auxiliary previous-token loss at every position (a training aid, not in the paper)"})
    prev_token_layer: int = field(default=1, metadata={"help": "read the previous-token loss after this many blocks"})
    one_hop_fraction: float = field(default=0.0, metadata={
        "help": "share of training queries that ask with the shape (shape -> item), a training aid"})
    first_hop_fraction: float = field(default=0.0, metadata={
        "help": "share of training queries that ask for the query colour's shape (colour -> shape, "
                "marked by [CTX_END] in the [QUE] slot), a training aid: the first hop as a task of "
                "its own at the output, without saying where in the network it is done"})
    queries_per_example: int = field(default=1, metadata={
        "help": "a training aid for `binding train`: each training example asks up to this many "
                "distinct colours of its context, one `[QUE] colour` after another, each answered "
                "at its own position (more answer signal per sequence; no answer is shown, so it "
                "does not say how to answer). Evaluation always asks one"})
    aids_off_at_threshold: bool = field(default=True, metadata={
        "help": "switch the training aids (hop and previous-token losses, one-hop, first-hop and "
                "extra queries) off once the threshold holds "
                "(extra_steps then train on the paper's task alone)"})
    init_from: str = field(default="", metadata={
        "help": "start from this run directory's final weights (model only, fresh optimizer and "
                "schedule); empty = from scratch"})
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    final_samples_per_n: int = field(default=1000, metadata={"help": "held-out samples per N in the final evaluation"})
    device: str = field(default="auto", metadata={"help": "cpu | cuda | auto"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})

    def validate(self, n_layers: int) -> "TrainConfig":
        for name in ("max_steps", "batch_size", "eval_every", "eval_samples_per_n", "checkpoint_every",
                     "final_samples_per_n", "stop_patience"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not (0.0 <= self.one_hop_fraction <= 1.0 and 0.0 <= self.first_hop_fraction <= 1.0):
            raise UserError("train.one_hop_fraction and train.first_hop_fraction must be in [0, 1]")
        if self.queries_per_example < 1:
            raise UserError(f"train.queries_per_example must be >= 1, got {self.queries_per_example}")
        if self.lr <= 0:
            raise UserError(f"train.lr must be > 0, got {self.lr}")
        for weight, layer, name in ((self.hop_loss_weight, self.hop_loss_layer, "hop_loss_layer"),
                                    (self.prev_token_loss_weight, self.prev_token_layer, "prev_token_layer")):
            if weight > 0 and not 1 <= layer <= n_layers:
                raise UserError(f"train.{name}={layer} must be in 1..model.n_layers={n_layers}")
        return self


@dataclass(frozen=True)
class BindingConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "BindingConfig":
        self.task.validate()
        self.model.validate()
        self.train.validate(self.model.n_layers)
        hi = self.task.train_n[1]   # a training example asks at most N queries, 2 tokens each after its own
        longest = max(seq_len(self.task.max_n), seq_len(hi) + 2 * (min(hi, self.train.queries_per_example) - 1))
        if longest > self.model.max_len:
            raise UserError(f"the longest sequence (N={self.task.max_n}, train.queries_per_example="
                            f"{self.train.queries_per_example}) needs {longest} positions but "
                            f"model.max_len={self.model.max_len}")
        return self


def _preset_paper() -> BindingConfig:
    """The paper's setting (spec §2): 12 layers, d 128, FFN 512, 4 heads, RoPE, full vocabulary,
    AdamW 1e-4, trained until ID accuracy is perfect. For a GPU."""
    return BindingConfig()


def _preset_cpu() -> BindingConfig:
    """Fits a 2-core CPU in minutes (spec §7): a smaller vocabulary and model, a larger learning
    rate, PyTorch's default initialisation, and two auxiliary losses that get past the two-hop
    plateau (the intermediate-hop loss and a previous-token loss). Both aids switch off once the ID
    threshold holds; `extra_steps` then train on the paper's task alone. One thread: as fast as two
    for a model this small, and it leaves the other core for a second seed."""
    return BindingConfig(
        task=TaskConfig(n_colors=32, n_shapes=32, n_items=24, train_n=(2, 8), id_n=(2, 8), ood_n=(9, 24)),
        model=ModelConfig(n_layers=4, d_model=64, n_heads=4, d_ff=256, pos_encoding="rope", max_len=128,
                          init_std=0.0),
        train=TrainConfig(max_steps=4000, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=100,
                          eval_samples_per_n=128, stop_threshold=0.99, stop_patience=2, extra_steps=500,
                          hop_loss_weight=1.0, hop_loss_layer=2, prev_token_loss_weight=1.0,
                          prev_token_layer=1, checkpoint_every=100, final_samples_per_n=500,
                          device="cpu", threads=1),
    )


def _preset_smoke() -> BindingConfig:
    """Seconds: exercises every code path (used by the tests); learns little."""
    return BindingConfig(
        task=TaskConfig(n_colors=12, n_shapes=12, n_items=8, train_n=(2, 4), id_n=(2, 4), ood_n=(5, 6)),
        model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, pos_encoding="rope", max_len=32),
        train=TrainConfig(max_steps=60, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=10,
                          eval_samples_per_n=32, stop_threshold=0.99, extra_steps=0,
                          hop_loss_weight=1.0, hop_loss_layer=1, prev_token_loss_weight=1.0,
                          checkpoint_every=20,
                          final_samples_per_n=64, device="cpu", threads=1),
    )


PRESETS = {"smoke": _preset_smoke, "cpu": _preset_cpu, "paper": _preset_paper}


def preset(name: str) -> BindingConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
