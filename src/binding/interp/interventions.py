"""Interchange interventions (spec §5): patch the counterfactual's activations into the original run.

For each hook point (by default the residual stream after every block, `blocks.{l}.hook_resid_post`)
the counterfactual's activation at the chosen position replaces the original's, and the patched
prediction is classified as positional / symbolic / reflexive / no effect / other (see
counterfactual.py). Only pairs the model answers correctly on both sides count: a pair it gets
wrong says nothing about how it binds.

Cost: one cached counterfactual pass, one cached clean original pass (for the correctness filter),
and one patched pass per hook point, each over the whole batch of pairs: layers + 2 batched forward
passes for the default sweep (fewer in practice: a patched residual point only reruns the blocks
after it). `naive_sweep` does the same one pair at a time (the benchmark's baseline).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PATCH_POSITIONS
from ..hooks import hooks, run_with_cache
from ..model import Transformer
from ..task import seq_len
from .counterfactual import OUTCOMES, Pairs, classify



def resid_points(model: Transformer) -> list[str]:
    """The residual stream after each block: "layer l" in the outputs."""
    return [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]


@dataclass
class Sweep:
    points: list[str]
    outcomes: dict[str, list[torch.Tensor]]   # outcome -> per point [B] bool (over the pairs used)
    used: torch.Tensor                         # [n_pairs] bool: the model answers both sides correctly
    baseline_accuracy: float                   # on the originals
    forward_passes: int                        # batched forward passes run

    def proportions(self) -> list[dict[str, float]]:
        n = max(int(self.used.sum()), 1)
        return [{o: int(self.outcomes[o][i].sum()) / n for o in OUTCOMES} for i in range(len(self.points))]


def _position_mask(pairs: Pairs, t: int, position: str) -> torch.Tensor:
    """[B, T] bool: where the counterfactual's activation replaces the original's."""
    if position not in PATCH_POSITIONS:
        raise ValueError(f"position must be one of {PATCH_POSITIONS}, got {position!r}")
    if position == "all":
        return torch.ones(len(pairs), t, dtype=torch.bool)
    pos = pairs.original.query_pos - (1 if position == "que" else 0)
    return torch.nn.functional.one_hot(pos, t).bool()


@torch.no_grad()
def patched_logits(model: Transformer, pairs: Pairs, point: str, source: torch.Tensor,
                   position: str = "query") -> torch.Tensor:
    """[B, V] logits at the original's query when `source` (an activation of the same shape as the
    original's at `point`) replaces the original's activation at `position`."""
    tokens = pairs.original.tokens
    mask = _position_mask(pairs, tokens.shape[1], position)[..., None]

    def patch(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.where(mask, source.to(x.dtype), x)

    with hooks(model, [(point, patch)]):
        return model(tokens, positions=pairs.original.query_pos)


def resume_block(point: str) -> int | None:
    """The block a run can resume from after patching `point` (None: not a residual-stream point)."""
    parts = point.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] in ("hook_resid_pre", "hook_resid_post"):
        return int(parts[1]) + (parts[2] == "hook_resid_post")
    return None


@dataclass
class Patched:
    """Argmax predictions at the query of every pair: clean, and with each point patched."""
    points: list[str]
    original: torch.Tensor                     # [B] the original run's prediction
    counterfactual: torch.Tensor               # [B] the counterfactual run's prediction
    by_point: list[torch.Tensor]               # per point [B] the patched original's prediction
    forward_passes: int                        # batched forward passes run

    def used(self, pairs: Pairs) -> torch.Tensor:
        """[B] bool: the model answers both sides correctly (the pairs an analysis counts)."""
        return (self.original == pairs.original.answer) & (self.counterfactual == pairs.counterfactual.answer)


@torch.no_grad()
def patch_each_point(model: Transformer, pairs: Pairs, points: list[str] | None = None,
                     position: str = "query") -> Patched:
    """Patch at each of `points` (default: the residual after every block), one batched pass each.

    A patched residual-stream point does not rerun the blocks before it: the run resumes from the
    original's cached residual there (patched) through the remaining blocks, which gives the same
    logits as a full patched pass (tests check it against the hook-based loop) for less work."""
    model.eval()
    points = points or resid_points(model)
    orig, cf = pairs.original, pairs.counterfactual
    if orig.tokens.shape != cf.tokens.shape or not torch.equal(orig.query_pos, cf.query_pos):
        raise ValueError("original and counterfactual must have the same layout (same N per pair)")
    cf_logits, cf_cache = run_with_cache(model, points, cf.tokens, positions=cf.query_pos)
    resumable = [p for p in points if resume_block(p) is not None]
    clean_logits, orig_cache = run_with_cache(model, resumable, orig.tokens, positions=orig.query_pos)
    mask = _position_mask(pairs, orig.tokens.shape[1], position)[..., None]
    by_point = []
    for point in points:
        start = resume_block(point)
        if start is None:
            logits = patched_logits(model, pairs, point, cf_cache[point], position)
        else:
            patched = torch.where(mask, cf_cache[point], orig_cache[point])
            logits = model.run_blocks(patched, start, positions=orig.query_pos)
        by_point.append(logits.argmax(-1))
    return Patched(points, clean_logits.argmax(-1), cf_logits.argmax(-1), by_point, len(points) + 2)


@torch.no_grad()
def sweep(model: Transformer, pairs: Pairs, points: list[str] | None = None, position: str = "query") -> Sweep:
    """`patch_each_point`, its predictions classified over the pairs the model answers correctly."""
    patched = patch_each_point(model, pairs, points, position)
    used = patched.used(pairs)
    kept = pairs.select(torch.nonzero(used).flatten())
    outcomes: dict[str, list[torch.Tensor]] = {o: [] for o in OUTCOMES}
    for prediction in patched.by_point:
        for o, hit in classify(prediction[used], kept).items():
            outcomes[o].append(hit)
    baseline = float((patched.original == pairs.original.answer).float().mean())
    return Sweep(patched.points, outcomes, used, baseline, patched.forward_passes)


@torch.no_grad()
def naive_sweep(model: Transformer, pairs: Pairs, points: list[str] | None = None) -> dict[str, list[int]]:
    """The same sweep one pair and one point at a time (no batching, no reuse): outcome counts per
    point over the pairs the model gets right. Slow on purpose; the benchmark's baseline."""
    model.eval()
    points = points or resid_points(model)
    counts = {o: [0] * len(points) for o in OUTCOMES}
    for i in range(len(pairs)):
        one = pairs.select([i])
        n = int(one.original.n[0])
        t = seq_len(n)
        one.original.tokens, one.counterfactual.tokens = one.original.tokens[:, :t], one.counterfactual.tokens[:, :t]
        ok_orig = model(one.original.tokens, positions=one.original.query_pos).argmax(-1) == one.original.answer
        ok_cf = model(one.counterfactual.tokens, positions=one.counterfactual.query_pos).argmax(-1) \
            == one.counterfactual.answer
        if not (ok_orig and ok_cf):
            continue
        for p, point in enumerate(points):
            _, cache = run_with_cache(model, [point], one.counterfactual.tokens)
            pred = patched_logits(model, one, point, cache[point]).argmax(-1)
            for o, hit in classify(pred, one).items():
                counts[o][p] += int(hit[0])
    return counts


def peak_and_ratio(proportions: list[dict[str, float]]) -> tuple[int, float | None]:
    """The peak layer: where the intervention moves the binding most (largest positional + symbolic
    share; ties to the lower layer). The ratio: symbolic / positional there (None if positional is 0)."""
    shares = [p["positional"] + p["symbolic"] for p in proportions]
    peak = max(range(len(shares)), key=lambda i: (shares[i], -i))
    pos, sym = proportions[peak]["positional"], proportions[peak]["symbolic"]
    return peak, (sym / pos if pos > 0 else None)


def ratio_text(ratio: float | None, shares: dict[str, float], n_pairs: int | None = None) -> str:
    """The symbolic/positional ratio as every report and console line shows it. Undefined when no
    pair is positional: then the counts (or shares) say why, e.g. "990 : 0 pairs, no positional"."""
    if ratio is not None:
        return f"{ratio:.2f}"
    if n_pairs == 0:
        return "no pair counted"
    sym = shares.get("symbolic") or 0.0
    if n_pairs:
        return f"{round(sym * n_pairs)} : 0 pairs, {'no positional' if sym else 'neither'}"
    return f"{sym:.2f} : 0 of the pairs, {'no positional' if sym else 'neither'}"
