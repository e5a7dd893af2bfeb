"""Training (spec §2, §4): one stage trainer for `binding train` and every curriculum stage.

A *stage* trains a model on one data mode until its ID accuracy holds at the threshold, then a
few extra steps:

    text    the task as text                       image   the context as an image (binding.images)
    noise   text with unattendable noise tokens    mix     a share of image batches, the rest text

`binding train` is the one-stage text regime: a text stage from scratch, with the run config's
train section (AdamW, warmup + cosine decay, `max_steps`, `extra_steps`, the training aids of
aids.py). A regime's later stages (curriculum.py) start from the previous stage's weights with the
curriculum's rate schedule and caps. The loss is on the answer token (plus, when asked, the
mechanism-neutral next-token loss); ID accuracy is
measured on held-out examples in the stage's own mode (a mix stage takes the lower of text and
image); the final evaluation is always text-only, ID and OOD. Every evaluation also logs the plateau
diagnostics (diagnostics.py) and, with a pool of repeated sequences (pool.py), the pool's accuracy.
The optimizer is AdamW or Muon (optim.py).

Resuming is exact: the batch of step t depends only on (seed, stream, t), model and optimizer
states come back from the checkpoint, and metrics logged after the checkpoint are dropped and
redone, so a run killed at any point (even `kill -9`) ends with the same metrics as one never
interrupted.

A stage folder holds config.json (resolved config, seed, git commit, what the stage is), metrics.jsonl,
checkpoint.* and results.json. The first text stage of a regime has exactly the files of a
`binding train` run, so either can stand in for the other.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lab import config as cfglib
from lab.checkpoint import (checkpoint_exists, load_checkpoint, module_state, restore_training_state,
                            save_training_state, verify_checkpoint)
from lab.device import resolve_device, set_threads
from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.rundir import MetricsLog, held, write_config
from lab.seeding import seed_everything, step_rng

from . import aids
from .config import BindingConfig, CurriculumConfig
from .evaluate import EVAL_STREAM_TRAINING, evaluate, token_predictor
from .diagnostics import plateau_diagnostics
from .expand import expand_state
from .hooks import run_with_cache
from .images.contexts import ContextBatch, ImageSide, as_context, grounding_loss, model_inputs, sample_context
from .longest import LongestRegime
from .optim import build_optimizer
from .plots import plot_accuracy_by_n
from .pool import Pool
from .run import CHECKPOINT, build_model, model_weights
from .step_loop import StepLoop, new_state
from .task import PAD, TaskConfig, Vocab

MODES = ("text", "noise", "image", "mix")
MATCH_LONGEST = -1   # Stage.fixed_steps: as many steps in all as the longest other regime
EVAL_BATCH = 512     # held-out examples per forward pass in an ID evaluation


@dataclass(frozen=True)
class Stage:
    mode: str
    image_fraction: float = 0.0   # mix stages
    fixed_steps: int = 0          # > 0: exactly this many steps (its threshold only switches the aids off);
                                  # MATCH_LONGEST: as many steps in all as the longest other
                                  # regime, known at run time (tag "text+longest")
    expand: bool = False          # grows the vocabularies first (expand.py; the curriculum's expand_* sizes)

    @property
    def tag(self) -> str:
        if self.expand:
            return dataclasses.replace(self, expand=False).tag + "-expand"
        if self.mode == "mix":
            return f"mix{round(100 * self.image_fraction)}"
        if self.fixed_steps == MATCH_LONGEST:
            return f"{self.mode}+longest"
        if self.fixed_steps:
            return f"{self.mode}+{self.fixed_steps}"
        return self.mode

    @property
    def uses_images(self) -> bool:
        return self.mode in ("image", "mix")


def lr_at(step: int, cfg) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Schedule:
    """A stage's learning rate: `lr_at` over `max_steps`; with `cooldown_steps`, once the threshold
    holds, a cosine from the rate there down to the floor (lr * min_lr_ratio) over that many steps
    (the loop state holds threshold_step, so resume is exact)."""
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    max_steps: int
    cooldown_steps: int = 0

    def rate(self, step: int, threshold_step: int | None) -> float:
        lr, t = lr_at(step, self), threshold_step
        if not self.cooldown_steps or t is None or step < t:
            return lr
        start, floor = lr_at(t, self), self.lr * self.min_lr_ratio
        return floor + (start - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - t + 1) / self.cooldown_steps)))


@dataclass(frozen=True)
class Plan:
    """What one stage trains, resolved from the config and the stage's place in its regime."""
    stage: Stage
    index: int                 # place in the regime (0 = first); picks the data stream
    parent: Path | None        # the stage whose weights it starts from (None: from scratch)
    schedule: Schedule
    max_steps: int             # cap (a stage that never reaches its threshold stops here)
    extra_steps: int           # steps after the threshold holds
    aids: bool                 # the training aids may be on (until the threshold holds)

    @property
    def is_run(self) -> bool:
        """The text stage a regime starts with: `binding train` itself."""
        return self.index == 0 and self.stage.mode == "text" and self.parent is None

    @property
    def stream(self) -> int:
        return 0 if self.is_run else 100 + MODES.index(self.stage.mode) + 10 * self.index


