"""Evaluation under failures (spec section 5).

Exact expected accuracy: for every alive/dead pattern of the n failure-prone nodes, the accuracy
of the test split under that pattern; weighted by P(pattern) = prod r_i^alive (1 - r_i)^dead.
A pattern with no surviving IoT->cloud path gets the guess accuracy sum_c p_c^2 (the cloud
guesses from the training label prior).

Cost: instead of 2^n full forward passes, each node's output is computed once per distinct
*input signature*: the set of producers that actually reach it (sum: every alive producer; mux:
the first alive one), recursively. A node's output therefore depends only on the alive states of
nodes upstream of it, and e.g. the edge runs once, not 2^n times; the cloud runs only for
connected patterns with distinct inputs. The memoised outputs are bit-identical to
`model(x, alive)` for the same pattern (same ops on the same tensors).

Monte-Carlo (option): draw an alive pattern per test sample, run the model with per-sample masks,
and let disconnected samples guess a class drawn from the prior; converges to the exact value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from tqdm import tqdm

from .models import PartitionedModel
from .topology import (ANALYTIC_P_NO_PATH, INPUT, LOGITS, AliveMask, alive_columns, pattern_indices,
                       pattern_probability, producer_flags, recorded_topology)

Signature = tuple  # (node, ((producer, producer signature), ...))


@dataclass
class PatternResult:
    alive: tuple[int, ...]   # 1 = alive, per failure-prone node in spec order
    accuracy: float
    connected: bool

    def to_dict(self) -> dict:
        return {"alive": list(self.alive), "accuracy": self.accuracy, "connected": self.connected}


def signature(model: PartitionedModel, node: str, alive: AliveMask) -> Signature:
    """What determines `node`'s output under `alive`: which producers' outputs reach it, and
    (recursively) what determined theirs. Hyperconnection weights are fixed, so equal signatures
    mean equal outputs."""
    up = alive.alive_nodes()

    def sig(name: str) -> Signature:
        pn = model.nodes[name]
        if name == model.topology.iot:
            return (name, ((INPUT, ()),))
        ups = [p for p in pn.producers if up[p]]
        if pn.rule == "mux":
            ups = ups[:1]  # the first alive producer in priority order (chain, then skip)
        return (name, tuple((p, sig(p)) for p in ups))

    return sig(node)


class _NodeCache:
    """Per-batch memo {signature: what the node sent}; counts body evaluations per node."""

    def __init__(self, model: PartitionedModel, x: torch.Tensor, counts: dict[str, int]):
        self.model, self.x, self.counts = model, x, counts
        self.memo: dict[Signature, dict[str, torch.Tensor]] = {}

    def sent(self, sig: Signature) -> dict[str, torch.Tensor]:
        if sig in self.memo:
            return self.memo[sig]
        node, ups = sig
        pn = self.model.nodes[node]
        if node == self.model.topology.iot:
            inputs = {INPUT: self.x}
        else:
            inputs = {p: self.sent(s)[node] for p, s in ups}
        # Producers not in the signature are dead (or, for the mux, not selected): alive 0 drops them.
        out = pn(inputs, producer_flags(pn.producers, inputs), batch_size=self.x.shape[0])
        self.counts[node] = self.counts.get(node, 0) + 1
        self.memo[sig] = out
        return out


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


@torch.no_grad()
def exact_pattern_accuracies(model: PartitionedModel, x: torch.Tensor, y: torch.Tensor, guess_accuracy: float,
                             batch_size: int = 1024, counts: dict[str, int] | None = None,
                             progress: bool = False) -> list[PatternResult]:
    """Accuracy on (x [N, ...], y [N]) under each of the 2^n patterns, with memoised node outputs.
    `counts` (optional) receives the number of body evaluations per node, summed over batches;
    progress: a bar over the batches."""
    model.eval()
    topo = model.topology
    masks = [AliveMask.from_pattern(topo, a) for a in topo.patterns()]
    patterns = [m.pattern for m in masks]
    connected = [m.connected for m in masks]
    sigs = [signature(model, topo.cloud, m) if m.connected else None for m in masks]
    correct = [0] * len(patterns)
    counts = {} if counts is None else counts
    bar = tqdm(_batches(x, y, batch_size), total=math.ceil(len(y) / batch_size), disable=not progress,
               desc=f"evaluate {len(patterns)} patterns", unit="batch", leave=False, dynamic_ncols=True)
    for xb, yb in bar:
        cache = _NodeCache(model, xb, counts)
        hits: dict[Signature, int] = {}
        for i, sig in enumerate(sigs):
            if sig is None:
                continue
            if sig not in hits:
                logits = cache.sent(sig)[LOGITS]  # [B, n_classes]
                hits[sig] = int((logits.argmax(1) == yb).sum())
            correct[i] += hits[sig]
    n = len(y)
    return [PatternResult(a, (correct[i] / n) if connected[i] else guess_accuracy, connected[i])
            for i, a in enumerate(patterns)]


@torch.no_grad()
def naive_pattern_accuracies(model: PartitionedModel, x: torch.Tensor, y: torch.Tensor, guess_accuracy: float,
                             batch_size: int = 1024) -> list[PatternResult]:
    """The brute force the exact evaluator replaces: one full forward pass per pattern."""
    model.eval()
    topo = model.topology
    out = []
    for a in topo.patterns():
        mask = AliveMask.from_pattern(topo, a)
        correct = sum(int((model(xb, mask.floats()).argmax(1) == yb).sum()) for xb, yb in _batches(x, y, batch_size))
        out.append(PatternResult(a, correct / len(y) if mask.connected else guess_accuracy, mask.connected))
    return out


@torch.no_grad()
def clean_accuracy(model: PartitionedModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Accuracy with every node alive (model selection uses this on the validation split)."""
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in _batches(x, y, batch_size))
    return correct / max(1, len(y))


