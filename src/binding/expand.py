"""Vocabulary expansion (the paper's appendix D): a trained model gets new colour, shape and item
tokens, and every other weight is kept.

Token ids are laid out specials | colours | shapes | items (task.Vocab), so growing one vocabulary
moves the ids of the ones after it: each old row of the embedding and the unembedding moves to its
token's new id, unchanged, and each new row is drawn from a normal with the per-dimension mean and
standard deviation of the existing rows of its kind (new colours look like colours, new items
like items). On old-vocabulary inputs the expanded model computes exactly what it did, and the
logits of old tokens are unchanged (tested); only the new tokens' logits are added. The stage then
trains on the larger task (train.py) until its threshold holds.
"""
from __future__ import annotations

import torch

from .task import Vocab

KINDS = ("color", "shape", "item")
GROWN = ("embed.weight", "unembed.weight")   # the only weights whose shape depends on the vocabulary


def _span(vocab: Vocab, kind: str) -> tuple[int, int]:
    start = {"color": vocab.color0, "shape": vocab.shape0, "item": vocab.item0}[kind]
    size = {"color": vocab.n_colors, "shape": vocab.n_shapes, "item": vocab.n_items}[kind]
    return start, size


def grow_rows(weight: torch.Tensor, old: Vocab, new: Vocab, generator: torch.Generator) -> torch.Tensor:
    """[old.size, D] -> [new.size, D]: old rows at their tokens' new ids, new rows ~ N(mean, sd) of their kind."""
    out = torch.empty(new.size, weight.shape[1], dtype=weight.dtype)
    out[:old.color0] = weight[:old.color0]                      # specials keep their ids
    for kind in KINDS:
        (a, n), (b, m) = _span(old, kind), _span(new, kind)
        rows = weight[a:a + n]
        out[b:b + n] = rows
        if m > n:
            noise = torch.randn(m - n, weight.shape[1], generator=generator, dtype=weight.dtype)
            out[b + n:b + m] = rows.mean(0) + rows.std(0) * noise
    return out


def expand_state(state: dict[str, torch.Tensor], old: Vocab, new: Vocab, seed: int) -> dict[str, torch.Tensor]:
    """A model state dict for the `new` vocabulary. (With tied embeddings the two matrices are one
    parameter; loading the grown state writes it twice, the unembedding's rows last.)"""
    generator = torch.Generator().manual_seed(seed)
    return {**state, **{name: grow_rows(state[name], old, new, generator) for name in GROWN}}


def old_token_ids(old: Vocab, new: Vocab) -> torch.Tensor:
    """[old.size]: each old token's id in the new vocabulary."""
    ids = list(range(old.color0))
    for kind in KINDS:
        (_, n), (b, _) = _span(old, kind), _span(new, kind)
        ids += range(b, b + n)
    return torch.tensor(ids)


def retokenize(tokens: torch.Tensor, old: Vocab, new: Vocab) -> torch.Tensor:
    """Token ids of the old vocabulary rewritten in the new one."""
    return old_token_ids(old, new)[tokens]