def plan_stage(cfg: BindingConfig, stage: Stage, index: int = 0, parent: Path | None = None,
               matched_steps: int = 0) -> Plan:
    """A stage from scratch trains with the run's train section; a later one with the curriculum's
    rate, caps and aids switch. matched_steps: a MATCH_LONGEST stage's length, where the rate
    schedule needs it (0: it does not)."""
    tc, cur = cfg.train, cfg.curriculum
    if parent is None:
        cap = stage.fixed_steps or (tc.max_steps if stage.mode == "text" and index == 0
                                    else cur.scratch_max_steps or tc.max_steps)
        schedule = Schedule(tc.lr, tc.warmup_steps, tc.min_lr_ratio, tc.max_steps)
        return Plan(stage, index, None, schedule, cap, tc.extra_steps, True)
    cap = matched_steps if stage.fixed_steps == MATCH_LONGEST else stage.fixed_steps or cur.stage_max_steps
    lr = cur.mix_stage_lr if stage.mode == "mix" and cur.mix_stage_lr else cur.stage_lr
    lr = (stage.expand and cur.expand_lr) or lr
    extra = (stage.expand and cur.expand_extra_steps) or cur.stage_extra_steps
    schedule = Schedule(lr, cur.stage_warmup_steps, cur.stage_min_lr_ratio, cur.stage_decay_steps or cap,
                        extra if cur.stage_cooldown else 0)
    return Plan(stage, index, Path(parent), schedule, cap, extra, cur.stage_aids)


def decays_over_stage(cur: CurriculumConfig) -> bool:
    """Whether a later stage's rate schedule depends on the stage's length (a decay over its step cap)."""
    return cur.stage_min_lr_ratio < 1.0 and cur.stage_decay_steps == 0


# ---------------------------------------------------------------------------------------------
# What a stage folder is, and whether an existing one can be reused


def identity(cfg: BindingConfig, plan: Plan) -> dict:
    """What a later stage's config.json records beside "config" (the resolved config, curriculum
    included); with the run sections and the curriculum, it must match to reuse or resume the folder."""
    if plan.is_run:
        return {}
    cur = cfg.curriculum
    return json.loads(json.dumps({
        "stage": {k: v for k, v in dataclasses.asdict(plan.stage).items() if k != "expand" or v},
        "parent": str(plan.parent) if plan.parent else None,
        # the image vocabulary may be smaller than the text one (spec §3): recorded here
        "image_vocab": {"n_colors": min(cfg.task.n_colors, cur.render.n_colors),
                        "n_shapes": min(cfg.task.n_shapes, cur.render.n_shapes),
                        "text_n_colors": cfg.task.n_colors, "text_n_shapes": cfg.task.n_shapes,
                        "image_tokens": cur.render.n_tokens, "noise_fill_to": cur.fill_to()}}))


def _comparable(saved: dict, is_run: bool) -> dict:
    """A config.json reduced to what identifies the stage. Configs are read back through their
    dataclasses, so a field added since the folder was written compares at its default; the
    encoder's location may differ (regimes without images leave encoder.path empty; the encoder
    itself is checked against the render config)."""
    config = saved.get("config") or {}
    out = {"run": BindingConfig.from_run_dict(config).run_dict(), "seed": saved.get("seed")}
    if not is_run:   # stage folders written before the config tree kept the curriculum beside "config"
        cur = cfglib.to_dict(cfglib.from_dict(CurriculumConfig, config.get("curriculum") or saved.get("curriculum")))
        out |= {k: saved.get(k) for k in ("stage", "parent", "image_vocab")}
        if not (saved.get("stage") or {}).get("expand"):   # the sizes after an expansion concern that stage only
            cur = {k: v for k, v in cur.items() if not k.startswith("expand_")}
        out["curriculum"] = {**cur, "encoder": {**cur["encoder"], "path": None}}
    return out


