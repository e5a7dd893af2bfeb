"""Which held-out examples the page shows: per N, a few of the final evaluation's stream, plus
mistakes found among more of them (so "show a mistake" has something to show at most N).

The pool of each N is drawn by `evaluate.eval_batches` from the final-evaluation stream with the
first run's seed: the same held-out split, the same sampler, as the run's `results.json`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..evaluate import EVAL_STREAM_FINAL, eval_batches, token_predictor
from ..model import Transformer
from ..task import Batch, TaskConfig, concat


@dataclass
class NGroup:
    """The examples of one N: the pool the slices are measured on, and those the page shows."""
    n: int
    pool: Batch
    pool_predictions: list[torch.Tensor]   # per run [P] predicted token
    shown: torch.Tensor                    # [S] indices into the pool, in page order

    def shown_batch(self) -> Batch:
        return self.pool.select(self.shown)


def n_values(task: TaskConfig) -> list[int]:
    """Every N of the ID and OOD evaluation ranges, ascending."""
    return sorted(set(range(task.id_n[0], task.id_n[1] + 1)) | set(range(task.ood_n[0], task.ood_n[1] + 1)))


def pick_examples(task: TaskConfig, models: list[Transformer], per_n: int, pool_size: int, seed: int,
                  mistakes_per_n: int = 2) -> list[NGroup]:
    """Per N: the pool's first `per_n` examples, then up to `mistakes_per_n` later ones that some
    model gets wrong (mistakes among the first ones are shown anyway)."""
    groups = []
    for n in n_values(task):
        pool = concat(eval_batches(task, n, max(pool_size, per_n), seed, EVAL_STREAM_FINAL))
        preds = [token_predictor(m)(pool) for m in models]
        wrong = torch.stack([p != pool.answer for p in preds]).any(0)
        later = torch.nonzero(wrong[per_n:]).flatten()[:mistakes_per_n] + per_n
        shown = torch.cat([torch.arange(min(per_n, len(pool))), later])
        groups.append(NGroup(n, pool, preds, shown))
    return groups
