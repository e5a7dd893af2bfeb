"""Training regimes (curricula, spec §4): a list of stages, each starting from the previous stage's weights.

A stage trains on one data mode: text, noise (text with unattendable noise tokens), image (the
context as an image), or mix (a share `mix_image_fraction` of batches are image batches, the rest
text). It runs until its ID accuracy (measured in its own mode; a mix stage takes the lower of text
and image) holds at the threshold, then `stage_extra_steps` more; a stage that never gets there
stops at `stage_max_steps`. The named regimes:

    text-only                 text
    noise-text                text -> noise
    image-text                text -> image -> mix (20% image / 80% text)
    noise-image-text          text -> noise -> image -> mix
    mixed-from-start          mix, from scratch
    text-only-equal-compute   text -> more text, as many steps in all as the longest other regime of
                              its seed (longest.py; with --follow it starts alongside them)

Stage directories nest by prefix, so regimes that share a prefix share its stages:

    OUT/seed0/text/                       the text stage = `binding train` (config, metrics, checkpoint, results)
    OUT/seed0/text/noise/image/mix20/     a later stage: same files; its init comes from its parent folder
    OUT/seed0/<regime>/results.json       the regime's final text-only evaluation + its stages
    OUT/seed0/<regime>/metrics.jsonl      every stage's rows with global_step, and a stage_start row per stage

The first stage of a regime trains from scratch with the run config's train section (and its
training aids); later stages use the curriculum's stage_lr (a mix stage: mix_stage_lr) with a short
warmup, then a constant rate or a cosine decay (stage_min_lr_ratio, stage_decay_steps; with
stage_cooldown the rate goes to its floor over the extra steps once the threshold holds), and the
run's training aids until their own threshold holds (`stage_aids`). Every stage is resumable
exactly as `train` is. The headline of every regime is the text-only evaluation per N of
its final model.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lab import config as cfglib
from lab.checkpoint import checkpoint_exists, load_checkpoint
from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.rundir import MetricsLog, write_config
from lab.seeding import seed_everything, step_rng

from .config import BindingConfig
from .encoders import EncoderConfig, encoder_stem, pretrain_encoder
from .evaluate import EVAL_STREAM_TRAINING, evaluate, token_predictor
from .image_task import ContextBatch, ImageSide, grounding_loss, model_inputs, sample_context
from .longest import LongestRegime
from .render import RenderConfig
from .step_loop import StepLoop, new_state
from .hooks import run_with_cache
from .train import (CHECKPOINT, aid_hook_names, aid_losses, build_model, lr_at, resolve_device,
                    restore_training_state, save_training_state, train)

MODES = ("text", "noise", "image", "mix")
MATCH_LONGEST = -1  # fixed_steps sentinel: as many steps in all as the longest other regime


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
    render: RenderConfig = field(default_factory=lambda: RenderConfig(canvas_px=48, cell_px=8, sprite_px=8,
                                                                      patch_px=8))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoder_pretrain_steps: int = field(default=400, metadata={
        "help": "steps to pretrain the embedded encoder when encoder.path is empty"})

    def validate(self, cfg: BindingConfig) -> "CurriculumConfig":
        self.render.validate()
        if self.stage_lr <= 0 or self.mix_stage_lr < 0:
            raise UserError("curriculum.stage_lr must be > 0 and mix_stage_lr >= 0 (0 = stage_lr)")
        if not 0.0 < self.stage_min_lr_ratio <= 1.0 or self.stage_decay_steps < 0:
            raise UserError("curriculum.stage_min_lr_ratio must be in (0, 1] and stage_decay_steps >= 0")
        if not 0.0 <= self.mix_image_fraction <= 1.0 or not 0.0 <= self.grounding_fraction <= 1.0:
            raise UserError("curriculum.mix_image_fraction and grounding_fraction must be in [0, 1]")
        if cfg.train.queries_per_example != 1:
            raise UserError("train.queries_per_example applies to `binding train` only; "
                            "curricula ask one query per example")
        if cfg.task.train_n[1] > self.render.max_objects:
            raise UserError(f"train N up to {cfg.task.train_n[1]} does not fit {self.render.max_objects} image cells")
        longest = 1 + max(self.noise_fill_to or self.render.n_tokens, 2 * cfg.task.train_n[1]) + 2 + 2 * cfg.task.train_n[1] + 2
        if longest > cfg.model.max_len:
            raise UserError(f"noise/image contexts need {longest} positions; model.max_len={cfg.model.max_len}")
        return self

    def fill_to(self) -> int:
        return self.noise_fill_to or self.render.n_tokens


@dataclass(frozen=True)
class Stage:
    mode: str
    image_fraction: float = 0.0   # mix stages
    fixed_steps: int = 0          # > 0: exactly this many steps (its threshold only switches the aids off);
                                  # MATCH_LONGEST: as many steps in all as the longest other
                                  # regime, known at run time (tag "text+longest")

    @property
    def tag(self) -> str:
        if self.mode == "mix":
            return f"mix{round(100 * self.image_fraction)}"
        if self.fixed_steps == MATCH_LONGEST:
            return f"{self.mode}+longest"
        if self.fixed_steps:
            return f"{self.mode}+{self.fixed_steps}"
        return self.mode


def regimes(cur: CurriculumConfig) -> dict[str, list[Stage]]:
    text, noise, image, mix = Stage("text"), Stage("noise"), Stage("image"), Stage("mix", cur.mix_image_fraction)
    return {
        "text-only": [text],
        "noise-text": [text, noise],
        "image-text": [text, image, mix],
        "noise-image-text": [text, noise, image, mix],
        "mixed-from-start": [mix],
        "text-only-equal-compute": [text, Stage("text", fixed_steps=MATCH_LONGEST)],
    }


def needs_images(stages: list[Stage]) -> bool:
    return any(s.mode in ("image", "mix") for s in stages)


# ---------------------------------------------------------------------------------------------
# One stage


def context_losses(model, image_side, cb: ContextBatch, tc, aids_on: bool, ground: float, task, device: str,
                   embed_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The answer loss; while aids are on, the hop and previous-token losses (`train.losses`, with
    noise and image positions excluded); on grounding batches, the grounding losses."""
    qpos = cb.query_pos.to(device)
    kw = model_inputs(cb, model.cfg.d_model, image_side, device)
    names = aid_hook_names(tc, aids_on)
    (logits, resid), cache = run_with_cache(model, names, **kw, positions=qpos, return_resid=True,
                                            detach=False)                        # [B, V], [B, T, D]
    answer = cb.text.answer.to(device)
    total = F.cross_entropy(logits, answer)
    stats = {"loss": total.item(), "train_acc": (logits.argmax(-1) == answer).float().mean().item()}
    if names:
        tokens, text = cb.tokens.to(device), cb.text_mask.to(device)
        prev_target = tokens[:, :-1].masked_fill(~(text[:, 1:] & text[:, :-1]), -100)  # text after text only
        total, aux_stats = aid_losses(model, cache, tc, qpos, cb.text.hop_target.to(device), prev_target, total)
        stats.update(aux_stats)
    if ground > 0 and cb.images is not None:
        g_loss, g_stats = grounding_loss(model, image_side, cb, resid, task, device, kw.get("input_embeds"),
                                         embed_weight)
        total = total + ground * g_loss
        stats.update(g_stats)
    return total, stats


