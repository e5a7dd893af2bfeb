"""Cost of exact expected-accuracy evaluation (spec section 5) against one clean pass and against
the naive 2^n full passes, measured in the same process on the same inputs.

    .venv/bin/python benchmarks/exact_eval_cost.py                  # table + runs/exact_eval_cost.json
    .venv/bin/python benchmarks/exact_eval_cost.py --n 1000 --repeats 1 --quick   # ~1 min

Goal (issue): exact evaluation at most 2x one clean pass over the test set. The memoised
evaluator runs each node once per distinct input (see resilinet.evaluate); the table also gives
that count, and `flop_bound` = the multiply-adds the memoised evaluation must do divided by a
clean pass's, i.e. the ratio no implementation that computes every pattern's accuracy exactly can
beat (timings above it are overhead). Weights are random: cost does not depend on training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lab.io import atomic_write_json
from lab.report import md_table
from timing import best_of
from resilinet.evaluate import clean_accuracy, exact_pattern_accuracies, naive_pattern_accuracies
from resilinet.config import ModelConfig
from resilinet.models import build_model

# (label, arch, per-example input shape, ModelConfig overrides, fraction of --n used: the
# paper-size CNNs are ~50x costlier per image, so they time a quarter of the examples)
CASES = [
    ("MLP chain, 784 features (cpu preset)", "mlp", (784,), {}, 1.0),
    ("ResNet-18 preact w0.125, 1x28x28 (cpu preset before issue 17)", "resnet18", (1, 28, 28),
     {"width": 0.125, "resnet": "preact"}, 1.0),
    ("MobileNet 0.75, 3x32x32 (paper)", "mobilenet", (3, 32, 32), {"width": 0.75}, 0.25),
    ("ResNet-18 preact, 3x32x32", "resnet18", (3, 32, 32), {"width": 1.0, "resnet": "preact"}, 0.25),
]
QUICK = CASES[:2]


def node_macs(model, x: torch.Tensor) -> dict[str, float]:
    """Multiply-adds per example of each node's body + its skip projections (conv/linear only)."""
    macs: dict[str, float] = {}
    current = {"name": None}

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs[current["name"]] = macs.get(current["name"], 0) + out[0].numel() * k
        elif isinstance(mod, torch.nn.Linear):
            macs[current["name"]] = macs.get(current["name"], 0) + mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    pre = [node.register_forward_pre_hook(lambda mod, args, n=name: current.update(name=n))
           for name, node in model.nodes.items()]
    with torch.no_grad():
        model(x[:1])
    for h in handles + pre:
        h.remove()
    return macs



def run_case(label, arch, shape, kw, method, n, batch, repeats) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, method=method, **kw), shape, 10).eval()
    x, y = torch.randn(n, *shape), torch.randint(0, 10, (n,))
    clean_accuracy(model, x[:batch], y[:batch], batch)  # warm-up (allocator, kernels)
    counts: dict[str, int] = {}
    t_clean = best_of(lambda: clean_accuracy(model, x, y, batch), repeats)
    t_exact = best_of(lambda: exact_pattern_accuracies(model, x, y, 0.1, batch, counts), repeats)
    t_naive = best_of(lambda: naive_pattern_accuracies(model, x, y, 0.1, batch), repeats)
    exact = exact_pattern_accuracies(model, x, y, 0.1, batch)
    naive = naive_pattern_accuracies(model, x, y, 0.1, batch)
    assert [r.accuracy for r in exact] == [r.accuracy for r in naive], "memoised != brute force"
    macs = node_macs(model, x)
    n_batches = -(-n // batch)
    per_batch = {k: v // (n_batches * repeats) for k, v in counts.items()}
    flop_bound = sum(macs.get(k, 0) * per_batch[k] for k in per_batch) / sum(macs.values())
    return {"case": label, "method": method, "n": n, "batch": batch, "patterns": len(exact),
            "clean_s": t_clean, "exact_s": t_exact, "naive_s": t_naive,
            "exact_over_clean": t_exact / t_clean, "naive_over_clean": t_naive / t_clean,
            "speedup_vs_naive": t_naive / t_exact, "node_runs_per_batch": per_batch,
            "flop_bound": flop_bound}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="test examples (default 2000)")
    ap.add_argument("--batch", type=int, default=500, help="evaluation batch size (default 500)")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--methods", default="vanilla,deepfogguard,resilinet", help="comma-separated methods")
    ap.add_argument("--quick", action="store_true", help="only the two cpu-preset models")
    ap.add_argument("--out", default="runs/exact_eval_cost.json", help="JSON output path")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for label, arch, shape, kw, frac in (QUICK if args.quick else CASES):
        for method in args.methods.split(","):
            n = max(args.batch, int(args.n * frac))
            r = run_case(label, arch, shape, kw, method, n, min(args.batch, n), args.repeats)
            rows.append(r)
            print(f"{label:<42} {method:<13} clean {r['clean_s']:.3f}s  exact {r['exact_s']:.3f}s "
                  f"({r['exact_over_clean']:.2f}x, FLOP bound {r['flop_bound']:.2f}x)  naive {r['naive_s']:.3f}s "
                  f"({r['naive_over_clean']:.2f}x)", file=sys.stderr)
    table = md_table(
        ["model", "method", "clean pass (s)", "exact (s)", "exact / clean", "FLOP bound", "naive 2^n (s)",
         "naive / clean", "exact speed-up vs naive", "node runs per batch"],
        [[r["case"], r["method"], f"{r['clean_s']:.3f}", f"{r['exact_s']:.3f}", f"{r['exact_over_clean']:.2f}",
          f"{r['flop_bound']:.2f}", f"{r['naive_s']:.3f}", f"{r['naive_over_clean']:.2f}",
          f"{r['speedup_vs_naive']:.2f}", " ".join(f"{k}:{v}" for k, v in r["node_runs_per_batch"].items())]
         for r in rows])
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"n": args.n, "batch": args.batch, "threads": args.threads,
                                 "repeats": args.repeats, "torch": torch.__version__, "rows": rows})
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
