"""`binding`: the binding study's command line.

    binding sample   --preset cpu --n 4 --count 3          print examples in words
    binding train    --preset cpu --out runs/t0 --seed 0   train (resumes if interrupted)
    binding evaluate --run runs/t0 --out eval.json         per-N accuracy on fresh samples
    binding config   --preset cpu                          list every config field, its value and meaning
    binding render-samples --out samples.png               a PNG grid of rendered image contexts
    binding pretrain-encoder --kind cnn --out runs/enc     pretrain a small frozen visual encoder
    binding curriculum --regime image-text --out runs/cur  train one regime (stages shared under --out)
    binding reproduce --preset cpu --out runs/repro        every regime, table.json, report.md, figure
    binding combine --out runs/all runs/repro runs/gpu     one table over the seeds of several reproduce folders
    binding sweep recipes.toml --out runs/sweep            recipes x seeds as `binding train` runs, on Ray
    binding explore --run runs/t0 --out runs/t0/explore    one page: how the model binds, example by example
    binding analyze --run runs/t0 --out runs/t0/mechanism  interventions, knockout, probes of one model
    binding compare-pretrained --llm DIR --vlm DIR --out D  the same intervention on Hugging Face LLM vs VLM

Any config field can be overridden after the flags: `binding train --preset cpu --out runs/x
model.pos_encoding=nope train.lr=1e-3 task.ood_n=9,16`, `binding curriculum ...
curriculum.stage_lr=5e-4`, `binding analyze ... analyze.knockout_samples=500`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import config as cfglib
from lab.cliargs import Parser, in_dir, in_file, int_range, integer, number, out_dir, out_file, torch_device
from lab.device import set_threads
from lab.errors import UserError, run_cli
from lab.io import atomic_write_json

from . import sweep
from .sweep_file import load_sweep
from .config import PRESETS, BindingConfig, make_config

OVERRIDE_HELP = "config overrides as section.field=value (see `binding config`)"
REGIMES_HELP = "text-only | noise-text | image-text | noise-image-text | mixed-from-start | text-only-equal-compute"


def _config(args: argparse.Namespace) -> BindingConfig:
    return make_config(args.preset, args.overrides)


def _only_section(overrides: list[str], section: str, command: str) -> None:
    """Commands on a trained run take overrides of one section only (the run fixes the rest)."""
    for item in overrides:
        if not item.startswith(section + "."):
            raise UserError(f"{item!r}: `binding {command}` takes {section}.* overrides only "
                            f"(the run's own config fixes the rest)")


def cmd_config(args: argparse.Namespace) -> None:
    for key, value, doc in cfglib.describe(_config(args)):
        print(f"{key:40} {value:14} {doc}")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from .task import Vocab, describe, sample_batch

    cfg = _config(args)
    n_range = (args.n, args.n) if args.n is not None else cfg.task.train_n
    if args.n is not None and args.n > min(cfg.task.n_colors, cfg.task.n_shapes, cfg.task.n_items):
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

    results = train(_config(args), args.out, args.seed, quiet=args.quiet)
    print(format_table(results))
    print(f"steps {results['steps']}  threshold reached at {results['threshold_step']}  "
          f"train time {results['train_seconds']} s  -> {Path(args.out) / 'results.json'}")
    if results["mistakes"]:
        print("first mistakes:\n" + "\n".join(results["mistakes"][:3]))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate, format_table, token_predictor
    from .run import load_trained

    _only_section(args.overrides, "task", "evaluate")
    model, cfg, seed = load_trained(args.run)
    task = cfglib.apply_overrides(cfg, args.overrides).task
    samples = args.samples if args.samples is not None else cfg.train.final_samples_per_n
    results = evaluate(token_predictor(model), task, samples, args.seed if args.seed is not None else seed,
                       first_hop=args.first_hop, progress=True)
    print(format_table(results))
    print("first mistakes:\n" + "\n".join(results["mistakes"][:args.mistakes]))
    if args.out:
        from .plots import plot_accuracy_by_n

        atomic_write_json(args.out, {**results, "run": str(args.run)})
        png = plot_accuracy_by_n({Path(args.run).name: results}, Path(args.out).with_suffix(".png"))
        print(f"-> {args.out}, {png}")


def _render_config(overrides: list[str]):
    from .images.render import RenderConfig

    return cfglib.apply_overrides(RenderConfig(), overrides)


def cmd_render_samples(args: argparse.Namespace) -> None:
    from .images.render import save_sample_grid

    rcfg = _render_config(args.overrides)
    limit = min(rcfg.n_colors, rcfg.n_shapes, rcfg.max_objects)
    if args.n_min > args.n_max:
        raise UserError(f"--n-min {args.n_min} is larger than --n-max {args.n_max}")
    if args.n_max > limit:
        raise UserError(f"--n-max {args.n_max}: at most {limit} objects fit an image (the fewest of the "
                        f"renderer's colours, shapes and grid cells)")
    path = save_sample_grid(args.out, rcfg, n_images=args.count,
                            n_min=args.n_min, n_max=args.n_max, seed=args.seed)
    print(f"-> {path}")


def cmd_pretrain_encoder(args: argparse.Namespace) -> None:
    from .images.pretrain import pretrain_encoder

    meta = pretrain_encoder(args.kind, _render_config(args.overrides), args.steps, args.out, seed=args.seed)
    print(json.dumps(meta.get("eval", {}), indent=2))
    print(f"-> {Path(args.out) / 'encoder.safetensors'}")


def cmd_curriculum(args: argparse.Namespace) -> None:
    from .curriculum import ensure_encoder, regimes, run_regime

    cfg = _config(args).check_curriculum()
    if args.encoder_only:
        cur = ensure_encoder(cfg, Path(args.out) / "encoder", quiet=args.quiet).curriculum
        print(f"encoder: {cur.encoder.path or cur.encoder.kind}")
        return
    if not args.regime:
        raise UserError(f"--regime is required; choose one of {list(regimes(cfg.curriculum))}")
    res = run_regime(args.regime, cfg, args.out, args.seed, quiet=args.quiet, follow=args.follow)
    for st in res["stages"]:
        print(f"{st['stage']:>10}: {st['steps']:5d} steps (threshold at {st['threshold_step']}), "
              f"text OOD after it {st['text_ood_accuracy']:.4f}  [{st['run_dir']}]")
    print(f"{args.regime}: text ID {res['id_accuracy']:.4f}  text OOD {res['ood_accuracy']:.4f}  "
          f"total steps {res['total_steps']}")
    if args.analyze:
        from .interp.compare import analyze_regime
        from .interp.interventions import ratio_text

        mech = analyze_regime(Path(args.out) / f"seed{args.seed}" / args.regime, cfg.analyze, quiet=args.quiet)
        ratio = ratio_text(mech["symbolic_positional_ratio"], mech["proportions_by_layer"][mech["peak_layer"]],
                           mech["n_pairs"])
        print(f"mechanism: peak layer {mech['peak_layer']}, symbolic/positional {ratio}")


def cmd_combine(args: argparse.Namespace) -> None:
    from .report import combine

    for e in combine(args.folders, args.out):
        print(f"{e['regime']:>24}: text OOD {e['ood_accuracy_mean']:.4f} +- {e['ood_accuracy_sd']:.4f}  "
              f"seeds {','.join(map(str, e['seeds']))}")
    print(f"-> {Path(args.out) / 'table.json'}, {Path(args.out) / 'report.md'}")


def _paper(percent: float | None) -> str:
    """The paper's figure (a percentage in the spec) on our scale, a fraction."""
    return "-" if percent is None else f"{percent / 100:.3f}"


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .reproduce import reproduce

    cfg = _config(args).check_curriculum()  # bad overrides fail here, not in every job
    table = reproduce(args.preset, args.out, args.seeds, args.overrides, args.workers, quiet=args.quiet,
                      analysis=not args.no_analysis, first_seed=args.first_seed, analyze=cfg.analyze,
                      ray=args.ray, address=args.address, gpus_per_task=args.gpus_per_task)
    for e in table:
        print(f"{e['regime']:>24}: text OOD {e['ood_accuracy_mean']:.4f} +- {e['ood_accuracy_sd']:.4f}  "
              f"ID {e['id_accuracy_mean']:.4f}  (paper's OOD {_paper(e['paper_ood_accuracy'])})")
    print(f"-> {Path(args.out) / 'table.json'}, {Path(args.out) / 'report.md'}")