@torch.no_grad()
def mode_accuracy(model, image_side, mode: str, cfg: BindingConfig, cur: CurriculumConfig, samples_per_n: int,
                  seed: int, device: str) -> dict[int, float]:
    """ID accuracy per N on held-out examples in one mode (text | noise | image)."""
    acc = {}
    for n in range(cfg.task.id_n[0], cfg.task.id_n[1] + 1):
        rng = step_rng(seed, n, EVAL_STREAM_TRAINING)
        cb = sample_context(mode, cfg.task, samples_per_n, rng, noise_fill_to=cur.fill_to(), image_side=image_side,
                            n_range=(n, n), split="eval")
        logits = model(**model_inputs(cb, model.cfg.d_model, image_side, device), positions=cb.query_pos.to(device))
        acc[n] = (logits.argmax(-1).cpu() == cb.text.answer).float().mean().item()
    return acc


def stage_eval(model, image_side, stage: Stage, cfg, cur, samples: int, seed: int, device: str) -> dict:
    modes = ("text", "image") if stage.mode == "mix" else (stage.mode,)
    out = {}
    for mode in modes:
        acc = mode_accuracy(model, image_side, mode, cfg, cur, samples, seed, device)
        out[f"{mode}_id_accuracy"] = sum(acc.values()) / len(acc)
        out[f"{mode}_accuracy_by_n"] = {str(k): v for k, v in acc.items()}
    out["stage_id_accuracy"] = min(out[f"{m}_id_accuracy"] for m in modes)
    return out