def expected_accuracy(results: Sequence[PatternResult], reliability: Sequence[float]) -> float:
    return math.fsum(pattern_probability(r.alive, reliability) * r.accuracy for r in results)


def p_no_path_of(results: Sequence[PatternResult], reliability: Sequence[float]) -> float:
    return math.fsum(pattern_probability(r.alive, reliability) for r in results if not r.connected)


def brackets(p_no_path: float, guess: float, clean: float) -> dict[str, float]:
    """Analytic brackets for the expected accuracy given P(no path):
    floor   = P(no path) * guess                 (every connected pattern wrong)
    ceiling = (1 - P(no path)) + P(no path) * guess  (every connected pattern right)
    clean_ceiling = (1 - P(no path)) * clean + P(no path) * guess: failures cost nothing while a
    path survives; vanilla meets it exactly, the skip methods approach it."""
    return {"floor": p_no_path * guess, "ceiling": (1 - p_no_path) + p_no_path * guess,
            "clean_ceiling": (1 - p_no_path) * clean + p_no_path * guess}


@torch.no_grad()
def monte_carlo_accuracy(model: PartitionedModel, x: torch.Tensor, y: torch.Tensor, prior: torch.Tensor,
                         reliability: Sequence[float], draws: int = 10, seed: int = 0,
                         batch_size: int = 1024) -> float:
    """Mean accuracy over `draws` passes, each sample with its own random alive pattern
    (node i alive w.p. r_i). Disconnected samples guess a class drawn from `prior`."""
    model.eval()
    topo = model.topology
    gen = torch.Generator().manual_seed(seed)
    n_nodes = len(topo.failure_prone)
    table = torch.tensor([topo.connected(a) for a in topo.patterns()], dtype=torch.bool)  # per pattern
    r = torch.tensor(reliability, dtype=torch.float32)
    correct, total = 0, 0
    for _ in range(draws):
        for xb, yb in _batches(x, y, batch_size):
            alive = (torch.rand(len(xb), n_nodes, generator=gen) < r).float()  # [B, n]
            pred = model(xb, alive_columns(topo, alive)).argmax(1)
            conn = table[pattern_indices(topo, alive)]
            guess = torch.multinomial(prior, len(xb), replacement=True, generator=gen)
            pred = torch.where(conn, pred, guess)
            correct += int((pred == yb).sum())
            total += len(yb)
    return correct / total