def check_folder(stage_dir: Path, cfg: BindingConfig, plan: Plan, seed: int) -> None:
    """Refuse a folder that holds another run or stage."""
    if not (stage_dir / "config.json").exists():
        return
    saved = read_json(stage_dir / "config.json", "run config")
    wanted = {"config": cfglib.to_dict(cfg), "seed": seed, **identity(cfg, plan)}
    if _comparable(saved, plan.is_run) != _comparable(wanted, plan.is_run):
        raise UserError(f"{stage_dir} already holds a run with a different config or seed; "
                        f"use another --out, or the same settings to resume it")


# ---------------------------------------------------------------------------------------------
# One stage


class StageTrainer:
    """The model (and image side) of one stage, its optimizer, and what a step and an evaluation do."""

    def __init__(self, cfg: BindingConfig, plan: Plan, seed: int, device: str):
        self.cfg, self.plan, self.seed, self.device = cfg, plan, seed, device
        seed_everything(seed)
        self.model = build_model(cfg).to(device)
        parent, parent_meta = load_checkpoint(plan.parent / CHECKPOINT) if plan.parent else ({}, {})
        if plan.stage.expand:   # the previous stage's model, grown to this stage's vocabularies
            old = Vocab.of(cfglib.from_dict(TaskConfig, parent_meta["task_config"]))
            model = expand_state(module_state(parent, "model"), old, Vocab.of(cfg.task), seed)
            parent = {k: v for k, v in parent.items() if not k.startswith("model.")} | \
                {f"model.{k}": v for k, v in model.items()}
        has_image = plan.stage.uses_images or any(k.startswith("image.") for k in parent)
        cur = cfg.curriculum
        self.image_side = ImageSide(cur.encoder, cur.render, cfg.model.d_model).to(device) if has_image else None
        self.modules = {"model": self.model} | ({"image": self.image_side} if has_image else {})
        for prefix, module in self.modules.items():   # the previous stage's weights (not its optimizer)
            if state := module_state(parent, prefix):
                module.load_state_dict(state)
        self.params = list(self.model.parameters()) + (
            [p for p in self.image_side.parameters() if p.requires_grad] if has_image else [])
        self.opt = build_optimizer(cfg.train.optimizer, self.params, self.model, plan.schedule.lr,
                                   cfg.train.weight_decay)
        tc = cfg.train   # the pool, like extra queries, belongs to `binding train` (a text stage from scratch)
        self.pool = Pool(cfg.task, tc.pool_size, tc.pool_fraction, tc.batch_size, seed) \
            if tc.pool_size and plan.is_run else None

    def init_from(self, run: Path) -> None:
        """train.init_from: another run's final model weights (same architecture and vocabulary)."""
        try:
            self.model.load_state_dict(model_weights(run))
        except UserError:
            raise UserError(f"train.init_from={run}: no checkpoint there") from None
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1].strip()
            raise UserError(f"train.init_from={run}: its model does not fit this config ({first})") from None

    def train_mode(self, on: bool) -> None:
        for module in self.modules.values():
            module.train(on)

    def step(self, step: int, aids_on: bool, threshold_step: int | None) -> dict:
        """One optimizer step on the batch of (seed, stream, step); returns the fields to log."""
        cfg, plan, tc = self.cfg, self.plan, self.cfg.train
        self.train_mode(True)
        rng = step_rng(self.seed, step, plan.stream)
        mode = plan.stage.mode
        if mode == "mix":
            mode = "image" if rng.random() < plan.stage.image_fraction else "text"
        fresh = self.pool.fresh if self.pool else tc.batch_size
        cb = sample_context(mode, cfg.task, fresh, rng, noise_fill_to=cfg.curriculum.fill_to(),
                            image_side=self.image_side, **aids.sampling(tc, aids_on))
        if self.pool:
            cb = as_context(self.pool.mix(cb.text, rng))
        cur = cfg.curriculum
        ground = cur.grounding_weight if mode == "image" and rng.random() < cur.grounding_fraction else 0.0
        queries = aids.extra_queries(cb.text, cfg.task, tc, aids_on, self.seed, step) if plan.is_run else None
        lr = plan.schedule.rate(step, threshold_step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss, stats = stage_losses(self.model, self.image_side, cb, cfg, aids_on, ground, self.device, queries)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # the norm before clipping (no clipping: a factor 1.0, exact): a non-finite one stops the run
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip or math.inf))
        self.opt.step()
        stage_fields = {} if plan.is_run else {"stage": plan.stage.tag, "batch_mode": mode}
        return {**stage_fields, "lr": lr, **stats, "grad_norm": grad_norm, "aids_on": aids_on}

    def id_accuracy(self) -> tuple[float, dict]:
        """ID accuracy in the stage's mode(s), and the fields to log. A `binding train` run logs
        id_accuracy and accuracy_by_n; a later stage logs them per mode, and the lower as
        stage_id_accuracy."""
        self.train_mode(False)
        modes = ("text", "image") if self.plan.stage.mode == "mix" else (self.plan.stage.mode,)
        out = {}
        for mode in modes:
            acc = mode_accuracy(self.model, self.image_side, mode, self.cfg, self.cfg.train.eval_samples_per_n,
                                self.seed, self.device)
            prefix = "" if self.plan.is_run else f"{mode}_"
            out[f"{prefix}id_accuracy"] = sum(acc.values()) / len(acc)
            out[f"{prefix}accuracy_by_n"] = {str(k): v for k, v in acc.items()}
        if self.cfg.train.diagnostic_samples:
            out |= plateau_diagnostics(self.model, self.cfg.task, self.cfg.train.diagnostic_samples, self.seed,
                                       self.device)
        if self.pool:
            out["pool_accuracy"] = self.pool.accuracy(self.model, self.device)
        if self.plan.is_run:
            return out["id_accuracy"], out
        out["stage_id_accuracy"] = min(out[f"{m}_id_accuracy"] for m in modes)
        return out["stage_id_accuracy"], out

    def checkpoint(self, stem: Path, state: dict) -> None:
        save_training_state(stem, self.modules, self.opt, {
            "state": state, "seed": self.seed, "stage": dataclasses.asdict(self.plan.stage),
            "model_config": cfglib.to_dict(self.cfg.model), "task_config": cfglib.to_dict(self.cfg.task),
            "vocab_size": self.model.vocab_size})


