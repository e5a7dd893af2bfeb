"""Plateau diagnostics: what a model on the two-hop plateau may be learning before accuracy moves.

Logged at every evaluation of every stage (`train.diagnostic_samples` held-out text examples of the
ID range, the same ones each time):

    slot_accuracy      accuracy by the queried object's ordinal slot (0 = first in the context):
                       a positional shortcut shows up here first, as slots that are right before
                       others are;
    attn_query_color   per layer, the attention mass from the query position to the queried
    attn_query_shape   object's colour token and its shape token (the first hop), and to the answer's
    attn_assoc_shape   association shape and item tokens (the second hop); each is the largest
    attn_assoc_item    mean over the layer's heads (one head can do a hop on its own).

Chance levels: 1/N for slot accuracy on the "pick an item present" plateau; for attention, one
over the number of earlier tokens (about 1/(4N+3)).
"""
from __future__ import annotations

import numpy as np
import torch

from lab.seeding import step_rng

from .hooks import run_with_cache
from .task import Layout, TaskConfig, sample_batch

DIAGNOSTIC_STREAM = 5   # its own draw: the evaluation and training streams are unchanged
TARGETS = ("query_color", "query_shape", "assoc_shape", "assoc_item")


def diagnostic_batch(task: TaskConfig, n_samples: int, seed: int):
    return sample_batch(task, n_samples, step_rng(seed, 0, DIAGNOSTIC_STREAM), n_range=task.id_n, split="eval")


def attention_targets(batch) -> dict[str, np.ndarray]:
    """[B] position of each diagnostic target token in each example."""
    slot = batch.query_slot.numpy()
    assoc = (batch.assoc_order.numpy() == slot[:, None]).argmax(axis=1)   # the association about it
    lay = Layout(batch.n.numpy())
    return {"query_color": lay.color(slot), "query_shape": lay.shape(slot),
            "assoc_shape": lay.assoc_shape(assoc), "assoc_item": lay.assoc_item(assoc)}


@torch.no_grad()
def plateau_diagnostics(model, task: TaskConfig, n_samples: int, seed: int, device: str) -> dict:
    """The fields above for `model` (eval mode) on `n_samples` held-out examples."""
    batch = diagnostic_batch(task, n_samples, seed)
    n_layers = len(model.blocks)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    qpos = batch.query_pos.to(device)
    logits, cache = run_with_cache(model, names, batch.tokens.to(device), positions=qpos)
    correct = (logits.argmax(-1).cpu() == batch.answer).numpy()
    slots = batch.query_slot.numpy()
    out: dict = {"slot_accuracy": {str(s): round(float(correct[slots == s].mean()), 4)
                                   for s in range(task.id_n[1]) if (slots == s).any()}}
    rows = torch.arange(len(batch), device=device)
    targets = {k: torch.as_tensor(v, device=device) for k, v in attention_targets(batch).items()}
    for key in TARGETS:
        out[f"attn_{key}"] = []
    for name in names:
        from_query = cache[name][rows, :, qpos]                            # [B, H, T]
        for key in TARGETS:
            mass = from_query[rows, :, targets[key]]                        # [B, H]
            out[f"attn_{key}"].append(round(float(mass.mean(0).max()), 4))
    return out