def _analyze_config(args: argparse.Namespace):
    """The analyze section: its defaults, then analyze.* overrides, then the flags given."""
    import dataclasses

    _only_section(args.overrides, "analyze", "analyze")
    acfg = cfglib.apply_overrides(BindingConfig(), args.overrides).analyze
    flags = {"n_pairs": args.pairs, "seed": args.seed, "point": args.point, "position": args.position,
             "probe_samples": args.probe_samples, "n_range": args.n_range}
    return dataclasses.replace(acfg, **{k: v for k, v in flags.items() if v is not None})


def cmd_analyze(args: argparse.Namespace) -> None:
    from .interp.analyze import analyze
    from .interp.interventions import ratio_text

    acfg = _analyze_config(args)
    set_threads(args.threads)
    res = analyze(args.run, args.out, acfg, progress=True)
    peak = res["peak_layer"]
    p = res["proportions_by_layer"][peak]
    ratio = ratio_text(res["symbolic_positional_ratio"], p, res["n_pairs"])
    print(f"{res['n_pairs']}/{res['n_pairs_generated']} pairs used; peak layer {peak}: positional {p['positional']:.3f} "
          f"symbolic {p['symbolic']:.3f} reflexive {p['reflexive']:.3f}; symbolic/positional {ratio}")
    print(f"-> {Path(args.out) / 'mechanism.json'}, {Path(args.out) / 'summary.md'}")


