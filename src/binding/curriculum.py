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
    appendix                  the appendix's order (D): text -> noise -> image -> mix -> vocabulary
                              expansion (the mix continued on the larger vocabularies, expand.py)
    text-only+expand          text -> vocabulary expansion: the appendix order's control, evaluated
                              on the same (expanded) OOD range

Any regime R can end with the expansion stage: `R+expand`. Regimes that end with one are evaluated
on the expanded task (OOD to N = 32 where the vocabularies allow it), so they are compared with
each other, never averaged with the others.

Stage directories nest by prefix, so regimes that share a prefix share its stages:

    OUT/seed0/text/                       the text stage = `binding train` (config, metrics, checkpoint, results)
    OUT/seed0/text/noise/image/mix20/     a later stage: same files; its init comes from its parent folder
    OUT/seed0/<regime>/regime.json        the regime's final text-only evaluation + its stages
    OUT/seed0/<regime>/metrics.jsonl      every stage's rows with global_step, and a stage_start row per stage

Every stage runs through the one stage trainer (train.py, `train_stage`): the first trains from
scratch with the run config's train section (and its training aids); later stages use the
curriculum's stage_lr (a mix stage: mix_stage_lr; the expansion: expand_lr) with a short warmup,
then a constant rate or a cosine decay (stage_min_lr_ratio, stage_decay_steps; with stage_cooldown
the rate goes to its floor over the extra steps once the threshold holds; the expansion's are
expand_extra_steps), and the run's training aids until their own threshold holds (`stage_aids`).
Every stage is resumable exactly as `binding train` is. The headline of every regime is the text-only evaluation per N of
its final model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lab.checkpoint import checkpoint_exists
from lab.device import set_threads
from lab.errors import UserError
from lab.io import atomic_write_bytes, atomic_write_json, dumps
from lab.rundir import MetricsLog

from .config import BindingConfig, CurriculumConfig
from .images.encoders import encoder_stem
from .images.pretrain import pretrain_encoder
from .longest import LongestRegime
from .train import MATCH_LONGEST, Stage, train_stage


EXPAND = "+expand"
MAIN_TEXT = ("text-only", "noise-text", "image-text", "noise-image-text", "mixed-from-start",
             "text-only-equal-compute")   # the paper's main-text regimes (and the equal-compute control)


def with_expansion(stages: list[Stage]) -> list[Stage]:
    """The regime, then the vocabulary expansion in its last stage's mode (a mix stays a mix)."""
    last = stages[-1]
    mode = last.mode if last.mode in ("text", "mix") else "text"
    return [*stages, Stage(mode, image_fraction=last.image_fraction if mode == "mix" else 0.0, expand=True)]


def regimes(cur: CurriculumConfig) -> dict[str, list[Stage]]:
    text, noise, image, mix = Stage("text"), Stage("noise"), Stage("image"), Stage("mix", cur.mix_image_fraction)
    table = {
        "text-only": [text],
        "noise-text": [text, noise],
        "image-text": [text, image, mix],
        "noise-image-text": [text, noise, image, mix],
        "mixed-from-start": [mix],
        "text-only-equal-compute": [text, Stage("text", fixed_steps=MATCH_LONGEST)],
    }
    return table | {"appendix": with_expansion(table["noise-image-text"]),
                    "text-only" + EXPAND: with_expansion(table["text-only"])}


def regime_stages(name: str, cur: CurriculumConfig) -> list[Stage]:
    """A named regime's stages; `R+expand` is R ending with the vocabulary expansion."""
    table = regimes(cur)
    if name in table:
        return table[name]
    if name.endswith(EXPAND) and name[:-len(EXPAND)] in MAIN_TEXT[:-1]:
        return with_expansion(table[name[:-len(EXPAND)]])
    raise UserError(f"unknown regime {name!r}; choose one of {list(table)}, or R+expand for R in "
                    f"{list(MAIN_TEXT[:-1])}")


def needs_images(stages: list[Stage]) -> bool:
    return any(s.uses_images for s in stages)


def ensure_encoder(cfg: BindingConfig, cache_dir: Path, seed: int = 0, quiet: bool = True) -> BindingConfig:
    """Fill in curriculum.encoder.path: pretrain the embedded encoder into cache_dir once if it is not there."""
    cur = cfg.curriculum
    if cur.encoder.path or cur.encoder.kind == "linear":
        return cfg
    cache_dir = Path(cache_dir)
    if not checkpoint_exists(encoder_stem(cache_dir)):
        # the run's thread count, as its stages train: float sums depend on it, and the encoder
        # must be the same whether `binding reproduce` (one thread per job) or a shell started it
        set_threads(cfg.train.threads)
        pretrain_encoder(cur.encoder.kind, cur.render, cur.encoder_pretrain_steps, cache_dir, seed,
                         log=None if quiet else print)
    encoder = dataclasses.replace(cur.encoder, path=str(cache_dir))
    return dataclasses.replace(cfg, curriculum=dataclasses.replace(cur, encoder=encoder))


def stage_dirs(seed_dir: Path, stages: list[Stage]) -> list[Path]:
    """A regime's stage folders: each nests in the previous one's."""
    dirs, d = [], Path(seed_dir)
    for stage in stages:
        d = d / stage.tag
        dirs.append(d)
    return dirs


def run_regime(name: str, cfg: BindingConfig, out: str | Path, seed: int, quiet: bool = True,
               follow: bool = False) -> dict:
    """Train every stage of regime `name` (reusing stages already in OUT), then summarise it.
    follow (text-only-equal-compute only): start while the other regimes still train (LongestRegime)."""
    cfg.check_curriculum()
    stages, out = regime_stages(name, cfg.curriculum), Path(out)
    if any(s.expand for s in stages):
        cfg.expanded()   # an impossible expansion fails before any stage trains
    seed_dir = out / f"seed{seed}"
    longest = None
    if any(s.fixed_steps == MATCH_LONGEST for s in stages):
        others = {r: stage_dirs(seed_dir, regime_stages(r, cfg.curriculum)) for r in MAIN_TEXT
                  if not r.startswith("text-only")}
        longest = LongestRegime(seed_dir, others, follow, quiet=quiet)
    elif follow:
        raise UserError("--follow applies only to text-only-equal-compute")
    if needs_images(stages):
        cfg = ensure_encoder(cfg, out / "encoder", quiet=quiet)
    parent, summary, rows, offset = None, [], [], 0
    for i, (stage, stage_dir) in enumerate(zip(stages, stage_dirs(seed_dir, stages))):
        res = train_stage(cfg, stage, stage_dir, seed, parent=parent, index=i, longest=longest, offset=offset,
                          quiet=quiet)
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
    return _summarise(seed_dir / name, name, seed, offset, summary, rows, res)


def _summarise(regime_dir: Path, name: str, seed: int, total_steps: int, stages: list[dict], rows: list[dict],
               final: dict) -> dict:
    """OUT/seedS/<regime>/: every stage's metrics in one log, and regime.json (the final model's
    text-only evaluation and the stages)."""
    regime_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(regime_dir / "metrics.jsonl", "".join(dumps(r) + "\n" for r in rows).encode())
    result = {"regime": name, "seed": seed, "total_steps": total_steps, "stages": stages,
              "final_run_dir": stages[-1]["run_dir"],
              **{k: final[k] for k in ("accuracy_by_n", "id_accuracy", "ood_accuracy", "id_range", "ood_range",
                                       "samples_per_n", "mistakes")}}
    atomic_write_json(regime_dir / "regime.json", result)
    return result