def next_token_loss(model, resid: torch.Tensor, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each text token's successor, read from the final residual [B, T, D]
    (padding, noise and image positions carry no loss; the answer has its own loss)."""
    target = tokens[:, 1:].masked_fill(~(text[:, 1:] & text[:, :-1]), -100)
    logits = model.readout(resid[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)


def stage_losses(model, image_side: ImageSide | None, cb: ContextBatch, cfg: BindingConfig, aids_on: bool,
                 ground: float, device: str, queries: tuple | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The answer loss; the next-token loss (train.next_token_loss_weight); while aids are on, the
    loss aids (aids.py; noise and image positions excluded); on grounding batches, the grounding
    losses (images/contexts.py).
    queries: (tokens, positions [B, K], answers [B, K]) from `more_queries` (-100 answers carry no
    loss), asking K queries of each text example instead of one."""
    tc = cfg.train
    names = aids.hook_names(tc, aids_on)
    if queries is None:
        kw, qpos, answer = model_inputs(cb, model.cfg.d_model, image_side, device), cb.query_pos, cb.text.answer
        tokens, text = cb.tokens, cb.text_mask
    else:
        tokens, qpos, answer = queries
        kw, text = {"tokens": tokens.to(device)}, tokens != PAD
        if qpos.shape[1] == 1:                                  # one query asked: the plain case
            qpos, answer = qpos[:, 0], answer[:, 0]
    qpos, answer = qpos.to(device), answer.to(device)
    one = qpos.dim() == 1                                       # one query: read out only there
    (logits, resid), cache = run_with_cache(model, names, **kw, positions=qpos if one else None,
                                            return_resid=True, detach=False)
    if not one:
        logits = logits[torch.arange(len(qpos), device=device)[:, None], qpos]        # [B, K, V]
    answer_loss = F.cross_entropy(logits.flatten(0, -2), answer.flatten(), ignore_index=-100)
    asked = answer != -100
    hits = (logits.argmax(-1) == answer) & asked
    stats = {"loss": answer_loss.item(), "train_acc": (hits.sum() / asked.sum()).item()}
    total = answer_loss
    if tc.next_token_loss_weight > 0:
        nt_loss = next_token_loss(model, resid, tokens.to(device), text.to(device))
        total = total + tc.next_token_loss_weight * nt_loss
        stats["next_token_loss"] = nt_loss.item()
    if names:
        prev_target = aids.prev_targets(tokens.to(device), text.to(device))
        total, aux = aids.aid_losses(model, cache, tc, qpos if one else qpos[:, 0], cb.text.hop_target.to(device),
                                     prev_target, total)
        stats.update(aux)
    if ground > 0 and cb.images is not None:
        g_loss, g_stats = grounding_loss(model, image_side, cb, resid, cfg.task, device, kw.get("input_embeds"),
                                         cfg.curriculum.embed_grounding_weight)
        total = total + ground * g_loss
        stats.update(g_stats)
    return total, stats


@torch.no_grad()
def mode_accuracy(model, image_side: ImageSide | None, mode: str, cfg: BindingConfig, samples_per_n: int,
                  seed: int, device: str) -> dict[int, float]:
    """ID accuracy per N on held-out examples in one mode (text | noise | image), the examples of
    the training-time evaluation stream (the same for every stage and every evaluation)."""
    acc = {}
    for n in range(cfg.task.id_n[0], cfg.task.id_n[1] + 1):
        rng = step_rng(seed, n, EVAL_STREAM_TRAINING)
        correct, left = 0, samples_per_n
        while left > 0:
            cb = sample_context(mode, cfg.task, min(EVAL_BATCH, left), rng, noise_fill_to=cfg.curriculum.fill_to(),
                                image_side=image_side, n_range=(n, n), split="eval")
            logits = model(**model_inputs(cb, model.cfg.d_model, image_side, device), positions=cb.query_pos.to(device))
            correct += int((logits.argmax(-1).cpu() == cb.text.answer).sum())
            left -= len(cb)
        acc[n] = correct / samples_per_n
    return acc


def train_stage(cfg: BindingConfig, stage: Stage, stage_dir: str | Path, seed: int, *, parent: Path | None = None,
                index: int = 0, longest: LongestRegime | None = None, offset: int = 0, quiet: bool = False) -> dict:
    """Train (or resume, or reuse) one stage in stage_dir, starting from parent's weights (None:
    from scratch); returns its results (also in results.json). A MATCH_LONGEST stage ends at
    `longest`'s total, counted from global step `offset` (its regime's earlier steps)."""
    stage_dir = Path(stage_dir)
    matched = stage.fixed_steps == MATCH_LONGEST
    if matched and longest is None:
        raise ValueError("a MATCH_LONGEST stage needs `longest`")
    if stage.expand:
        cfg = cfg.expanded()   # the larger vocabularies and OOD range are this stage's task
    plan = plan_stage(cfg, stage, index, parent)
    check_folder(stage_dir, cfg, plan, seed)
    if (stage_dir / "results.json").exists():
        return _finished(stage_dir, plan, longest, offset, quiet)
    with held(stage_dir):   # one writer per folder
        if (stage_dir / "results.json").exists():   # finished while we waited to look
            return _finished(stage_dir, plan, longest, offset, quiet)
        return _train_held(cfg, plan, stage_dir, seed, parent, index, longest, offset, quiet)


def _train_held(cfg: BindingConfig, plan: Plan, stage_dir: Path, seed: int, parent: Path | None, index: int,
                longest: LongestRegime | None, offset: int, quiet: bool) -> dict:
    """train_stage's work, with the folder held."""
    stage, matched = plan.stage, plan.stage.fixed_steps == MATCH_LONGEST
    if matched and decays_over_stage(cfg.curriculum):   # the rate schedule needs the stage's length
        plan = plan_stage(cfg, stage, index, parent, max(1, longest.total() - offset))
    device = resolve_device(cfg.train.device)
    set_threads(cfg.train.threads)
    trainer = StageTrainer(cfg, plan, seed, device)
    state = _start_or_resume(stage_dir, cfg, plan, trainer, seed)
    loop = StepLoop(cfg.train, state, _stopping_rule(plan, longest, offset, lambda: loop))
    bar = tqdm(total=plan.max_steps if not matched else None, initial=state["step"], disable=quiet, unit="step",
               desc=f"{'train' if plan.is_run else 'stage'} {stage_dir.name}", dynamic_ncols=True)
    last_eval = loop.run(
        lambda step: trainer.step(step, plan.aids and loop.aids_on(), state["threshold_step"]),
        lambda step: trainer.id_accuracy(), lambda: trainer.checkpoint(stage_dir / CHECKPOINT, state),
        MetricsLog(stage_dir / "metrics.jsonl"), after_step=lambda: bar.update(1),
        after_eval=lambda step, acc, stats: bar.set_postfix(loss=f"{stats['loss']:.3f}", id_acc=f"{acc:.3f}"))
    bar.close()
    return _finish(stage_dir, cfg, plan, trainer, state, last_eval)


def _finished(stage_dir: Path, plan: Plan, longest: LongestRegime | None, offset: int, quiet: bool) -> dict:
    """A stage trained before: its results, if it still fits (an equal-compute stage's length may not)."""
    res = read_json(stage_dir / "results.json")
    verify_checkpoint(stage_dir / CHECKPOINT)   # later stages, evaluate and analyze load it
    if plan.stage.fixed_steps == MATCH_LONGEST and res["steps"] != (want := max(1, longest.total() - offset)):
        raise UserError(f"{stage_dir} holds an equal-compute stage of {res['steps']} steps, but the longest "
                        f"other regime now needs {want}; use another --out")
    if not quiet:
        print(f"{stage_dir} is already complete; results.json kept", file=sys.stderr)
    return res


def _start_or_resume(stage_dir: Path, cfg: BindingConfig, plan: Plan, trainer: StageTrainer, seed: int) -> dict:
    """The loop state: from the checkpoint (metrics after it dropped), or fresh with config.json written."""
    log = MetricsLog(stage_dir / "metrics.jsonl")
    if checkpoint_exists(stage_dir / CHECKPOINT):
        state = restore_training_state(stage_dir / CHECKPOINT, trainer.modules, trainer.opt)["state"]
        log.truncate_after(state["step"])
        print(f"resuming {stage_dir} from step {state['step']}", file=sys.stderr)
        return state
    if plan.is_run and cfg.train.init_from:
        trainer.init_from(Path(cfg.train.init_from))
    model = trainer.model
    write_config(stage_dir, cfglib.to_dict(cfg), seed, {
        **identity(cfg, plan), "n_params": model.n_params(), "vocab_size": model.vocab_size,
        "device": trainer.device})
    log.truncate_after(-1)
    return new_state()


def _stopping_rule(plan: Plan, longest: LongestRegime | None, offset: int, loop):
    """done(step, threshold_step) for the StepLoop. A fixed-length stage ignores its threshold
    (it only switches the aids off); an equal-compute one runs to the longest other regime's total,
    and time spent waiting for it is not training time. `loop` gives the loop once it exists."""
    def done(step: int, threshold_step: int | None) -> bool:
        if plan.stage.fixed_steps == MATCH_LONGEST:
            waited = longest.waited_s
            over = step >= 1 and longest.reached(offset + step)
            loop().exclude(longest.waited_s - waited)
            return over
        past_threshold = threshold_step is not None and step >= threshold_step + plan.extra_steps
        return step >= plan.max_steps or (past_threshold and not plan.stage.fixed_steps)
    return done


def _finish(stage_dir: Path, cfg: BindingConfig, plan: Plan, trainer: StageTrainer, state: dict,
            last_eval: dict) -> dict:
    """The final text-only evaluation (ID and OOD) into results.json (and a `binding train` run's figure)."""
    trainer.train_mode(False)
    if not last_eval and not plan.is_run:
        last_eval = trainer.id_accuracy()[1]
    results = evaluate(token_predictor(trainer.model, trainer.device), cfg.task, cfg.train.final_samples_per_n,
                       trainer.seed)
    results.update({"steps": state["step"], "threshold_step": state["threshold_step"],
                    "reached_threshold": state["threshold_step"] is not None, "seed": trainer.seed})
    if not plan.is_run:
        results.update({"stage": plan.stage.tag, "mode": plan.stage.mode,
                        **{k: v for k, v in last_eval.items() if not k.endswith("by_n")}})
    # wall time is reported, not compared: it is the one field that differs between reruns
    results["train_seconds"] = round(state["train_seconds"], 1)
    atomic_write_json(stage_dir / "results.json", results)
    if plan.is_run:
        plot_accuracy_by_n({stage_dir.name: results}, stage_dir / "accuracy_by_n.png",
                           f"{stage_dir.name}: ID {results['id_accuracy']:.3f}, OOD {results['ood_accuracy']:.3f}")
    return results


def train(cfg: BindingConfig, run_dir: str | Path, seed: int, quiet: bool = False) -> dict:
    """`binding train`: the one-stage text regime in run_dir (resumes an interrupted run)."""
    return train_stage(cfg, Stage("text"), run_dir, seed, quiet=quiet)