def cmd_compare_pretrained(args: argparse.Namespace) -> None:
    from .interp.pretrained import compare_pretrained, models_of

    r = compare_pretrained(args.llm, args.vlm, args.out, n_pairs=args.pairs, seed=args.seed,
                           n_range=args.n_range, n_words=args.words,
                           batch_size=args.batch_size, only_correct=not args.all_pairs, device=args.device,
                           dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    for name, m in models_of(r):
        print(f"{name}: {m['model_path']}: {m['n_pairs']}/{m['n_pairs_generated']} pairs used, "
              f"baseline accuracy {m['baseline_accuracy']}, peak layer {m['peak_layer']}, "
              f"symbolic/positional {m['symbolic_positional_ratio']}")
    print(f"wrote {Path(args.out) / 'pretrained.json'}, pretrained.md, pretrained.png")


# ---------------------------------------------------------------------------------------------
# The parser: one function per group of subcommands


def _with_preset(sp: argparse.ArgumentParser, helptext: str = OVERRIDE_HELP) -> None:
    sp.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                    help="named config: smoke (seconds), cpu (minutes on 2 cores), paper (GPU)")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=helptext)


def _add_run_commands(sub) -> None:
    sp = sub.add_parser("config", help="list every config field of a preset, its value and meaning")
    _with_preset(sp)
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("sample", help="print examples of the task in words")
    _with_preset(sp)
    sp.add_argument("--n", type=integer(1), default=None, help="objects per example (default: the training range)")
    sp.add_argument("--count", type=integer(1), default=3, help="how many examples")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("--tokens", action="store_true", help="also print the raw token sequence")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("train", help="train a model (resumes an interrupted run in --out)")
    _with_preset(sp)
    sp.add_argument("--out", required=True, type=out_dir, help="run directory")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="accuracy per N on fresh samples for a trained run")
    sp.add_argument("--run", required=True, type=in_dir, help="run directory written by `binding train` (or a stage folder)")
    sp.add_argument("--out", type=out_file, help="write results JSON here (and a PNG beside it)")
    sp.add_argument("--samples", type=integer(1), default=None, help="samples per N (default: the run's final_samples_per_n)")
    sp.add_argument("--seed", type=integer(0), default=None, help="evaluation seed (default: the run's seed)")
    sp.add_argument("--mistakes", type=integer(0), default=3, help="mistakes to print")
    sp.add_argument("--first-hop", action="store_true",
                    help="ask first-hop questions (colour -> shape) instead of the two-hop queries: a "
                         "diagnostic for runs trained with train.first_hop_fraction")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="task overrides for evaluation, e.g. task.ood_n=9,16")
    sp.set_defaults(func=cmd_evaluate)


def _add_image_commands(sub) -> None:
    render_help = "render overrides as field=value, e.g. canvas_px=64 cell_px=16 n_shapes=32"
    sp = sub.add_parser("render-samples", help="save a PNG grid of rendered image contexts")
    sp.add_argument("--out", required=True, type=out_file, help="PNG path")
    sp.add_argument("--count", type=integer(1), default=16, help="images in the grid")
    sp.add_argument("--n-min", type=integer(1), default=2, help="fewest objects per image")
    sp.add_argument("--n-max", type=integer(1), default=8, help="most objects per image")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=render_help)
    sp.set_defaults(func=cmd_render_samples)

    sp = sub.add_parser("pretrain-encoder", help="pretrain a small visual encoder on rendered shapes")
    sp.add_argument("--kind", choices=["cnn", "vit"], default="cnn")
    sp.add_argument("--out", required=True, type=out_dir, help="folder for encoder.safetensors + encoder.json")
    sp.add_argument("--steps", type=integer(1), default=600, help="training steps (cnn: 600, vit: 400 suffice)")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=render_help)
    sp.set_defaults(func=cmd_pretrain_encoder)


