"""Counterfactual pairs for interchange interventions (spec §5; Gur-Arieh, Geva, Geiger 2025).

A pair is an original example and a counterfactual of the same length N. Patching the
counterfactual's residual stream into the original run at the last token (the query) moves
*whatever the model carries there* into the original context; each binding strategy then predicts
a different item of the original:

    original        objects (c_0 s_0) ... (c_{N-1} s_{N-1}), query colour c_q, answer t_q
    counterfactual  the same N objects in another order: the original's object j now sits at
                    slot k, and it is the queried one; its shape is bound to a fresh item t'

    strategy     what the patched query carries           predicted item (in the original)
    positional   "the object at ordinal slot k"           t_k  (item of the original's slot k)
    symbolic     "the object whose colour is c_j"         t_j  (item of the original's c_j object)
    reflexive    "the answer is t'"                       t'   (the counterfactual's own answer)
    no effect    nothing: the original query wins        t_q  (the original answer)

with q, j, k three distinct slots (so N >= 3) and t' outside {t_q, t_j, t_k}, so the four
predictions are four different items and none but "no effect" is the original answer. Objects
keep their colour-shape pairing, so "symbolic" covers both lexical readings (by colour or by
shape). The counterfactual's associations are listed in a fresh random order.

`make_pairs` is deterministic for a seed; both sides are plain `Batch`es of the task, so any model
of the task (or the natural-language version in `pretrained.py`) can run them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lab.errors import UserError

from ..task import Batch, TaskConfig, Vocab, collate, encode, seq_len

STRATEGIES = ("positional", "symbolic", "reflexive", "no_effect")
OUTCOMES = STRATEGIES + ("other",)


@dataclass
class Pairs:
    original: Batch
    counterfactual: Batch
    predicted: dict[str, torch.Tensor]  # strategy -> [B] item token id that strategy predicts
    cf_slot: torch.Tensor               # [B] k: the counterfactual's query slot
    symbolic_slot: torch.Tensor         # [B] j: where the counterfactual's query colour sits in the original

    def __len__(self) -> int:
        return len(self.original)

    def select(self, idx) -> "Pairs":
        idx = torch.as_tensor(idx)
        return Pairs(self.original.select(idx), self.counterfactual.select(idx),
                     {k: v[idx] for k, v in self.predicted.items()}, self.cf_slot[idx], self.symbolic_slot[idx])


def make_pairs(cfg: TaskConfig, n_pairs: int, seed: int, n_range: tuple[int, int] | None = None) -> Pairs:
    """`n_pairs` (original, counterfactual) pairs with N ~ U{n_range} (default: the ID range, at least 3)."""
    lo, hi = n_range or cfg.id_n
    lo = max(lo, 3)
    if n_pairs < 1:
        raise UserError(f"need at least one pair, got {n_pairs}")
    if hi < lo:
        raise UserError(f"counterfactual pairs need N >= 3 (three distinct slots); the range {n_range or cfg.id_n} "
                        "has none")
    _check_items(cfg, hi)
    rng = np.random.default_rng(seed)
    n = rng.integers(lo, hi + 1, size=n_pairs)
    sides = _empty_sides(n_pairs, hi)
    for i, ni in enumerate(n):
        colors = rng.choice(cfg.n_colors, ni, replace=False)
        shapes = rng.choice(cfg.n_shapes, ni, replace=False)
        items = rng.choice(cfg.n_items, ni, replace=False)
        q, j, k = rng.choice(ni, 3, replace=False)
        cf = _counterfactual_objects(cfg, rng, colors, shapes, items, q, j, k)
        _put(sides, i, "original", (colors, shapes, items, _order(cfg, rng, ni)), q)
        _put(sides, i, "counterfactual", (*cf, _order(cfg, rng, ni)), k)
        sides["slots"][i] = k, j
    return _as_pairs(cfg, n, sides)


def pairs_of(cfg: TaskConfig, batch: Batch, seed: int) -> tuple[Pairs, torch.Tensor]:
    """A counterfactual for each example of `batch` with N >= 3, built as `make_pairs` builds one
    (another slot order in which object j != q sits at slot k != q and is queried, its shape bound to
    a fresh item); the originals are the examples themselves. Each counterfactual depends only on
    the example's tokens and `seed`. Returns the pairs and the batch rows they belong to ([P])."""
    rows = torch.nonzero(batch.n >= 3).flatten()
    if len(rows) == 0:
        raise UserError("counterfactual pairs need N >= 3 (three distinct slots); no example has it")
    _check_items(cfg, int(batch.n.max()))
    sides = _empty_sides(len(rows), int(batch.n.max()))
    for p, i in enumerate(rows.tolist()):
        ni, q = int(batch.n[i]), int(batch.query_slot[i])
        rng = np.random.default_rng([seed, *batch.tokens[i, :seq_len(ni)].tolist()])
        colors, shapes, items, order = (a[i, :ni].numpy() for a in (batch.colors, batch.shapes, batch.items,
                                                                     batch.assoc_order))
        j, k = rng.choice(np.setdiff1d(np.arange(ni), [q]), 2, replace=False)
        cf = _counterfactual_objects(cfg, rng, colors, shapes, items, q, j, k)
        _put(sides, p, "original", (colors, shapes, items, order), q)
        _put(sides, p, "counterfactual", (*cf, _order(cfg, rng, ni)), k)
        sides["slots"][p] = k, j
    return _as_pairs(cfg, batch.n[rows].numpy(), sides), rows


