"""A fixed pool of training sequences repeated beside fresh ones (`train.pool_size`, `pool_fraction`).

Charton & Kempe 2024 ("Emergent properties with repeated examples") find tasks that are not
learned from unlimited fresh data learned from a smaller repeated set, fastest when a small
repeated subset is mixed into fresh data ("two-set training"); Zucchet et al. 2025 find plateaus
shorter when training sequences repeat. The pool is drawn once, from the training split only
(never a held-out example), from its own stream; each batch takes `round(batch_size *
pool_fraction)` pool examples (with replacement) and the rest fresh. `pool_accuracy` (logged at
each evaluation) tells memorising the pool from learning the task.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.seeding import step_rng

from .task import Batch, TaskConfig, concat, sample_batch

POOL_STREAM = 4
POOL_EVAL = 512   # pool examples scored at each evaluation


class Pool:
    def __init__(self, task: TaskConfig, size: int, fraction: float, batch_size: int, seed: int):
        self.batch = sample_batch(task, size, step_rng(seed, 0, POOL_STREAM))
        self.take = round(batch_size * fraction)
        self.fresh = batch_size - self.take

    def mix(self, fresh: Batch, rng: np.random.Generator) -> Batch:
        """`fresh` (self.fresh examples) followed by self.take pool examples."""
        return concat([fresh, self.batch.select(rng.integers(len(self.batch), size=self.take))])

    @torch.no_grad()
    def accuracy(self, model, device: str) -> float:
        part = self.batch.select(np.arange(min(POOL_EVAL, len(self.batch))))
        logits = model(part.tokens.to(device), positions=part.query_pos.to(device))
        return float((logits.argmax(-1).cpu() == part.answer).float().mean())
