"""Accuracy slices of a run: by N (the run's own final evaluation, results.json) and by the queried
object's ordinal slot, ID and OOD (measured here on the pools of held-out examples the page draws,
and the ID slot accuracy the run logged at its last evaluation, metrics.jsonl)."""
from __future__ import annotations

import numpy as np

from .examples import NGroup
from .inputs import ExploredRun


def slot_accuracy(groups: list[NGroup], run_index: int, n_range: tuple[int, int]) -> dict[str, float]:
    """Slot (0-based, str) -> accuracy over the pools of the N in n_range."""
    slots, correct = [], []
    for g in groups:
        if n_range[0] <= g.n <= n_range[1]:
            slots.append(g.pool.query_slot.numpy())
            correct.append((g.pool_predictions[run_index] == g.pool.answer).numpy())
    if not slots:
        return {}
    s, c = np.concatenate(slots), np.concatenate(correct)
    return {str(k): round(float(c[s == k].mean()), 3) for k in np.unique(s)}


def run_slices(run: ExploredRun, run_index: int, groups: list[NGroup]) -> dict:
    task = run.cfg.task
    res = run.results or {}
    logged = (run.last_metrics or {}).get("slot_accuracy")
    return {
        "accuracy_by_n": {n: round(a, 3) for n, a in res.get("accuracy_by_n", {}).items()},
        "id_accuracy": _round(res.get("id_accuracy")), "ood_accuracy": _round(res.get("ood_accuracy")),
        "samples_per_n": res.get("samples_per_n"),
        "results_note": "" if run.results else f"{run.path}/results.json is missing (the run did not finish?)",
        "slot_id": slot_accuracy(groups, run_index, tuple(task.id_n)),
        "slot_ood": slot_accuracy(groups, run_index, tuple(task.ood_n)),
        "slot_pool_per_n": len(groups[0].pool) if groups else 0,
        "slot_logged": {k: round(v, 3) for k, v in logged.items()} if logged else None,
        "slot_logged_step": (run.last_metrics or {}).get("step"),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
