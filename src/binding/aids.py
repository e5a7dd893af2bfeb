"""Training aids: help to get the two-hop task off its plateau on a CPU budget (spec §7; not in the paper).

Every aid is on from a stage's first step until its ID threshold holds (`train.aids_off_at_threshold`;
the stage's extra steps then train on the paper's task alone). Losses, read from the residual stream:

    hop loss         at the query position, the residual after `hop_loss_layer` blocks, read out
                     through the final norm + unembedding, predicts the first hop (queried shape);
    prev-token loss  at every position, the residual after `prev_token_layer` blocks predicts the
                     previous token (a dense signal for the previous-token heads both hops are
                     built on).
Data (drawn by `task.sample_batch` and `task.more_queries`):
    one-hop queries      a share asks with the shape (shape -> item);
    first-hop questions  a share asks for the query colour's shape (colour -> shape);
    several queries      `binding train` only: up to `queries_per_example` queries per example.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lab.seeding import step_rng

from .model import Transformer
from .task import Batch, TaskConfig, more_queries

QUERY_STREAM = 3   # the extra queries' own draw: runs without them keep their data


def resid_name(layer: int) -> str:
    """The residual stream after `layer` blocks (1-based)."""
    return f"blocks.{layer - 1}.hook_resid_post"


def hook_names(tc, aids_on: bool) -> list[str]:
    """The residual-stream hook points the active loss aids read (tc: a TrainConfig)."""
    layers = {layer for layer, w in ((tc.hop_loss_layer, tc.hop_loss_weight),
                                     (tc.prev_token_layer, tc.prev_token_loss_weight)) if aids_on and w > 0}
    return [resid_name(layer) for layer in sorted(layers)]


def sampling(tc, aids_on: bool) -> dict[str, float]:
    """The data aids as `sample_batch` / `sample_context` keyword arguments."""
    return {"one_hop_fraction": tc.one_hop_fraction if aids_on else 0.0,
            "first_hop_fraction": tc.first_hop_fraction if aids_on else 0.0}


def extra_queries(batch: Batch, task: TaskConfig, tc, aids_on: bool, seed: int, step: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(tokens, positions [B, K], answers [B, K]) asking up to `queries_per_example` queries of
    each example while the aids are on; None: the batch's own single query."""
    if not aids_on or tc.queries_per_example <= 1:
        return None
    return more_queries(batch, task, tc.queries_per_example, step_rng(seed, step, QUERY_STREAM))


def aid_losses(model: Transformer, cache: dict[str, torch.Tensor], tc, qpos: torch.Tensor,
               hop_target: torch.Tensor, prev_target: torch.Tensor, total: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """`total` plus the loss aids whose residuals are in `cache` (see `hook_names`).
    qpos [B]: the (first) query position; hop_target [B]: the queried shape's token;
    prev_target [B, T-1]: the token before each position, -100 where no loss is wanted (padding,
    noise, image tokens)."""
    stats = {}
    hop = resid_name(tc.hop_loss_layer)
    if tc.hop_loss_weight > 0 and hop in cache:
        rows = torch.arange(len(qpos), device=qpos.device)
        hop_loss = F.cross_entropy(model.readout(cache[hop][rows, qpos]), hop_target)   # [B, V] logits
        total = total + tc.hop_loss_weight * hop_loss
        stats["hop_loss"] = hop_loss.item()
    prev = resid_name(tc.prev_token_layer)
    if tc.prev_token_loss_weight > 0 and prev in cache:
        logits = model.readout(cache[prev][:, 1:])                                       # [B, T-1, V]
        prev_loss = F.cross_entropy(logits.flatten(0, 1), prev_target.flatten(), ignore_index=-100)
        total = total + tc.prev_token_loss_weight * prev_loss
        stats["prev_token_loss"] = prev_loss.item()
    return total, stats


def prev_targets(tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """[B, T-1]: each position's previous token where both are text tokens, else -100."""
    return tokens[:, :-1].masked_fill(~(text_mask[:, 1:] & text_mask[:, :-1]), -100)

