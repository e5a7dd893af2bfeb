"""The interchange interventions of one example, as `binding analyze` runs them over many pairs.

The example is the original; `counterfactual.pairs_of` builds its counterfactual (the same objects
in another slot order, another object queried, its shape bound to a fresh item); then
`interventions.patch_each_point` patches the counterfactual's activation into the original at
every block and `counterfactual.classify` names each patched answer positional / symbolic /
reflexive / no effect / other. Those are the functions `analyze` uses; the page only keeps the
answer per layer for one pair instead of counting outcomes over all pairs. As in `analyze`, a pair
counts only when the model answers both sides correctly; the page shows the others too, marked.
"""
from __future__ import annotations

import torch

from ..config import AnalyzeConfig
from ..interp.counterfactual import OUTCOMES, STRATEGIES, Pairs, classify, pairs_of
from ..interp.interventions import patch_each_point
from ..model import Transformer
from ..task import Batch, TaskConfig, Vocab, describe


def example_pairs(task: TaskConfig, batch: Batch, seed: int) -> tuple[Pairs, torch.Tensor] | None:
    """The counterfactual pair of every example with N >= 3 (None when there is none)."""
    if int(batch.n.max()) < 3:
        return None
    return pairs_of(task, batch, seed)


def pair_entries(task: TaskConfig, pairs: Pairs) -> list[dict]:
    """Per pair: the counterfactual in words and the item each strategy predicts."""
    vocab = Vocab.of(task)
    return [{"text": describe(pairs.counterfactual, p, vocab),
             "predicted": {s: int(pairs.predicted[s][p]) for s in STRATEGIES}}
            for p in range(len(pairs))]


def outcome_names(prediction: torch.Tensor, pairs: Pairs) -> list[str]:
    """[P] patched predictions -> the outcome of each ("positional", ..., "other")."""
    hits = classify(prediction, pairs)
    return [next(o for o in OUTCOMES if hits[o][p]) for p in range(len(pairs))]


def patch_entries(model: Transformer, pairs: Pairs, acfg: AnalyzeConfig) -> list[dict]:
    """Per pair: the model's answers on both sides, whether analyze counts the pair, and per layer
    the patched answer and its outcome (`acfg.point` of every block, patched at `acfg.position`)."""
    points = [f"blocks.{l}.hook_{acfg.point}" for l in range(model.cfg.n_layers)]
    patched = patch_each_point(model, pairs, points, acfg.position)
    used = patched.used(pairs)
    outcomes = [outcome_names(pred, pairs) for pred in patched.by_point]   # [layer][pair]
    return [{"original": int(patched.original[p]), "counterfactual": int(patched.counterfactual[p]),
             "counted": bool(used[p]),
             "layers": [[int(patched.by_point[l][p]), outcomes[l][p]] for l in range(len(points))]}
            for p in range(len(pairs))]
