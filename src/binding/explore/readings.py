"""What a model computes on the examples shown, read through its named hook points.

    prediction   the argmax answer at the query (what `evaluate` scores)
    attention    every layer's and head's attention pattern (`blocks.{l}.attn.hook_pattern`
                 [batch, head, q, k]), the causal lower triangle only, as bytes (0..50 = 0..1)
    logit lens   at the query, after the embedding and after every block, the residual stream read
                 out through the final layer norm and unembedding (`Transformer.readout`): the top
                 tokens and their probabilities

All examples of one call have the same N (one `NGroup`), so no row is padded.
"""
from __future__ import annotations

import numpy as np
import torch

from ..hooks import run_with_cache
from ..interp.probes import probe_points
from ..model import Transformer
from ..task import Batch

LENS_TOP = 3
ATTENTION_LEVELS = 50   # attention is stored as round(p * 50) in a byte: steps of 0.02, enough to see by (and small)


def pattern_points(model: Transformer) -> list[str]:
    return [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]


@torch.no_grad()
def read_examples(model: Transformer, batch: Batch) -> dict:
    """prediction [B], attention [B] bytes, lens [B][point][top] (token, probability)."""
    model.eval()
    lens_points, patterns = probe_points(model), pattern_points(model)   # embed, then after each block
    logits, cache = run_with_cache(model, lens_points + patterns, batch.tokens, positions=batch.query_pos)
    rows = torch.arange(len(batch))
    lens = torch.stack([model.readout(cache[p][rows, batch.query_pos]).softmax(-1) for p in lens_points], 1)
    top = lens.topk(LENS_TOP, dim=-1)                                   # [B, points, top]
    attn = torch.stack([cache[p] for p in patterns], 1)                 # [B, L, H, T, T]
    return {"prediction": logits.argmax(-1).tolist(),
            "attention": [attention_bytes(a) for a in attn],
            "lens": [[[[int(t), round(float(p), 3)] for t, p in zip(ti, pi)] for ti, pi in zip(te, pe)]
                     for te, pe in zip(top.indices, top.values)]}


def attention_bytes(pattern: torch.Tensor) -> bytes:
    """[L, H, T, T] -> for each layer, head and query row q, the weights of keys 0..q, as bytes."""
    t = pattern.shape[-1]
    q, k = np.tril_indices(t)
    lower = pattern[..., torch.from_numpy(q), torch.from_numpy(k)]     # [L, H, T(T+1)/2], row by row
    return (lower * ATTENTION_LEVELS).round().clamp(0, ATTENTION_LEVELS).to(torch.uint8).numpy().tobytes()
