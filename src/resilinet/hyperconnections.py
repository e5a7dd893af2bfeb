"""How a node combines what its producers send (spec section 2), and hyperconnection weights.

Methods (the paper's names):
    vanilla       the chain alone; no skip hyperconnections, no failout.
    deepfogguard  weighted SUM of every incoming link, no failout.
    resilinet     MULTIPLEXER: the input from the node below, or, only when that node is dead, the
                  skip input. Never both. Failout in training.
    resilinet+    the sum (deepFogGuard) plus failout.

A dead producer sends nothing: its consumers see zeros. `alive` values are floats 0/1, either a
python number (whole batch) or a tensor [B] (per sample, for per-sample failout and Monte-Carlo).
The original Keras code detected "dead" as an all-zero batch tensor; we pass an explicit alive
mask, so a legitimately all-zero activation is never mistaken for a failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .topology import Link, Topology

Alive = float | torch.Tensor  # 0/1 scalar, or [B] per sample


@dataclass(frozen=True)
class Method:
    name: str
    rule: str          # "sum" | "mux"
    skips: bool        # uses skip hyperconnections at all
    failout: bool      # failout during training by default


METHODS: dict[str, Method] = {
    "vanilla": Method("vanilla", "sum", skips=False, failout=False),
    "deepfogguard": Method("deepfogguard", "sum", skips=True, failout=False),
    "resilinet": Method("resilinet", "mux", skips=True, failout=True),
    "resilinet+": Method("resilinet+", "sum", skips=True, failout=True),
}
METHOD_LABELS = {"vanilla": "Vanilla", "deepfogguard": "deepFogGuard", "resilinet": "ResiliNet",
                 "resilinet+": "ResiliNet+"}


def _bcast(a: Alive, x: torch.Tensor) -> Alive:
    """[B] alive -> [B, 1, ...] to broadcast against x [B, ...]; scalars pass through."""
    if isinstance(a, torch.Tensor) and a.dim() == 1:
        return a.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return a


def _is_zero(a: Alive) -> bool:
    return not isinstance(a, torch.Tensor) and float(a) == 0.0


def _is_one(a: Alive) -> bool:
    return not isinstance(a, torch.Tensor) and float(a) == 1.0


def combine(rule: str, links: Sequence[tuple[torch.Tensor | None, Alive, float]]) -> torch.Tensor | None:
    """Combine incoming links [(x_l [B, ...] or None, alive_l, weight_l)] given in priority order
    (chain producer first, then skips). Returns None when every producer is (known) dead, i.e.
    the node receives nothing; callers treat that as zeros.

    sum: sum_l w_l * alive_l * x_l
    mux: w_l * x_l of the first alive link, per sample:
         sum_l w_l * alive_l * prod_{k<l} (1 - alive_k) * x_l
    """
    out: torch.Tensor | None = None
    remaining: Alive = 1.0  # mux: probability mass not yet taken by a higher-priority link
    for x, a, w in links:
        take = a if rule == "sum" else (a * remaining if not _is_one(remaining) else a)
        if rule == "mux":
            remaining = remaining * (1 - a) if not _is_zero(remaining) else 0.0
        if x is None or _is_zero(take):
            continue
        term = x if (_is_one(take) and w == 1.0) else x * (_bcast(take, x) * w)
        out = term if out is None else out + term
    return out


def hyperconnection_weights(topology: Topology, scheme: int, reliability: Sequence[float],
                            seed: int = 0) -> dict[Link, float]:
    """Fixed scalar per link (spec section 2), following the original code:
    1: all ones (default); 2: reliability of the source, normalised over the consumer's incoming
    links; 3: reliability of the source; 4: uniform(0, 1), drawn once (seeded).
    The IoT never fails (reliability 1). `reliability` is in the topology's failure-prone order."""
    r = {n: 1.0 for n in topology.chain}
    r.update(dict(zip(topology.failure_prone, reliability, strict=True)))
    links = [(p, c) for c in topology.chain[1:] for p in topology.producers(c)]
    if scheme == 1:
        return {l: 1.0 for l in links}
    if scheme == 2:
        return {(p, c): r[p] / sum(r[q] for q in topology.producers(c)) for p, c in links}
    if scheme == 3:
        return {(p, c): r[p] for p, c in links}
    if scheme == 4:
        rng = np.random.default_rng([seed, 4])
        return {l: float(rng.uniform(0.0, 1.0)) for l in links}
    raise ValueError(f"hyperconnection weight scheme must be 1-4, got {scheme}")
