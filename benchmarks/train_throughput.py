"""Training throughput of the binding model against a textbook PyTorch transformer of the same size.

Both do the same work per step (forward on a padded batch of task sequences, answer-token loss,
backward, AdamW), in the same process, interleaved, so machine noise hits both alike. Reports
tokens/s, the ratio, and achieved FLOP/s against this CPU's measured fp32 matmul peak.

    python benchmarks/train_throughput.py [--preset cpu] [--steps 30] [--out benchmarks/results/train_throughput.json]
    python benchmarks/train_throughput.py --profile     # also: where one step of our model spends its CPU time
    python benchmarks/train_throughput.py --grid --out benchmarks/results/train_throughput_grid.json
        # batch 64 / 256 x threads 1 / 2: ours (eager, torch.compile, length-bucketed) against the
        # textbook model, steps/s and examples/s, all measured in the same run, interleaved
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binding.config import preset
from binding.model import Transformer
from binding.task import Vocab, sample_batch
from lab.config import apply_overrides


class TextbookTransformer(nn.Module):
    """nn.TransformerEncoder (pre-LN, GELU) with a causal mask and learned positions."""

    def __init__(self, vocab: int, d: int, heads: int, ff: int, layers: int, max_len: int):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        x = self.encoder(self.embed(tokens) + self.pos.weight[:t], mask=mask, is_causal=True)
        return self.head(self.ln(x[torch.arange(len(tokens)), positions]))


def matmul_peak_flops(size: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def train_flops_per_token(model: nn.Module, cfg, seq: float) -> float:
    """6 x (non-embedding parameters) + attention (12 x layers x seq x d): the standard estimate."""
    n = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name and "pos" not in name)
    return 6 * n + 12 * cfg.n_layers * seq * cfg.d_model


def profile_ops(fn) -> list[tuple[str, float]]:
    """(op, share of self CPU time) for one call of fn under torch.profiler, largest first."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events) or 1.0
    return sorted(((k, t / total) for k, t in events), key=lambda kv: -kv[1])


def bucketed(batch, parts: int = 2) -> list:
    """The batch split by N into `parts` sub-batches, each trimmed to its own longest example:
    the same examples with less padding (N 2..8 pads to 36 tokens; the mean example has 24)."""
    order = batch.n.argsort()
    return [batch.select(idx) for idx in order.chunk(parts)]


def _trim(b):
    from binding.task import seq_len

    width = seq_len(int(b.n.max()))
    return b.tokens[:, :width], b.query_pos, b.answer


