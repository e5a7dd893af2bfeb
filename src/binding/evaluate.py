"""Evaluation: exact-match accuracy per N on fresh (held-out) samples, for the ID and OOD ranges.

Evaluation examples come from the held-out slice of the example space (see `task.is_heldout`),
so no evaluated example was ever a training example.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from lab.report import mean_sd
from lab.seeding import step_rng

from .model import Transformer
from .task import Batch, TaskConfig, Vocab, describe, sample_batch

EVAL_STREAM_TRAINING = 1   # the fixed samples watched during training (early stopping)
EVAL_STREAM_FINAL = 2      # the final report: a different, fresh draw


def eval_batches(task: TaskConfig, n: int, samples: int, seed: int, stream: int,
                 batch_size: int = 512, first_hop: bool = False) -> list[Batch]:
    """first_hop: ask colour -> shape questions instead of the two-hop queries (a diagnostic)."""
    rng = step_rng(seed, n, stream)
    out, left = [], samples
    while left > 0:
        out.append(sample_batch(task, min(batch_size, left), rng, (n, n), split="eval",
                                first_hop_fraction=1.0 if first_hop else 0.0))
        left -= len(out[-1])
    return out


Predictor = Callable[[Batch], torch.Tensor]


def token_predictor(model: Transformer, device: str = "cpu") -> Predictor:
    """Predict the answer token of text-only batches: argmax over the vocabulary at the query."""
    @torch.no_grad()
    def predict(batch: Batch) -> torch.Tensor:
        logits = model(batch.tokens.to(device), positions=batch.query_pos.to(device))
        return logits.argmax(-1).cpu()
    return predict


def accuracy_by_n(predict: Predictor, task: TaskConfig, n_values: range, samples_per_n: int, seed: int,
                  stream: int, vocab: Vocab | None = None, max_mistakes: int = 0, first_hop: bool = False,
                  progress: bool = False) -> tuple[dict[int, float], list[str]]:
    acc, mistakes = {}, []
    for n in tqdm(n_values, desc="evaluate", unit="N", disable=not progress, leave=False, dynamic_ncols=True):
        correct = 0
        for batch in eval_batches(task, n, samples_per_n, seed, stream, first_hop=first_hop):
            pred = predict(batch)
            hit = pred == batch.answer
            correct += int(hit.sum())
            for i in torch.nonzero(~hit).flatten().tolist():
                if len(mistakes) >= max_mistakes or vocab is None:
                    break
                mistakes.append(describe(batch, i, vocab, prediction=int(pred[i])))
        acc[n] = correct / samples_per_n
    return acc, mistakes


def summarize(acc: dict[int, float], task: TaskConfig, samples_per_n: int) -> dict:
    """The results-file schema: accuracy_by_n (str N -> acc), ID/OOD means and ranges."""
    id_vals = [acc[n] for n in range(task.id_n[0], task.id_n[1] + 1) if n in acc]
    ood_vals = [acc[n] for n in range(task.ood_n[0], task.ood_n[1] + 1) if n in acc]
    return {
        "accuracy_by_n": {str(n): a for n, a in sorted(acc.items())},
        "id_accuracy": float(np.mean(id_vals)) if id_vals else None,
        "ood_accuracy": float(np.mean(ood_vals)) if ood_vals else None,
        "ood_accuracy_sd_over_n": mean_sd(ood_vals)[1] if ood_vals else None,
        "id_range": list(task.id_n),
        "ood_range": list(task.ood_n),
        "samples_per_n": samples_per_n,
    }


def evaluate(predict: Predictor, task: TaskConfig, samples_per_n: int, seed: int,
             max_mistakes: int = 5, first_hop: bool = False, progress: bool = False) -> dict:
    """Full ID + OOD evaluation on the final stream; includes the first mistakes in words.
    first_hop: the first-hop questions (colour -> shape) instead of the task's queries; progress:
    a bar over N."""
    vocab = Vocab.of(task)
    n_values = sorted(set(range(task.id_n[0], task.id_n[1] + 1)) | set(range(task.ood_n[0], task.ood_n[1] + 1)))
    acc, mistakes = accuracy_by_n(predict, task, n_values, samples_per_n, seed, EVAL_STREAM_FINAL,
                                  vocab, max_mistakes, first_hop, progress)
    return {**summarize(acc, task, samples_per_n), **({"queries": "first-hop"} if first_hop else {}),
            "mistakes": mistakes}


def format_table(results: dict) -> str:
    lo, hi = results["id_range"]
    rows = [f"{'N':>4} {'accuracy':>9}"]
    for n, a in results["accuracy_by_n"].items():
        tag = "ID" if lo <= int(n) <= hi else "OOD"
        rows.append(f"{n:>4} {a:9.3f}  {tag}")
    rows.append(f"ID mean  {results['id_accuracy']:.4f}   OOD mean {results['ood_accuracy']:.4f}")
    return "\n".join(rows)
