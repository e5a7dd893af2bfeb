"""Attention knockout (spec §5): per layer, stop the query token from attending to a group of tokens
and measure how much accuracy drops.

Groups (token layout in task.py): "context" = the N colour and shape tokens, "associations" = the
2N shape/item tokens after [CTX_END]. The knockout sets the query row's pre-softmax scores for
those keys to -inf in one layer (all heads), so the query's attention renormalises over the rest;
every other position and layer is untouched.
"""
from __future__ import annotations

import torch

from ..hooks import hooks
from ..model import Transformer
from ..task import Batch, Layout

GROUPS = ("context", "associations")


def group_mask(batch: Batch, group: str) -> torch.Tensor:
    """[B, T] bool: the keys of `group` in each example ("none": no key)."""
    t = batch.tokens.shape[1]
    pos = torch.arange(t)[None, :]
    lay = Layout(batch.n[:, None])
    if group == "context":
        return (pos >= 1) & (pos < lay.ctx_end)
    if group == "associations":
        return (pos >= lay.assoc_start) & (pos < lay.que)
    if group == "none":
        return torch.zeros_like(pos, dtype=torch.bool).expand(len(batch), t)
    raise ValueError(f"group must be one of {GROUPS + ('none',)}, got {group!r}")


@torch.no_grad()
def knocked_out_predictions(model: Transformer, batch: Batch, layer: int, group: str) -> torch.Tensor:
    """[B] argmax predictions at the query with the query's attention to `group` blocked in `layer`."""
    keys = group_mask(batch, group)
    rows = torch.arange(len(batch))

    def block(scores: torch.Tensor, name: str) -> torch.Tensor:   # [B, H, Tq, Tk]
        scores = scores.clone()
        q_row = scores[rows, :, batch.query_pos]                     # [B, H, Tk]
        scores[rows, :, batch.query_pos] = q_row.masked_fill(keys[:, None, :], float("-inf"))
        return scores

    with hooks(model, [(f"blocks.{layer}.attn.hook_attn_scores", block)]):
        return model(batch.tokens, positions=batch.query_pos).argmax(-1)


@torch.no_grad()
def knockout(model: Transformer, batch: Batch) -> dict:
    """Accuracy with nothing blocked, and per group the accuracy with it blocked in each layer."""
    model.eval()
    clean = float((model(batch.tokens, positions=batch.query_pos).argmax(-1) == batch.answer).float().mean())
    out = {"clean_accuracy": clean, "accuracy_by_layer": {}, "drop_by_layer": {}}
    for group in GROUPS:
        acc = [float((knocked_out_predictions(model, batch, layer, group) == batch.answer).float().mean())
               for layer in range(model.cfg.n_layers)]
        out["accuracy_by_layer"][group] = acc
        out["drop_by_layer"][group] = [clean - a for a in acc]
    return out
