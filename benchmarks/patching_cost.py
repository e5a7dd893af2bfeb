"""Cost of the per-layer interchange-intervention sweep (issue 5): the batched sweep against a naive
one-pair-at-a-time loop, in the same process, on the same pairs and the same trained model.

    .venv/bin/python benchmarks/patching_cost.py --run runs/official/text-only-s0
    # table + benchmarks/results/patching_cost.json

Goal: the full sweep over 1,000 pairs costs no more than (layers + 2) batched forward passes. The
table gives the sweep's pass count, its time against one batched forward pass over the same pairs
(so "x one pass" <= layers + 2 means no hidden overhead), and the naive loop's time. Both return
the same outcome counts (checked here and in the tests).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from binding.interp.counterfactual import OUTCOMES, make_pairs
from binding.interp.interventions import naive_sweep, sweep
from binding.run import load_trained
from lab.errors import UserError, run_cli
from lab.io import atomic_write_json
from lab.report import md_table
from timing import best_of



def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/official/text-only-s0", help="a trained binding run")
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--naive-pairs", type=int, default=200, help="pairs timed in the naive loop (scaled to --pairs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/patching_cost.json")
    args = p.parse_args(argv)
    if not (Path(args.run) / "config.json").exists():
        raise UserError(f"no trained run at {args.run}; train one with "
                        "`binding train --preset cpu --out runs/official/text-only-s0` or pass --run")
    torch.set_num_threads(args.threads)
    model, cfg, _ = load_trained(args.run)
    pairs = make_pairs(cfg.task, args.pairs, 0)
    layers = cfg.model.n_layers

    with torch.no_grad():
        one_pass = best_of(lambda: model(pairs.original.tokens, positions=pairs.original.query_pos), args.repeats)
    result = {}
    t_sweep = best_of(lambda: result.update(sw=sweep(model, pairs)), args.repeats)
    sw = result["sw"]
    sub = pairs.select(torch.arange(min(args.naive_pairs, len(pairs))))
    t_naive_sub = best_of(lambda: result.update(naive=naive_sweep(model, sub)), 1)
    t_naive = t_naive_sub * len(pairs) / len(sub)
    batched_sub = sweep(model, sub)
    same = all([int(h.sum()) for h in batched_sub.outcomes[o]] == result["naive"][o] for o in OUTCOMES)

    rows = [
        ["one batched forward pass", f"{one_pass * 1e3:.1f}", "1.0", "1", ""],
        ["batched sweep", f"{t_sweep * 1e3:.1f}", f"{t_sweep / one_pass:.2f}", str(sw.forward_passes),
         f"goal <= {layers + 2} passes"],
        [f"naive loop (timed on {len(sub)} pairs, scaled)", f"{t_naive * 1e3:.0f}", f"{t_naive / one_pass:.0f}",
         str(len(pairs) * (2 + 2 * layers)), f"{t_naive / t_sweep:.0f}x slower than the sweep"],
    ]
    print(f"{args.pairs} pairs, {layers} layers, model {args.run}, {args.threads} thread(s)")
    print(md_table(["method", "ms", "x one pass", "forward passes", "note"], rows))
    print(f"batched and naive outcome counts identical on {len(sub)} pairs: {same}")
    atomic_write_json(args.out, {
        "run": args.run, "pairs": args.pairs, "layers": layers, "threads": args.threads,
        "one_pass_s": one_pass, "sweep_s": t_sweep, "sweep_forward_passes": sw.forward_passes,
        "sweep_x_one_pass": t_sweep / one_pass, "naive_s_scaled": t_naive, "naive_pairs_timed": len(sub),
        "naive_x_sweep": t_naive / t_sweep, "goal_passes": layers + 2, "counts_identical": same,
    })
    print(f"-> {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run_cli(_main, None))