def _add_curriculum_commands(sub) -> None:
    sp = sub.add_parser("curriculum", help="train one regime (text-only, noise-text, image-text, ...)")
    _with_preset(sp)
    sp.add_argument("--regime", help=REGIMES_HELP)
    sp.add_argument("--out", required=True, type=out_dir, help="root folder; stages nest under OUT/seedS/ and are shared")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--encoder-only", action="store_true", help="only pretrain the embedded encoder into OUT/encoder")
    sp.add_argument("--follow", action="store_true",
                    help="text-only-equal-compute only: start while the other regimes of the seed still train "
                         "(in other processes): train up to their progress, wait there, and stop at the longest "
                         "one's total once all have finished")
    sp.add_argument("--analyze", action="store_true",
                    help="then analyse the regime's final model (`binding analyze`) into OUT/seedS/REGIME/mechanism")
    sp.set_defaults(func=cmd_curriculum)

    sp = sub.add_parser("reproduce", help="train every regime, write table.json, report.md and a figure")
    _with_preset(sp)
    sp.add_argument("--out", required=True, type=out_dir)
    sp.add_argument("--seeds", type=integer(1), default=None, help="seeds per regime (default: the preset's; cpu 1)")
    sp.add_argument("--first-seed", type=integer(0), default=0,
                    help="seeds are FIRST..FIRST+SEEDS-1 (add seeds to a study in another run or machine)")
    sp.add_argument("--workers", type=integer(1), default=2, help="jobs in parallel (one thread each)")
    sp.add_argument("--no-analysis", action="store_true", help="skip the mechanism analysis of every regime")
    sp.add_argument("--ray", action="store_true",
                    help="run the jobs as Ray tasks on a local loopback cluster of --workers CPUs")
    sp.add_argument("--address", default=None,
                    help="run the jobs as Ray tasks on this existing cluster (its machines must share --out)")
    sp.add_argument("--gpus-per-task", type=number(0.0), default=0.0,
                    help="with --ray/--address: share of a GPU each job asks (needed with train.device=cuda)")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_reproduce)

    sp = sub.add_parser("combine", help="one table.json and report.md over the seeds of several reproduce folders")
    sp.add_argument("--out", required=True, type=out_dir)
    sp.add_argument("folders", nargs="+", type=in_dir, metavar="FOLDER", help="`binding reproduce` output folders (distinct seeds)")
    sp.set_defaults(func=cmd_combine)


