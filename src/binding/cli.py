"""`binding`: the binding study's command line.

    binding sample   --preset cpu --n 4 --count 3          print examples in words
    binding train    --preset cpu --out runs/t0 --seed 0   train (resumes if interrupted)
    binding evaluate --run runs/t0 --out eval.json         per-N accuracy on fresh samples
    binding config   --preset cpu                          list every field (run and curriculum) and its value
    binding render-samples --out samples.png               a PNG grid of rendered image contexts
    binding pretrain-encoder --kind cnn --out runs/enc     pretrain a small frozen visual encoder
    binding curriculum --regime image-text --out runs/cur  train one regime (stages shared under --out)
    binding reproduce --preset cpu --out runs/repro        every regime, table.json, report.md, figure
    binding combine --out runs/all runs/repro runs/gpu     one table over the seeds of several reproduce folders
    binding analyze --run runs/t0 --out runs/t0/mechanism  interventions, knockout, probes of one model
    binding compare-pretrained --llm DIR --vlm DIR --out D  the same intervention on Hugging Face LLM vs VLM

Any config field can be overridden after the flags: `binding train --preset cpu --out runs/x
model.pos_encoding=nope train.lr=1e-3 task.ood_n=9,16`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import config as cfglib
from lab.errors import UserError, run_cli
from lab.io import atomic_write_json

from .config import PRESETS, BindingConfig, preset

OVERRIDE_HELP = "config overrides as section.field=value (see `binding config`)"


def _config(args: argparse.Namespace) -> BindingConfig:
    return cfglib.apply_overrides(preset(args.preset), args.overrides).validate()


def cmd_config(args: argparse.Namespace) -> None:
    cfg, cur = _curriculum_configs(args)
    rows = cfglib.describe(cfg) + cfglib.describe(cur, "curriculum.")
    for key, value, doc in rows:
        print(f"{key:40} {value:14} {doc}")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from .task import Vocab, describe, sample_batch

    cfg = _config(args)
    n_range = (args.n, args.n) if args.n else cfg.task.train_n
    if args.n and args.n > min(cfg.task.n_colors, cfg.task.n_shapes, cfg.task.n_items):
        raise UserError(f"--n {args.n} is larger than the vocabularies allow for this preset")
    batch = sample_batch(cfg.task, args.count, np.random.default_rng(args.seed), n_range)
    vocab = Vocab.of(cfg.task)
    for i in range(len(batch)):
        if args.tokens:
            print(" ".join(vocab.word(t) for t in batch.tokens[i].tolist() if t != 0))
        print(describe(batch, i, vocab))


def cmd_train(args: argparse.Namespace) -> None:
    from .evaluate import format_table
    from .train import train

    cfg = _config(args)
    results = train(cfg, args.out, args.seed, quiet=args.quiet)
    print(format_table(results))
    print(f"steps {results['steps']}  threshold reached at {results['threshold_step']}  "
          f"train time {results['train_seconds']} s  -> {Path(args.out) / 'results.json'}")
    if results["mistakes"]:
        print("first mistakes:\n" + "\n".join(results["mistakes"][:3]))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate, format_table, token_predictor
    from .train import load_trained

    model, cfg, seed = load_trained(args.run)
    task = cfglib.apply_overrides(cfg, args.overrides).task.validate() if args.overrides else cfg.task
    if 4 * task.max_n + 4 > cfg.model.max_len:
        raise UserError(f"N={task.max_n} needs more positions than this model's max_len={cfg.model.max_len}")
    samples = args.samples or cfg.train.final_samples_per_n
    results = evaluate(token_predictor(model), task, samples, args.seed if args.seed is not None else seed,
                       first_hop=args.first_hop)
    print(format_table(results))
    print("first mistakes:\n" + "\n".join(results["mistakes"][:args.mistakes]))
    if args.out:
        from .plots import plot_accuracy_by_n

        atomic_write_json(args.out, {**results, "run": str(args.run)})
        png = plot_accuracy_by_n({Path(args.run).name: results}, Path(args.out).with_suffix(".png"))
        print(f"-> {args.out}, {png}")


def _render_config(overrides: list[str]):
    from .render import RenderConfig

    return cfglib.apply_overrides(RenderConfig(), overrides).validate()


def cmd_render_samples(args: argparse.Namespace) -> None:
    from .render import save_sample_grid

    path = save_sample_grid(args.out, _render_config(args.overrides), n_images=args.count,
                            n_min=args.n_min, n_max=args.n_max, seed=args.seed)
    print(f"-> {path}")


def cmd_pretrain_encoder(args: argparse.Namespace) -> None:
    from .encoders import pretrain_encoder

    meta = pretrain_encoder(args.kind, _render_config(args.overrides), args.steps, args.out, seed=args.seed)
    print(json.dumps(meta.get("eval", {}), indent=2))
    print(f"-> {Path(args.out) / 'encoder.safetensors'}")


def _curriculum_configs(args: argparse.Namespace):
    from .curriculum import CURRICULUM_PRESETS, split_overrides

    run_over, cur_over = split_overrides(args.overrides)
    cfg = cfglib.apply_overrides(preset(args.preset), run_over).validate()
    cur = cfglib.apply_overrides(CURRICULUM_PRESETS[args.preset](), cur_over).validate(cfg)
    return cfg, cur


def cmd_curriculum(args: argparse.Namespace) -> None:
    from .curriculum import ensure_encoder, regimes, run_regime

    cfg, cur = _curriculum_configs(args)
    if args.encoder_only:
        cur = ensure_encoder(cur, Path(args.out) / "encoder", quiet=args.quiet)
        print(f"encoder: {cur.encoder.path or cur.encoder.kind}")
        return
    if not args.regime:
        raise UserError(f"--regime is required; choose one of {list(regimes(cur))}")
    res = run_regime(args.regime, cfg, cur, args.out, args.seed, quiet=args.quiet, follow=args.follow)
    for st in res["stages"]:
        print(f"{st['stage']:>10}: {st['steps']:5d} steps (threshold at {st['threshold_step']}), "
              f"text OOD after it {st['text_ood_accuracy']:.4f}  [{st['run_dir']}]")
    print(f"{args.regime}: text ID {res['id_accuracy']:.4f}  text OOD {res['ood_accuracy']:.4f}  "
          f"total steps {res['total_steps']}")
    if args.analyze:
        from .interp.compare import analyze_regime
        mech = analyze_regime(Path(args.out) / f"seed{args.seed}" / args.regime, quiet=args.quiet)
        print(f"mechanism: peak layer {mech['peak_layer']}, symbolic/positional {mech['symbolic_positional_ratio']}")


def cmd_combine(args: argparse.Namespace) -> None:
    from .reproduce import combine

    for e in combine(args.folders, args.out):
        print(f"{e['regime']:>24}: text OOD {e['ood_accuracy_mean']:.4f} +- {e['ood_accuracy_sd']:.4f}  "
              f"seeds {','.join(map(str, e['seeds']))}")
    print(f"-> {Path(args.out) / 'table.json'}, {Path(args.out) / 'report.md'}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .reproduce import reproduce

    _curriculum_configs(args)  # bad overrides fail here, not in every job
    if args.seeds is not None and args.seeds < 1:
        raise UserError("--seeds must be >= 1")
    if args.first_seed < 0:
        raise UserError("--first-seed must be >= 0")
    table = reproduce(args.preset, args.out, args.seeds, args.overrides, args.workers, quiet=args.quiet,
                      analysis=not args.no_analysis, first_seed=args.first_seed)
    for e in table:
        print(f"{e['regime']:>24}: text OOD {e['ood_accuracy_mean']:.4f} +- {e['ood_accuracy_sd']:.4f}  "
              f"ID {e['id_accuracy_mean']:.4f}  (paper {e['paper_ood_accuracy']})")
    print(f"-> {Path(args.out) / 'table.json'}, {Path(args.out) / 'report.md'}")


def cmd_analyze(args: argparse.Namespace) -> None:
    from .interp.analyze import AnalyzeConfig, analyze

    n_range = cfglib.parse_value(args.n_range, tuple[int, int], "--n-range") if args.n_range else (0, 0)
    acfg = AnalyzeConfig(n_pairs=args.pairs, seed=args.seed, n_range=n_range, point=args.point,
                         position=args.position, probe_samples=args.probe_samples)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    res = analyze(args.run, args.out, acfg)
    peak = res["peak_layer"]
    p = res["proportions_by_layer"][peak]
    ratio = res["symbolic_positional_ratio"]
    print(f"{res['n_pairs']}/{res['n_pairs_generated']} pairs used; peak layer {peak}: positional {p['positional']:.3f} "
          f"symbolic {p['symbolic']:.3f} reflexive {p['reflexive']:.3f}; symbolic/positional "
          f"{'inf' if ratio is None else f'{ratio:.2f}'}")
    print(f"-> {Path(args.out) / 'mechanism.json'}, {Path(args.out) / 'summary.md'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="binding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_preset(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                        help="named config: smoke (seconds), cpu (minutes on 2 cores), paper (GPU)")
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDE_HELP)

    sp = sub.add_parser("config", help="list every config field of a preset (run and curriculum)")
    with_preset(sp)
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("sample", help="print examples of the task in words")
    with_preset(sp)
    sp.add_argument("--n", type=int, default=0, help="objects per example (default: the training range)")
    sp.add_argument("--count", type=int, default=3, help="how many examples")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--tokens", action="store_true", help="also print the raw token sequence")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("train", help="train a model (resumes an interrupted run in --out)")
    with_preset(sp)
    sp.add_argument("--out", required=True, help="run directory")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="accuracy per N on fresh samples for a trained run")
    sp.add_argument("--run", required=True, help="run directory written by `binding train`")
    sp.add_argument("--out", help="write results JSON here")
    sp.add_argument("--samples", type=int, default=0, help="samples per N (default: the run's final_samples_per_n)")
    sp.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed)")
    sp.add_argument("--mistakes", type=int, default=3, help="mistakes to print")
    sp.add_argument("--first-hop", action="store_true",
                    help="ask first-hop questions (colour -> shape) instead of the two-hop queries: a "
                         "diagnostic for runs trained with train.first_hop_fraction")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="task overrides for evaluation, e.g. task.ood_n=9,16")
    sp.set_defaults(func=cmd_evaluate)

    render_help = "render overrides as field=value, e.g. canvas_px=64 cell_px=16 n_shapes=32"
    sp = sub.add_parser("render-samples", help="save a PNG grid of rendered image contexts")
    sp.add_argument("--out", required=True, help="PNG path")
    sp.add_argument("--count", type=int, default=16, help="images in the grid")
    sp.add_argument("--n-min", type=int, default=2, help="fewest objects per image")
    sp.add_argument("--n-max", type=int, default=8, help="most objects per image")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=render_help)
    sp.set_defaults(func=cmd_render_samples)

    sp = sub.add_parser("pretrain-encoder", help="pretrain a small visual encoder on rendered shapes")
    sp.add_argument("--kind", choices=["cnn", "vit"], default="cnn")
    sp.add_argument("--out", required=True, help="folder for encoder.safetensors + encoder.json")
    sp.add_argument("--steps", type=int, default=600, help="training steps (cnn: 600, vit: 400 suffice)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=render_help)
    sp.set_defaults(func=cmd_pretrain_encoder)
    cur_help = "overrides as section.field=value; curriculum.* fields set the curriculum (e.g. curriculum.stage_lr=5e-4)"
    sp = sub.add_parser("curriculum", help="train one regime (text-only, noise-text, image-text, ...)")
    sp.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="run and curriculum preset")
    sp.add_argument("--regime", help="text-only | noise-text | image-text | noise-image-text | mixed-from-start | "
                                     "text-only-equal-compute")
    sp.add_argument("--out", required=True, help="root folder; stages nest under OUT/seedS/ and are shared")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--encoder-only", action="store_true", help="only pretrain the embedded encoder into OUT/encoder")
    sp.add_argument("--follow", action="store_true",
                    help="text-only-equal-compute only: start while the other regimes of the seed still train "
                         "(in other processes): train up to their progress, wait there, and stop at the longest "
                         "one's total once all have finished")
    sp.add_argument("--analyze", action="store_true",
                    help="then analyse the regime's final model (`binding analyze`) into OUT/seedS/REGIME/mechanism")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=cur_help)
    sp.set_defaults(func=cmd_curriculum)

    sp = sub.add_parser("reproduce", help="train every regime, write table.json, report.md and a figure")
    sp.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    sp.add_argument("--out", required=True)
    sp.add_argument("--seeds", type=int, default=None, help="seeds per regime (default: the preset's; cpu 1)")
    sp.add_argument("--first-seed", type=int, default=0,
                    help="seeds are FIRST..FIRST+SEEDS-1 (add seeds to a study in another run or machine)")
    sp.add_argument("--workers", type=int, default=2, help="jobs in parallel (one thread each)")
    sp.add_argument("--no-analysis", action="store_true", help="skip the mechanism analysis of every regime")
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=cur_help)
    sp.set_defaults(func=cmd_reproduce)

    sp = sub.add_parser("combine", help="one table.json and report.md over the seeds of several reproduce folders")
    sp.add_argument("--out", required=True)
    sp.add_argument("folders", nargs="+", metavar="FOLDER", help="`binding reproduce` output folders (distinct seeds)")
    sp.set_defaults(func=cmd_combine)

    sp = sub.add_parser("analyze", help="the mechanism of a trained model: interventions, knockout, probes")
    sp.add_argument("--run", required=True, help="a run or curriculum stage directory (config.json + checkpoint)")
    sp.add_argument("--out", required=True, help="folder for mechanism.json, figures and summary.md")
    sp.add_argument("--pairs", type=int, default=1000, help="counterfactual pairs")
    sp.add_argument("--seed", type=int, default=0, help="seed of the pairs and samples")
    sp.add_argument("--n-range", default="", help="N of the pairs and samples as LO,HI (default: the run's ID range)")
    sp.add_argument("--point", default="resid_post", choices=["resid_post", "resid_pre", "attn_out", "mlp_out"],
                    help="hook patched in every block")
    sp.add_argument("--position", default="query", choices=["query", "que", "all"],
                    help="where the counterfactual is patched in: the query token, the [QUE] token, or every token")
    sp.add_argument("--probe-samples", type=int, default=4000, help="examples for the linear probes")
    sp.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    sp.set_defaults(func=cmd_analyze)

    from .interp.pretrained import register as register_compare_pretrained
    register_compare_pretrained(sub)
    return p


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "count", 1) < 1 or getattr(args, "samples", 0) < 0:
        raise UserError("--count and --samples must be positive")
    args.func(args)
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