def _stage_config(cfg: BindingConfig, cur: CurriculumConfig, stage: Stage, parent: Path | None) -> dict:
    return json.loads(json.dumps({
        "config": cfglib.to_dict(cfg), "curriculum": cfglib.to_dict(cur), "stage": dataclasses.asdict(stage),
        "parent": str(parent) if parent else None,
        # the image vocabulary may be smaller than the text one (spec §3): recorded here
        "image_vocab": {"n_colors": min(cfg.task.n_colors, cur.render.n_colors),
                        "n_shapes": min(cfg.task.n_shapes, cur.render.n_shapes),
                        "text_n_colors": cfg.task.n_colors, "text_n_shapes": cfg.task.n_shapes,
                        "image_tokens": cur.render.n_tokens, "noise_fill_to": cur.fill_to()}}))


def _comparable_settings(settings: dict) -> dict:
    """What must match to reuse a stage folder: the encoder's location may differ (regimes without
    images leave encoder.path empty; the encoder itself is checked against the render config).
    Configs are read back through their dataclasses, so a field added since the folder was written
    compares at its default."""
    out = {k: settings.get(k) for k in ("config", "curriculum", "stage", "parent", "image_vocab")}
    for key, cls in (("config", BindingConfig), ("curriculum", CurriculumConfig)):
        out[key] = cfglib.to_dict(cfglib.from_dict(cls, out[key]))
    out["curriculum"] = {**out["curriculum"], "encoder": {**out["curriculum"]["encoder"], "path": None}}
    return out