def _add_sweep_command(sub) -> None:
    sp = sub.add_parser("sweep", help="named recipes (config overrides) x seeds, each a `binding train` run, on Ray",
                        description=sweep.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("file", metavar="FILE", type=in_file, help="TOML sweep file (see above; e.g. docs/sweeps/aid-free.toml)")
    sp.add_argument("--out", required=True, type=out_dir, help="folder: OUT/RECIPE/seedS per run, summary.md, id_accuracy.png")
    sp.add_argument("--workers", type=integer(0), default=0, help="CPUs of the local Ray cluster (0 = this machine's cores)")
    sp.add_argument("--address", default=None, help="an existing Ray cluster (host:port) instead of a local one")
    sp.add_argument("--gpus-per-task", type=number(0.0), default=0.0,
                    help="share of a GPU each run asks of Ray (needed with train.device=cuda; 0.25 = four runs a GPU)")
    sp.add_argument("--report-only", action="store_true", help="only write the summary of what the runs have reached")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep_report import write_summary

    spec = load_sweep(args.file)
    path = write_summary(spec, args.out) if args.report_only and Path(args.out).is_dir() else None
    if args.report_only and path is None:
        raise UserError(f"--report-only: {args.out} is not a sweep folder yet")
    path = path or sweep.run_sweep(spec, args.out, args.workers, args.address, Path(args.file), args.quiet,
                                   args.gpus_per_task)
    print(f"-> {path}")


def _add_analysis_commands(sub) -> None:
    from .config import PATCH_POINTS, PATCH_POSITIONS

    sp = sub.add_parser("analyze", help="the mechanism of a trained model: interventions, knockout, probes")
    sp.add_argument("--run", required=True, type=in_dir, help="a run or curriculum stage directory (config.json + checkpoint)")
    sp.add_argument("--out", required=True, type=out_dir, help="folder for mechanism.json, figures and summary.md")
    sp.add_argument("--pairs", type=integer(1), default=None, help="counterfactual pairs (analyze.n_pairs, default 1000)")
    sp.add_argument("--seed", type=integer(0), default=None, help="seed of the pairs and samples (analyze.seed, default 0)")
    sp.add_argument("--n-range", type=int_range(1), default=None,
                    help="N of the pairs and samples as LO,HI (default: the run's ID range)")
    sp.add_argument("--point", default=None, choices=PATCH_POINTS, help="hook patched in every block (resid_post)")
    sp.add_argument("--position", default=None, choices=PATCH_POSITIONS,
                    help="where the counterfactual is patched in: the query token (default), the [QUE] token, "
                         "or every token")
    sp.add_argument("--probe-samples", type=integer(1), default=None, help="examples for the linear probes (4000)")
    sp.add_argument("--threads", type=integer(0), default=1, help="torch threads (0 = torch default)")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="analyze.* overrides, e.g. analyze.knockout_samples=500 (see `binding config`)")
    sp.set_defaults(func=cmd_analyze)

    from .interp.pretrained import DTYPES

    sp = sub.add_parser("compare-pretrained", help="interchange intervention on a pretrained LLM (and VLM)")
    sp.add_argument("--llm", required=True, type=in_dir, help="local Hugging Face causal LM folder")
    sp.add_argument("--vlm", type=in_dir, help="local vision-language model folder (its language backbone is used)")
    sp.add_argument("--out", required=True, type=out_dir, help="folder for pretrained.json, .md and .png")
    sp.add_argument("--pairs", type=integer(1), default=64, help="counterfactual pairs to generate")
    sp.add_argument("--seed", type=integer(0), default=0)
    sp.add_argument("--n-range", type=int_range(3), default="3,6", help="objects per example, LO,HI (LO >= 3)")
    sp.add_argument("--words", type=integer(1, 32), default=20, help="colours, shapes and items to draw from (at most 32)")
    sp.add_argument("--batch-size", type=integer(1), default=8, help="pairs per forward pass")
    sp.add_argument("--device", type=torch_device, default="cpu", help="torch device (cpu, cuda, ...)")
    sp.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    sp.add_argument("--all-pairs", action="store_true",
                    help="use every pair, not only those the model answers correctly (for debugging)")
    sp.add_argument("--trust-remote-code", action="store_true",
                    help="run model code shipped in the folder (e.g. InternLM3); off by default")
    sp.set_defaults(func=cmd_compare_pretrained)


def _add_explore_command(sub) -> None:
    def cmd_explore(args: argparse.Namespace) -> None:
        from .explore.build import explore

        set_threads(args.threads)
        page = explore(args.run, args.out, args.run2, args.analysis, args.analysis2, args.per_n, args.pool, args.seed)
        print(f"{page['examples']} examples, {page['bytes'] / 1e6:.2f} MB -> {page['path']}")

    sp = sub.add_parser("explore", help="one HTML page to look at a model example by example (attention, patches, probes)")
    sp.add_argument("--run", required=True, type=in_dir, help="a run or curriculum stage directory (config.json + checkpoint)")
    sp.add_argument("--run2", default=None, type=in_dir, help="a second run shown beside the first on the same examples")
    sp.add_argument("--out", required=True, type=out_dir, help="folder for index.html (self-contained: open it from the file system)")
    sp.add_argument("--analysis", default=None, type=in_dir, help="`binding analyze` folder of --run (default RUN/mechanism), for the probes")
    sp.add_argument("--analysis2", default=None, type=in_dir, help="the same for --run2 (default RUN2/mechanism)")
    sp.add_argument("--per-n", type=integer(1), default=4, help="examples shown per N (plus up to 2 mistakes)")
    sp.add_argument("--pool", type=integer(1), default=64, help="held-out examples per N drawn to find mistakes and slot accuracy")
    sp.add_argument("--seed", type=integer(0), default=0, help="seed of the counterfactual pairs")
    sp.add_argument("--threads", type=integer(0), default=1, help="torch threads (0 = torch default)")
    sp.set_defaults(func=cmd_explore)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="binding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_image_commands(sub)
    _add_curriculum_commands(sub)
    _add_sweep_command(sub)
    _add_analysis_commands(sub)
    _add_explore_command(sub)
    return p


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    args.func(args)
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli(_main, argv))


if __name__ == "__main__":
    main()