def _check_items(cfg: TaskConfig, hi: int) -> None:
    if hi > min(cfg.n_colors, cfg.n_shapes, cfg.n_items) or cfg.n_items < max(hi, 4):
        raise UserError(f"N up to {hi} with {cfg.n_items} items cannot give four distinct predicted items")


def _counterfactual_objects(cfg: TaskConfig, rng: np.random.Generator, colors: np.ndarray, shapes: np.ndarray,
                            items: np.ndarray, q: int, j: int, k: int) -> tuple[np.ndarray, ...]:
    """The counterfactual's (colours, shapes, items) by slot: a random slot order in which the
    original's object j lands at slot k, its shape bound to a fresh item t' outside {t_q, t_j, t_k}."""
    rest = rng.permutation([s for s in range(len(colors)) if s != j])
    perm = np.insert(rest, k, j)              # counterfactual slot m holds original object perm[m]
    t_new = rng.choice(np.setdiff1d(np.arange(cfg.n_items), items[[q, j, k]]))
    others = rng.choice(np.setdiff1d(np.arange(cfg.n_items), [t_new]), len(colors) - 1, replace=False)
    return colors[perm], shapes[perm], np.insert(others, k, t_new)


FIELDS = ("colors", "shapes", "items", "order")


def _empty_sides(n_pairs: int, hi: int) -> dict:
    sides = {side: {f: np.zeros((n_pairs, hi), np.int64) for f in FIELDS} for side in ("original", "counterfactual")}
    for side in ("original", "counterfactual"):
        sides[side]["query"] = np.empty(n_pairs, np.int64)
    sides["slots"] = np.empty((n_pairs, 2), np.int64)     # (k, j) per pair
    return sides


def _put(sides: dict, i: int, side: str, row: tuple[np.ndarray, ...], query_slot: int) -> None:
    for f, v in zip(FIELDS, row):
        sides[side][f][i, :len(v)] = v
    sides[side]["query"][i] = query_slot


def _as_pairs(cfg: TaskConfig, n: np.ndarray, sides: dict) -> Pairs:
    original, counterfactual = (
        collate([encode(cfg, n, *(sides[side][f] for f in FIELDS), sides[side]["query"])])
        for side in ("original", "counterfactual"))
    item0 = Vocab.of(cfg).item0
    rows = torch.arange(len(n))
    cf_slot_t, sym_slot_t = (torch.from_numpy(np.ascontiguousarray(sides["slots"][:, c])) for c in (0, 1))
    predicted = {
        "positional": item0 + original.items[rows, cf_slot_t],
        "symbolic": item0 + original.items[rows, sym_slot_t],
        "reflexive": counterfactual.answer.clone(),
        "no_effect": original.answer.clone(),
    }
    return Pairs(original, counterfactual, predicted, cf_slot_t, sym_slot_t)


def _order(cfg: TaskConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.permutation(n) if cfg.shuffle_associations else np.arange(n)


def classify(prediction: torch.Tensor, pairs: Pairs) -> dict[str, torch.Tensor]:
    """outcome -> [B] bool: which strategy's item each prediction is ("other": none of them)."""
    out = {s: prediction == pairs.predicted[s] for s in STRATEGIES}
    out["other"] = ~torch.stack(list(out.values())).any(dim=0)
    return out