def run_stage(cfg: BindingConfig, cur: CurriculumConfig, stage: Stage, stage_dir: Path, parent: Path | None,
              seed: int, quiet: bool = True, index: int = 0, longest: LongestRegime | None = None,
              offset: int = 0) -> dict:
    """Train one stage into stage_dir, starting from parent's checkpoint (None: from scratch).
    index: the stage's place in its regime (0 = first); it picks the data stream. A MATCH_LONGEST
    stage ends at `longest`'s total, counted from global step `offset` (its regime's earlier steps)."""
    tc = cfg.train
    stage_dir = Path(stage_dir)
    settings = _stage_config(cfg, cur, stage, parent)
    matched = stage.fixed_steps == MATCH_LONGEST
    if matched and longest is None:
        raise ValueError("a MATCH_LONGEST stage needs `longest`")
    if (stage_dir / "config.json").exists():
        saved = read_json(stage_dir / "config.json", "stage config")
        if _comparable_settings(saved) != _comparable_settings(settings) or saved.get("seed") != seed:
            raise UserError(f"{stage_dir} holds a stage with other settings; use another --out")
    if (stage_dir / "results.json").exists():
        res = read_json(stage_dir / "results.json")
        if matched and res["steps"] != (want := max(1, longest.total() - offset)):
            raise UserError(f"{stage_dir} holds an equal-compute stage of {res['steps']} steps, but the longest "
                            f"other regime now needs {want}; use another --out")
        return res
    device = resolve_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(seed)
    model = build_model(cfg).to(device)
    parent_tensors = load_checkpoint(parent / CHECKPOINT)[0] if parent else {}
    has_image = stage.mode in ("image", "mix") or any(k.startswith("image.") for k in parent_tensors)
    image_side = ImageSide(cur.encoder, cur.render, cfg.model.d_model).to(device) if has_image else None
    if parent:  # the previous stage's weights (its optimizer state is not carried over)
        model.load_state_dict({k[6:]: v for k, v in parent_tensors.items() if k.startswith("model.")})
        if image_side is not None and any(k.startswith("image.") for k in parent_tensors):
            image_side.load_state_dict({k[6:]: v for k, v in parent_tensors.items() if k.startswith("image.")})
    params = list(model.parameters()) + ([p for p in image_side.parameters() if p.requires_grad] if image_side else [])
    from_scratch = parent is None
    if matched:   # the rate schedule needs the length only if it decays over the whole stage
        steps_cap = max(1, longest.total() - offset) if _decays_over_stage(cur) else 0
    else:
        steps_cap = stage.fixed_steps or ((cur.scratch_max_steps or tc.max_steps) if from_scratch
                                          else cur.stage_max_steps)
    stage_lr = cur.mix_stage_lr if stage.mode == "mix" and cur.mix_stage_lr else cur.stage_lr
    sched = tc if from_scratch else dataclasses.replace(tc, lr=stage_lr, warmup_steps=cur.stage_warmup_steps,
                                                        min_lr_ratio=cur.stage_min_lr_ratio,
                                                        max_steps=cur.stage_decay_steps or steps_cap)
    extra = tc.extra_steps if from_scratch else cur.stage_extra_steps
    opt = torch.optim.AdamW(params, lr=sched.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.98))
    log = MetricsLog(stage_dir / "metrics.jsonl")
    modules = {"model": model} | ({"image": image_side} if image_side is not None else {})
    state = new_state()
    if checkpoint_exists(stage_dir / CHECKPOINT):
        state = restore_training_state(stage_dir / CHECKPOINT, modules, opt)["state"]
        log.truncate_after(state["step"])
        print(f"resuming {stage_dir} from step {state['step']}", file=sys.stderr)
    else:
        write_config(stage_dir, settings.pop("config"), seed, {**settings, "n_params": model.n_params()})
        log.truncate_after(-1)

    def done(step: int, threshold_step: int | None) -> bool:   # a fixed-length stage ignores its threshold
        if matched:
            waited = longest.waited_s
            over = step >= 1 and longest.reached(offset + step)
            loop.exclude(longest.waited_s - waited)   # time spent waiting is not training time
            return over
        past_threshold = threshold_step is not None and step >= threshold_step + extra
        return step >= steps_cap or (past_threshold and not stage.fixed_steps)

    loop = StepLoop(tc, state, done)
    stream = 100 + MODES.index(stage.mode) + 10 * index   # data unlike the other stages'

    def rate(step: int) -> float:
        """The stage's schedule; with stage_cooldown, a cosine from the rate at the threshold down
        to the floor over the extra steps (the state holds threshold_step, so resume is exact)."""
        lr, t = lr_at(step, sched), state["threshold_step"]
        if from_scratch or not cur.stage_cooldown or t is None or step < t or extra <= 0:
            return lr
        start, floor = lr_at(t, sched), sched.lr * sched.min_lr_ratio
        return floor + (start - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - t + 1) / extra)))

    def train_step(step: int) -> dict:
        model.train()
        if image_side is not None:
            image_side.train()
        aids_on = (from_scratch or cur.stage_aids) and loop.aids_on()
        rng = step_rng(seed, step, stream)
        mode = stage.mode
        if mode == "mix":
            mode = "image" if rng.random() < stage.image_fraction else "text"
        cb = sample_context(mode, cfg.task, tc.batch_size, rng, noise_fill_to=cur.fill_to(), image_side=image_side,
                            one_hop_fraction=tc.one_hop_fraction if aids_on else 0.0,
                            first_hop_fraction=tc.first_hop_fraction if aids_on else 0.0)
        ground = cur.grounding_weight if mode == "image" and rng.random() < cur.grounding_fraction else 0.0
        for group in opt.param_groups:
            group["lr"] = rate(step)
        loss, stats = context_losses(model, image_side, cb, tc, aids_on, ground, cfg.task, device,
                                     cur.embed_grounding_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        return {"stage": stage.tag, "batch_mode": mode, "lr": rate(step), **stats, "aids_on": aids_on}

    def stage_id_accuracy(step: int) -> tuple[float, dict]:
        model.eval()
        if image_side is not None:
            image_side.eval()
        ev = stage_eval(model, image_side, stage, cfg, cur, tc.eval_samples_per_n, seed, device)
        return ev["stage_id_accuracy"], ev

    def checkpoint() -> None:
        save_training_state(stage_dir / CHECKPOINT, modules, opt, {
            "state": state, "seed": seed, "stage": dataclasses.asdict(stage),
            "model_config": cfglib.to_dict(cfg.model), "task_config": cfglib.to_dict(cfg.task)})

    def report(step: int, id_acc: float, stats: dict) -> None:
        if not quiet:
            print(f"{stage_dir.name} step {step}: stage ID {id_acc:.3f}", file=sys.stderr)

    last_eval = loop.run(train_step, stage_id_accuracy, checkpoint, log, after_eval=report)
    model.eval()
    if image_side is not None:
        image_side.eval()
    if not last_eval:
        last_eval = stage_eval(model, image_side, stage, cfg, cur, tc.eval_samples_per_n, seed, device)
    results = evaluate(token_predictor(model, device), cfg.task, tc.final_samples_per_n, seed)
    results.update({
        "steps": state["step"], "threshold_step": state["threshold_step"],
        "reached_threshold": state["threshold_step"] is not None, "seed": seed, "stage": stage.tag,
        "mode": stage.mode, **{k: v for k, v in last_eval.items() if not k.endswith("by_n")},
        "train_seconds": round(state["train_seconds"], 1)})
    atomic_write_json(stage_dir / "results.json", results)
    return results


def _decays_over_stage(cur: CurriculumConfig) -> bool:
    """Whether a later stage's rate schedule depends on the stage's length (a decay over its step cap)."""
    return cur.stage_min_lr_ratio < 1.0 and cur.stage_decay_steps == 0


# ---------------------------------------------------------------------------------------------
# A regime: its stages in order, then a summary folder


def ensure_encoder(cur: CurriculumConfig, cache_dir: Path, seed: int = 0, quiet: bool = True) -> CurriculumConfig:
    """Fill in encoder.path: pretrain the embedded encoder into cache_dir once if it is not there."""
    if cur.encoder.path or cur.encoder.kind == "linear":
        return cur
    cache_dir = Path(cache_dir)
    if not checkpoint_exists(encoder_stem(cache_dir)):
        pretrain_encoder(cur.encoder.kind, cur.render, cur.encoder_pretrain_steps, cache_dir, seed,
                         log=None if quiet else print)
    return dataclasses.replace(cur, encoder=dataclasses.replace(cur.encoder, path=str(cache_dir)))


def stage_dirs(seed_dir: Path, stages: list[Stage]) -> list[Path]:
    """A regime's stage folders: each nests in the previous one's."""
    dirs, d = [], Path(seed_dir)
    for stage in stages:
        d = d / stage.tag
        dirs.append(d)
    return dirs


def run_regime(name: str, cfg: BindingConfig, cur: CurriculumConfig, out: str | Path, seed: int,
               quiet: bool = True, follow: bool = False) -> dict:
    """Train every stage of regime `name` (reusing stages already in OUT), then summarise it.
    follow (text-only-equal-compute only): start while the other regimes still train (LongestRegime)."""
    cfg = cfg.validate()
    cur = cur.validate(cfg)
    table = regimes(cur)
    if name not in table:
        raise UserError(f"unknown regime {name!r}; choose one of {list(table)}")
    stages = table[name]
    out = Path(out)
    seed_dir = out / f"seed{seed}"
    longest = None
    if any(s.fixed_steps == MATCH_LONGEST for s in stages):
        others = {r: stage_dirs(seed_dir, st) for r, st in table.items() if not r.startswith("text-only")}
        longest = LongestRegime(seed_dir, others, follow, quiet=quiet)
    elif follow:
        raise UserError("--follow applies only to text-only-equal-compute")
    if needs_images(stages):
        cur = ensure_encoder(cur, out / "encoder", quiet=quiet)
    parent, summary, rows, offset = None, [], [], 0
    for i, (stage, stage_dir) in enumerate(zip(stages, stage_dirs(seed_dir, stages))):
        if i == 0 and stage.mode == "text":
            res = train(cfg, stage_dir, seed, quiet=True)      # the text stage is exactly `binding train`
        else:
            res = run_stage(cfg, cur, stage, stage_dir, parent, seed, quiet, index=i, longest=longest, offset=offset)
        rows.append({"event": "stage_start", "stage": stage.tag, "mode": stage.mode, "stage_index": i,
                     "global_step": offset, "init_from": str(parent) if parent else None})
        for r in MetricsLog(stage_dir / "metrics.jsonl").rows():
            rows.append({**r, "stage": stage.tag, "stage_index": i, "global_step": offset + r["step"]})
        summary.append({"stage": stage.tag, "mode": stage.mode, "steps": res["steps"],
                        "threshold_step": res["threshold_step"], "reached_threshold": res["reached_threshold"],
                        "start_step": offset, "text_ood_accuracy": res["ood_accuracy"], "run_dir": str(stage_dir),
                        "train_seconds": res["train_seconds"]})
        offset += res["steps"]
        parent = stage_dir
    regime_dir = seed_dir / name
    regime_dir.mkdir(parents=True, exist_ok=True)
    with open(regime_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    result = {"regime": name, "seed": seed, "total_steps": offset, "stages": summary, "final_run_dir": str(stage_dir),
              **{k: res[k] for k in ("accuracy_by_n", "id_accuracy", "ood_accuracy", "id_range", "ood_range",
                                     "samples_per_n", "mistakes")}}
    atomic_write_json(regime_dir / "regime.json", result)
    return result


def _curriculum_smoke() -> CurriculumConfig:
    """Seconds (tests): 16 image tokens, a trainable linear patch embedding instead of a pretrained CNN."""
    return CurriculumConfig(stage_max_steps=20, stage_extra_steps=10, stage_warmup_steps=5,
                            render=RenderConfig(canvas_px=32, cell_px=8, sprite_px=8, patch_px=8, n_colors=12,
                                                n_shapes=12),
                            encoder=EncoderConfig(kind="linear"), encoder_pretrain_steps=20)


def _curriculum_paper() -> CurriculumConfig:
    """Toward the paper (GPU): 224-px images, 196 patch tokens; the image shape vocabulary (89 shapes
    at 14-px sprites) is smaller than the text one (216), as spec §3 allows."""
    return CurriculumConfig(stage_lr=1e-4, stage_warmup_steps=500, stage_max_steps=50_000, stage_extra_steps=2000,
                            render=RenderConfig(canvas_px=224, cell_px=16, sprite_px=14, patch_px=16,
                                                n_colors=216, n_shapes=89),
                            encoder_pretrain_steps=2000)


def _curriculum_cpu() -> CurriculumConfig:
    """2 CPU cores: later stages start at 2e-3 (the image stage leaves its 1/N plateau ~100 steps
    sooner than at 1e-3) and decay to a tenth over 1200 steps (at a constant rate image accuracy
    hovered at 0.97-0.99 for ~600 steps before its threshold held); a mix stage, which fine-tunes
    a model that reads both modes already, starts at 5e-4; 100 steps after a threshold holds, over
    which the rate cools down to its floor (without it a noise stage, whose threshold holds at
    once, ended at 1.8e-3 and one seed's text ID at 0.987). The
    dataclass defaults (constant 1e-3, 200 extra steps) are the earlier cpu preset, so stage folders
    written before these fields existed are recognised as that (docs/RESULTS.md)."""
    return CurriculumConfig(stage_lr=2e-3, stage_min_lr_ratio=0.1, stage_decay_steps=1200, stage_cooldown=True,
                            mix_stage_lr=5e-4, stage_extra_steps=100)


CURRICULUM_PRESETS = {"smoke": _curriculum_smoke, "cpu": _curriculum_cpu, "paper": _curriculum_paper}


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """`curriculum.x=v` overrides (prefix stripped) apart from the run config's."""
    cur = [o.split(".", 1)[1] for o in overrides if o.startswith("curriculum.")]
    return [o for o in overrides if not o.startswith("curriculum.")], cur
