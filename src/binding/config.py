"""The binding study's configuration: one tree of frozen dataclasses, and the named presets.

    BindingConfig
      task        the two-hop task (task.py)              model       the transformer (model.py)
      train       a training stage's loop and aids        curriculum  the later stages of a regime,
      analyze     `binding analyze` (interp/)                         with render and encoder

Every field can be overridden on the command line as `section.field=value`, e.g.
`binding train --preset cpu --out runs/x model.pos_encoding=nope train.lr=1e-3` or
`binding curriculum ... curriculum.render.n_shapes=24`; `binding config` lists them all.
Every config validates itself when it is built, so an impossible one never exists.

A run directory records the sections that define its model (`RUN_SECTIONS`); a curriculum stage
also records the curriculum. Analysis settings never make a trained run "different".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lab import config as cfglib
from lab.errors import UserError

from .images.encoders import EncoderConfig
from .images.render import RenderConfig
from .model import ModelConfig
from .task import Layout, TaskConfig

RUN_SECTIONS = ("task", "model", "train")
OPTIMIZERS = ("adamw", "muon")
PATCH_POINTS = ("resid_post", "resid_pre", "attn_out", "mlp_out")   # analyze.point: hook patched in every block
PATCH_POSITIONS = ("query", "que", "all")   # analyze.position: the query colour, the [QUE] before it, every token


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
    next_token_loss_weight: float = field(default=0.0, metadata={
        "help": "mechanism-neutral: next-token cross-entropy at every text position beside the answer "
                "loss, with this weight (padding, noise and image tokens excluded; 0 = off)"})
    pool_size: int = field(default=0, metadata={
        "help": "mechanism-neutral, `binding train` only: a fixed pool of this many training sequences "
                "(drawn once from the training split) repeated beside fresh ones; its accuracy is "
                "logged as pool_accuracy (0 = off)"})
    pool_fraction: float = field(default=0.5, metadata={"help": "share of each batch drawn from the pool"})
    optimizer: str = field(default="adamw", metadata={
        "help": f"{OPTIMIZERS}: muon = torch.optim.Muon on the blocks' weight matrices (its rate "
                "matched to AdamW's RMS), AdamW on embeddings, unembedding, norms and biases"})
    diagnostic_samples: int = field(default=256, metadata={
        "help": "held-out text examples for the plateau diagnostics at each evaluation (accuracy "
                "per query slot, attention mass from the query per layer; 0 = off)"})
    init_from: str = field(default="", metadata={
        "help": "start from this run directory's final weights (model only, fresh optimizer and "
                "schedule); empty = from scratch"})
    checkpoint_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    final_samples_per_n: int = field(default=1000, metadata={"help": "held-out samples per N in the final evaluation"})
    device: str = field(default="auto", metadata={"help": "cpu | cuda | auto"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
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
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"train.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.next_token_loss_weight < 0 or self.pool_size < 0 or self.diagnostic_samples < 0:
            raise UserError("train.next_token_loss_weight, pool_size and diagnostic_samples must be >= 0")
        if not 0.0 < self.pool_fraction < 1.0:
            raise UserError(f"train.pool_fraction must be in (0, 1), got {self.pool_fraction}")
        if self.pool_size and round(self.batch_size * self.pool_fraction) in (0, self.batch_size):
            raise UserError(f"train.pool_fraction={self.pool_fraction} of batch_size={self.batch_size} leaves "
                            "no pool or no fresh examples in a batch")
        return self


@dataclass(frozen=True)
class CurriculumConfig:
    stage_lr: float = field(default=1e-3, metadata={"help": "AdamW rate of every stage after the first"})
    stage_warmup_steps: int = field(default=50, metadata={"help": "warmup of later stages"})
    stage_min_lr_ratio: float = field(default=1.0, metadata={
        "help": "after warmup a later stage's rate decays (cosine) to stage_lr * this over stage_decay_steps, "
                "then stays there (1 = constant)"})
    stage_decay_steps: int = field(default=0, metadata={"help": "length of that decay (0 = the stage's step cap)"})
    stage_cooldown: bool = field(default=False, metadata={
        "help": "once a later stage's threshold holds, its rate goes to its floor (stage_lr * stage_min_lr_ratio) "
                "over the stage's extra steps, so the stage ends settled whenever its threshold came"})
    mix_stage_lr: float = field(default=0.0, metadata={
        "help": "rate of a later mix stage (0 = stage_lr): it fine-tunes a model that already reads both modes"})
    stage_max_steps: int = field(default=2000, metadata={"help": "cap on a later stage's steps"})
    stage_extra_steps: int = field(default=200, metadata={"help": "steps after a later stage's threshold holds"})
    scratch_max_steps: int = field(default=1500, metadata={
        "help": "cap on a first stage that is not text (mixed-from-start); 0 = train.max_steps"})
    mix_image_fraction: float = field(default=0.2, metadata={"help": "share of image batches in a mix stage"})
    noise_fill_to: int = field(default=0, metadata={
        "help": "noise tokens fill the context to this many tokens (0 = the image token count)"})
    grounding_fraction: float = field(default=0.15, metadata={
        "help": "share of image batches that add the feature-grounding losses (both directions)"})
    grounding_weight: float = field(default=1.0, metadata={"help": "weight of the grounding losses"})
    embed_grounding_weight: float = field(default=1.0, metadata={
        "help": "image -> text grounding also at the input: an object's patch token regresses onto "
                "embed(colour) + embed(shape) (0 = off)"})
    stage_aids: bool = field(default=True, metadata={
        "help": "later stages also use the run's training aids (hop loss, previous-token loss, one-hop "
                "queries) until their threshold holds (not in the paper; without them the cpu-scale "
                "image stage stays on the 1/N plateau)"})
    expand_n_colors: int = field(default=0, metadata={
        "help": "vocabulary expansion (a regime's last stage, appendix D): colours after it (0 = as now)"})
    expand_n_shapes: int = field(default=0, metadata={"help": "shapes after the expansion (0 = as now)"})
    expand_n_items: int = field(default=0, metadata={"help": "items after the expansion (0 = as now)"})
    expand_lr: float = field(default=0.0, metadata={
        "help": "rate of the expansion stage (0 = its mode's: stage_lr, or mix_stage_lr for a mix); its new "
                "tokens are learned from scratch, which a mix's fine-tuning rate is slow at"})
    expand_extra_steps: int = field(default=0, metadata={
        "help": "steps after the expansion stage's threshold holds (0 = stage_extra_steps): the larger "
                "task's new tokens settle longer"})
    expand_ood_n: tuple[int, int] = field(default=(0, 0), metadata={
        "help": "OOD range after the expansion (0,0 = from the run's OOD start to the largest N the "
                "expanded vocabularies allow, at most 32 as in the paper)"})
    render: RenderConfig = field(default_factory=lambda: RenderConfig(canvas_px=48, cell_px=8, sprite_px=8,
                                                                      patch_px=8))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoder_pretrain_steps: int = field(default=400, metadata={
        "help": "steps to pretrain the embedded encoder when encoder.path is empty"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "CurriculumConfig":
        if self.stage_lr <= 0:
            raise UserError(f"curriculum.stage_lr must be > 0, got {self.stage_lr}")
        for name in ("mix_stage_lr", "expand_lr"):
            if getattr(self, name) < 0:
                raise UserError(f"curriculum.{name} must be >= 0 (0 = the stage's usual rate), got {getattr(self, name)}")
        if not 0.0 < self.stage_min_lr_ratio <= 1.0 or self.stage_decay_steps < 0:
            raise UserError("curriculum.stage_min_lr_ratio must be in (0, 1] and stage_decay_steps >= 0")
        if self.expand_extra_steps < 0:
            raise UserError("curriculum.expand_extra_steps must be >= 0 (0 = stage_extra_steps)")
        if not 0.0 <= self.mix_image_fraction <= 1.0 or not 0.0 <= self.grounding_fraction <= 1.0:
            raise UserError("curriculum.mix_image_fraction and grounding_fraction must be in [0, 1]")
        return self

    def expands(self) -> bool:
        return any((self.expand_n_colors, self.expand_n_shapes, self.expand_n_items))

    def fill_to(self) -> int:
        """The span noise tokens fill the context to (spec §4: the image's token count by default)."""
        return self.noise_fill_to or self.render.n_tokens


@dataclass(frozen=True)
class AnalyzeConfig:
    n_pairs: int = field(default=1000, metadata={"help": "counterfactual pairs for the interventions"})
    seed: int = field(default=0, metadata={"help": "seed of the pairs and the probe/knockout samples"})
    n_range: tuple[int, int] = field(default=(0, 0), metadata={
        "help": "N of the pairs and samples (0,0 = the run's ID range; pairs need N >= 3)"})
    point: str = field(default="resid_post", metadata={"help": f"hook patched in every block: {PATCH_POINTS}"})
    position: str = field(default="query", metadata={"help": f"where to patch: {PATCH_POSITIONS}"})
    knockout_samples: int = field(default=1000, metadata={"help": "held-out examples for attention knockout"})
    probe_samples: int = field(default=4000, metadata={"help": "held-out examples for the probes (3/4 fit, 1/4 scored)"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "AnalyzeConfig":
        if self.point not in PATCH_POINTS:
            raise UserError(f"analyze.point must be one of {PATCH_POINTS}, got {self.point!r}")
        if self.position not in PATCH_POSITIONS:
            raise UserError(f"analyze.position must be one of {PATCH_POSITIONS}, got {self.position!r}")
        for name in ("n_pairs", "knockout_samples"):
            if getattr(self, name) < 1:
                raise UserError(f"analyze.{name} must be >= 1")
        if self.probe_samples < 40:
            raise UserError("analyze.probe_samples must be >= 40")
        return self


@dataclass(frozen=True)
class BindingConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "BindingConfig":
        """Checks across sections (each section has checked itself)."""
        n_layers = self.model.n_layers
        for weight, layer, name in ((self.train.hop_loss_weight, self.train.hop_loss_layer, "hop_loss_layer"),
                                    (self.train.prev_token_loss_weight, self.train.prev_token_layer,
                                     "prev_token_layer")):
            if weight > 0 and not 1 <= layer <= n_layers:
                raise UserError(f"train.{name}={layer} must be in 1..model.n_layers={n_layers}")
        hi = self.task.train_n[1]   # a training example asks at most N queries
        longest = max(Layout(self.task.max_n).length,
                      Layout(hi).length_with_queries(min(hi, self.train.queries_per_example)))
        if longest > self.model.max_len:
            raise UserError(f"the longest sequence (N={self.task.max_n}, train.queries_per_example="
                            f"{self.train.queries_per_example}) needs {longest} positions but "
                            f"model.max_len={self.model.max_len}")
        return self

    def check_curriculum(self) -> "BindingConfig":
        """What a curriculum (`binding curriculum`, `reproduce`) needs beyond a text run: one query
        per example, and room for the noise and image contexts."""
        cur, hi = self.curriculum, self.task.train_n[1]
        if self.train.queries_per_example != 1:
            raise UserError("train.queries_per_example applies to `binding train` only; "
                            "curricula ask one query per example")
        if hi > cur.render.max_objects:
            raise UserError(f"train N up to {hi} does not fit {cur.render.max_objects} image cells")
        longest = Layout(hi, context_len=max(cur.fill_to(), 2 * hi)).length
        if longest > self.model.max_len:
            raise UserError(f"noise/image contexts need {longest} positions; model.max_len={self.model.max_len}")
        return self

    def expanded(self) -> "BindingConfig":
        """The config of a vocabulary-expansion stage: the curriculum's larger vocabularies and OOD
        range (the paper's N = 32 where they allow it), and room for the longest sequence."""
        cur, task = self.curriculum, self.task
        if not cur.expands():
            raise UserError("a vocabulary expansion needs curriculum.expand_n_colors, expand_n_shapes "
                            "or expand_n_items (the sizes after it)")
        sizes = {name: getattr(cur, f"expand_{name}") or getattr(task, name)
                 for name in ("n_colors", "n_shapes", "n_items")}
        for name, size in sizes.items():
            if size < getattr(task, name):
                raise UserError(f"curriculum.expand_{name}={size} is smaller than the trained vocabulary "
                                f"(task.{name}={getattr(task, name)}); an expansion only adds tokens")
        ood = cur.expand_ood_n
        if ood == (0, 0):
            ood = (task.ood_n[0], max(task.ood_n[0], min(32, *sizes.values())))
        new_task = dataclasses.replace(task, **sizes, ood_n=tuple(ood))   # validates the range
        longest = Layout(new_task.max_n).length
        model = self.model
        if longest > model.max_len:
            if model.pos_encoding == "learned":
                raise UserError(f"the expanded task needs {longest} positions; learned positions stop at "
                                f"model.max_len={model.max_len} and cannot grow")
            model = dataclasses.replace(model, max_len=longest)   # RoPE / NoPE: nothing to learn for it
        return dataclasses.replace(self, task=new_task, model=model)

    def run_dict(self) -> dict:
        """The sections that define a trained model, as a run directory's config.json records them."""
        return {name: cfglib.to_dict(getattr(self, name)) for name in RUN_SECTIONS}

    @classmethod
    def from_run_dict(cls, saved: dict) -> "BindingConfig":
        """A run's config.json `config` back as a config (fields added since take their defaults)."""
        return cfglib.from_dict(cls, saved)

    def same_run(self, other: "BindingConfig") -> bool:
        return all(getattr(self, name) == getattr(other, name) for name in RUN_SECTIONS)


def _preset_paper() -> BindingConfig:
    """The paper's setting (spec §2): 12 layers, d 128, FFN 512, 4 heads, RoPE, full vocabulary,
    AdamW 1e-4, trained until ID accuracy is perfect. For a GPU. Later stages: 224-px images, 196
    patch tokens; the image shape vocabulary (89 shapes at 14-px sprites) is smaller than the text
    one (216), as spec §3 allows."""
    return BindingConfig(curriculum=CurriculumConfig(
        stage_lr=1e-4, stage_warmup_steps=500, stage_max_steps=50_000, stage_extra_steps=2000,
        render=RenderConfig(canvas_px=224, cell_px=16, sprite_px=14, patch_px=16, n_colors=216, n_shapes=89),
        encoder_pretrain_steps=2000))


def _preset_cpu() -> BindingConfig:
    """Fits a 2-core CPU in minutes (spec §7): a smaller vocabulary and model, a larger learning
    rate, PyTorch's default initialisation, and two auxiliary losses that get past the two-hop
    plateau (the intermediate-hop loss and a previous-token loss). Both aids switch off once the ID
    threshold holds; `extra_steps` then train on the paper's task alone. One thread: as fast as two
    for a model this small, and it leaves the other core for a second seed.

    Later stages start at 2e-3 (the image stage leaves its 1/N plateau ~100 steps sooner than at
    1e-3) and decay to a tenth over 1200 steps (at a constant rate image accuracy hovered at
    0.97-0.99 for ~600 steps before its threshold held); a mix stage, which fine-tunes a model that
    reads both modes already, starts at 5e-4; 100 steps after a threshold holds, over which the
    rate cools down to its floor (without it a noise stage, whose threshold holds at once, ended at
    1.8e-3 and one seed's text ID at 0.987). The vocabulary expansion learns its new tokens at
    2e-3 also when it continues a mix (at the mix's 5e-4 seed 1's text ID crept to 0.988 in 2000
    steps and never held 0.99), and settles for 400 steps after its threshold holds (after 100,
    seed 0's ID on the larger task was 0.989). The curriculum's dataclass defaults (constant 1e-3,
    200 extra steps) are the earlier cpu curriculum, so stage folders written before these fields
    existed are recognised as that (docs/results/binding-curricula.md)."""
    return BindingConfig(
        task=TaskConfig(n_colors=32, n_shapes=32, n_items=24, train_n=(2, 8), id_n=(2, 8), ood_n=(9, 24)),
        model=ModelConfig(n_layers=4, d_model=64, n_heads=4, d_ff=256, pos_encoding="rope", max_len=128,
                          init_std=0.0),
        train=TrainConfig(max_steps=4000, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=100,
                          eval_samples_per_n=128, stop_threshold=0.99, stop_patience=2, extra_steps=500,
                          hop_loss_weight=1.0, hop_loss_layer=2, prev_token_loss_weight=1.0,
                          prev_token_layer=1, checkpoint_every=100, final_samples_per_n=500,
                          device="cpu", threads=1),
        curriculum=CurriculumConfig(stage_lr=2e-3, stage_min_lr_ratio=0.1, stage_decay_steps=1200,
                                    stage_cooldown=True, mix_stage_lr=5e-4, stage_extra_steps=100,
                                    expand_n_colors=64, expand_n_shapes=64, expand_n_items=32,
                                    expand_lr=2e-3, expand_extra_steps=400),
    )


def _preset_smoke() -> BindingConfig:
    """Seconds: exercises every code path (used by the tests); learns little. Images: 16 tokens, a
    trainable linear patch embedding instead of a pretrained CNN."""
    return BindingConfig(
        task=TaskConfig(n_colors=12, n_shapes=12, n_items=8, train_n=(2, 4), id_n=(2, 4), ood_n=(5, 6)),
        model=ModelConfig(n_layers=2, d_model=32, n_heads=2, d_ff=64, pos_encoding="rope", max_len=32),
        train=TrainConfig(max_steps=60, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=10,
                          eval_samples_per_n=32, stop_threshold=0.99, extra_steps=0,
                          hop_loss_weight=1.0, hop_loss_layer=1, prev_token_loss_weight=1.0,
                          checkpoint_every=20,
                          final_samples_per_n=64, device="cpu", threads=1),
        curriculum=CurriculumConfig(stage_max_steps=20, stage_extra_steps=10, stage_warmup_steps=5,
                                    scratch_max_steps=60, expand_n_colors=16, expand_n_shapes=16, expand_n_items=10,
                                    render=RenderConfig(canvas_px=32, cell_px=8, sprite_px=8, patch_px=8,
                                                        n_colors=12, n_shapes=12),
                                    encoder=EncoderConfig(kind="linear"), encoder_pretrain_steps=20),
        analyze=AnalyzeConfig(n_pairs=100, knockout_samples=100, probe_samples=400),
    )


PRESETS = {"smoke": _preset_smoke, "cpu": _preset_cpu, "paper": _preset_paper}


def preset(name: str) -> BindingConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def make_config(preset_name: str, overrides: list[str] | None = None) -> BindingConfig:
    """A preset with `section.field=value` overrides applied (and validated)."""
    return cfglib.apply_overrides(preset(preset_name), list(overrides or []))