def evaluate_model(model: PartitionedModel, splits, eval_batch_size: int = 1024, split: str = "test",
                   mc_draws: int = 0, seed: int = 0, progress: bool = False) -> dict:
    """Everything `resilinet evaluate` writes: per-pattern table, expected accuracy per
    reliability setting, P(no path), analytic brackets and their checks (optionally Monte-Carlo)."""
    x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
    topo = model.topology
    guess = splits.guess_accuracy()  # sum_c p_c^2 of the TRAINING label prior
    counts: dict[str, int] = {}
    results = exact_pattern_accuracies(model, x, y, guess, eval_batch_size, counts, progress)
    clean = results[0].accuracy  # patterns() yields all-alive first
    settings = topo.settings()
    out = {
        "nodes": list(topo.failure_prone),
        "topology": {"name": topo.name, "chain": list(topo.chain), "skips": [f"{a}-{b}" for a, b in topo.skips]},
        "split": split, "n_examples": len(y),
        "patterns": [r.to_dict() for r in results],
        "guess_accuracy": guess,
        "clean_accuracy": clean,
        "reliability_settings": {k: list(v) for k, v in settings.items()},
        "expected_accuracy": {k: expected_accuracy(results, r) for k, r in settings.items()},
        "p_no_path": {k: p_no_path_of(results, r) for k, r in settings.items()},
        "node_evaluations_per_batch": {k: v / math.ceil(len(y) / eval_batch_size) for k, v in counts.items()},
    }
    out["brackets"] = {k: brackets(out["p_no_path"][k], guess, clean) for k in settings}
    out["checks"] = check_brackets(out)
    if mc_draws:
        prior = splits.class_prior()
        out["monte_carlo"] = {"draws": mc_draws, "expected_accuracy": {
            k: monte_carlo_accuracy(model, x, y, prior, r, mc_draws, seed, eval_batch_size)
            for k, r in settings.items()}}
    return out


def check_brackets(ev: dict, tol: float = 1e-9) -> dict:
    """Consistency checks on an evaluation: every expected accuracy inside its analytic bracket,
    P(no path) equal to the spec's table (for the full and the skip-less topology), and for
    vanilla the identity E = P(all alive) * clean + (1 - P(all alive)) * guess."""
    full = recorded_topology(ev["topology"])
    topo_name = full.name
    out = {"inside_brackets": all(ev["brackets"][k]["floor"] - tol <= ev["expected_accuracy"][k]
                                  <= ev["brackets"][k]["ceiling"] + tol for k in ev["expected_accuracy"])}
    skips = ev["topology"]["skips"]
    if not skips or len(skips) == len(full.all_skips):
        col = 0 if not skips else 1
        out["p_no_path_matches_spec"] = all(
            abs(ev["p_no_path"][k] - ANALYTIC_P_NO_PATH[topo_name][k][col]) < 1e-6
            for k in ANALYTIC_P_NO_PATH[topo_name])
    if not skips:
        dev = 0.0
        for k, rel in ev["reliability_settings"].items():
            p_all = math.prod(rel)
            want = p_all * ev["clean_accuracy"] + (1 - p_all) * ev["guess_accuracy"]
            dev = max(dev, abs(ev["expected_accuracy"][k] - want))
        out["vanilla_identity_max_error"] = dev
        out["vanilla_identity_holds"] = dev <= tol
    return out