def grid(args, cfg) -> dict:
    """steps/s and examples/s per (batch, threads, variant); every variant of a cell timed
    alternately in `rounds` rounds, best round kept."""
    import dataclasses

    vocab = Vocab.of(cfg.task).size
    cells = []
    for batch_size in (64, 256):
        batches = [sample_batch(cfg.task, batch_size, np.random.default_rng(i)) for i in range(args.steps)]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            ours = Transformer(cfg.model, vocab)
            compiled_model = Transformer(cfg.model, vocab)
            compiled = torch.compile(compiled_model, dynamic=True)
            ref = TextbookTransformer(vocab, cfg.model.d_model, cfg.model.n_heads, cfg.model.d_ff,
                                      cfg.model.n_layers, cfg.model.max_len)
            variants = {"ours": (ours, lambda b: [_trim(b)]), "ours, torch.compile": (compiled, lambda b: [_trim(b)]),
                        "ours, 2 length buckets": (ours, lambda b: [_trim(x) for x in bucketed(b)]),
                        "textbook": (ref, lambda b: [_trim(b)])}
            params = {"ours, torch.compile": compiled_model.parameters()}
            opts = {k: torch.optim.AdamW(params.get(k, m.parameters()), lr=1e-3) for k, (m, _) in variants.items()}

            def run(name: str) -> float:
                model, split = variants[name]
                t = time.perf_counter()
                for b in batches:
                    opts[name].zero_grad(set_to_none=True)
                    for tokens, pos, ans in split(b):
                        (F.cross_entropy(model(tokens, positions=pos), ans) * len(ans) / len(b)).backward()
                    opts[name].step()
                return time.perf_counter() - t

            for name in variants:   # warm-up (and compilation)
                run(name)
            best = dict.fromkeys(variants, float("inf"))
            for _ in range(args.rounds):
                for k in variants:
                    best[k] = min(best[k], run(k))
            for name, sec in best.items():
                cells.append({"batch": batch_size, "threads": threads, "variant": name,
                              "steps_per_s": args.steps / sec, "examples_per_s": args.steps * batch_size / sec,
                              "vs_textbook": best["textbook"] / sec})
    print(f"{'batch':>5} {'thr':>3} {'variant':24} {'steps/s':>8} {'examples/s':>10} {'vs textbook':>11}")
    for c in cells:
        print(f"{c['batch']:5} {c['threads']:3} {c['variant']:24} {c['steps_per_s']:8.2f} {c['examples_per_s']:10.0f} "
              f"{c['vs_textbook']:10.2f}x")
    return {"preset": args.preset, "overrides": args.overrides, "steps": args.steps, "rounds": args.rounds,
            "cells": cells, "model": dataclasses.asdict(cfg.model)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    ap.add_argument("--profile", action="store_true",
                    help="then profile our model's steps (torch.profiler) and list the ops by share of CPU time")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.pos_encoding=learned")
    ap.add_argument("--grid", action="store_true", help="the batch x threads x variant grid (see above)")
    args = ap.parse_args()
    cfg = apply_overrides(preset(args.preset), args.overrides)
    if args.grid:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(grid(args, cfg), indent=2))
        return
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)  # measure what training uses
    vocab = Vocab.of(cfg.task).size
    batches = [sample_batch(cfg.task, cfg.train.batch_size, np.random.default_rng(i)) for i in range(args.steps)]
    tokens_per_step = float(np.mean([b.tokens.numel() for b in batches]))
    seq = float(np.mean([b.tokens.shape[1] for b in batches]))
    torch.manual_seed(0)
    ours = Transformer(cfg.model, vocab)
    ref = TextbookTransformer(vocab, cfg.model.d_model, cfg.model.n_heads, cfg.model.d_ff, cfg.model.n_layers,
                              cfg.model.max_len)
    models = {"ours": ours, "textbook": ref}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}

    def run(name: str) -> float:
        model, opt = models[name], opts[name]
        t = time.perf_counter()
        for b in batches:
            logits = model(b.tokens, positions=b.query_pos)
            loss = F.cross_entropy(logits, b.answer)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    for name in models:  # warm-up
        run(name)
    times = {k: [] for k in models}
    for _ in range(args.rounds):
        for name in models:
            times[name].append(run(name))
    peak = matmul_peak_flops()
    rows = {}
    for name, model in models.items():
        sec = min(times[name])
        tok_s = tokens_per_step * args.steps / sec
        flops = train_flops_per_token(model, cfg.model, seq) * tok_s
        rows[name] = {"tokens_per_s": tok_s, "steps_per_s": args.steps / sec, "flop_per_s": flops,
                      "fraction_of_matmul_peak": flops / peak, "params": sum(p.numel() for p in model.parameters())}
    ratio = rows["ours"]["tokens_per_s"] / rows["textbook"]["tokens_per_s"]
    print(f"preset {args.preset}: batch {cfg.train.batch_size}, mean seq {seq:.1f}, threads {torch.get_num_threads()}, "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':10} {'tokens/s':>10} {'steps/s':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for name, r in rows.items():
        print(f"{name:10} {r['tokens_per_s']:10.0f} {r['steps_per_s']:8.2f} {r['flop_per_s'] / 1e9:8.2f} "
              f"{r['fraction_of_matmul_peak']:8.1%}")
    print(f"ours / textbook = {ratio:.2f}x")
    profile = profile_ops(lambda: run("ours")) if args.profile else None
    if profile:
        print("our model's steps by op (self CPU time):")
        for op, share in profile[:10]:
            print(f"  {share:6.1%}  {op}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"preset": args.preset, "overrides": args.overrides, "threads": torch.get_num_threads(), "matmul_peak_flop_per_s": peak,
                               "models": rows, "ratio_ours_over_textbook": ratio,
                               **({"profile_self_cpu_share": dict(profile)} if profile else {})}, indent=2))


if __name__ == "__main__":
    main()
