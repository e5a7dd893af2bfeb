"""`resilinet` command line: train, evaluate, reproduce, ablate, config; serve, chaos (runtime).

Every subcommand takes a preset (named config) and any number of `section.field=value`
overrides (`serve` and `chaos`: `runtime.field=value`); `resilinet config --preset cpu` lists every
field with its value and meaning.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from lab.cliargs import Parser, in_dir, integer, number, out_dir, out_file
from lab.config import apply_overrides, describe
from lab.errors import UserError, run_cli
from lab.io import atomic_write_json

from .config import PRESETS, TRAINED_SECTIONS, Config, RuntimeConfig, make_config
from .studies import ABLATION_GROUPS, ablation_specs, reproduce_specs

EXAMPLES = {
    "train": """examples:
  resilinet train --preset cpu --out runs/mlp-resilinet --seed 0
  resilinet train --preset cpu --out runs/cnn --seed 1 model.arch=mobilenet model.method=deepfogguard
  resilinet train --preset paper --out runs/health data.root=/data/MHEALTHDATASET
Running the same command again resumes an interrupted run from its checkpoint.""",
    "evaluate": """examples:
  resilinet evaluate --run runs/mlp-resilinet --out runs/mlp-resilinet/evaluation.json
  resilinet evaluate --run runs/mlp-resilinet --out eval.json --mc-draws 20   # + Monte-Carlo""",
    "reproduce": """examples:
  resilinet reproduce --preset cpu --out runs/reproduce            # ~2 min on 2 cores (128 s measured)
  resilinet reproduce --preset cpu --out runs/r --seeds 0 train.epochs=2   # a quick look
  resilinet reproduce --preset paper --out runs/paper --cnn mobilenet data.root=/data/cifar   # needs both datasets
Writes OUT/report.md (tables, checks, figures), OUT/summary.json and OUT/runs/<run>/.
Seeds by default: cpu 0,1,2; paper the official number of runs (Health 10, CIFAR 1).""",
    "ablate": """examples:
  resilinet ablate --preset cpu --out runs/ablate                   # MLP chain and ResNet-18
  resilinet ablate --preset cpu --out runs/ablate --only failout,skips --seeds 0 --cnn none
Weight schemes 2-3 and variable failout train one model per reliability setting (official protocol).
Seeds by default: cpu 0,1,2; paper the official number of runs (Health 10, CIFAR 1).""",
    "serve": """examples:
  resilinet serve --run runs/mlp-resilinet --host 127.0.0.1 --port 8100
  resilinet serve --run runs/mlp-resilinet runtime.batch_examples=0 runtime.hung_restart_s=5
  curl -s -X POST 127.0.0.1:8100/predict -d '{"inputs": [[0.0, ...784 numbers...]]}'
  curl -s 127.0.0.1:8100/status""",
    "chaos": """examples:
  resilinet chaos --run runs/mlp-resilinet --duration 120 --kill-every 10 --hang-every 15
  resilinet chaos --run runs/mlp-resilinet --duration 20 --kill-every 5 --hang-every 0 --out /tmp/chaos
  resilinet chaos --run runs/mlp-resilinet --duration 20 runtime.hop_deadline_s=0.25""",
}




def _config_help(sections: tuple[str, ...] = TRAINED_SECTIONS) -> str:
    rows = [r for r in describe(Config()) if r[0].split(".")[0] in sections]
    width = max(len(k) for k, _, _ in rows)
    body = "\n".join(f"  {k:<{width}}  {h}" for k, _, h in rows)
    return ("config fields (override as section.field=value; `resilinet config --preset cpu` shows "
            "the values):\n" + body)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help=f"named config: {', '.join(sorted(PRESETS))} (default cpu)")
    p.add_argument("overrides", nargs="*", metavar="section.field=value",
                   help="config overrides, e.g. model.method=resilinet train.epochs=3")


def _seeds(text: str) -> list[int]:
    """--seeds: comma-separated integers >= 0, e.g. 0,1,2."""
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return seeds


# -- the parser ------------------------------------------------------------------------------------
FMT = argparse.RawDescriptionHelpFormatter


def _command(sub, name: str, helptext: str, description: str, epilog: str, run: bool = False) -> argparse.ArgumentParser:
    """One subcommand's parser; with `run`, its required --run (a `resilinet train` directory)."""
    p = sub.add_parser(name, help=helptext, description=description, epilog=epilog, formatter_class=FMT)
    if run:
        p.add_argument("--run", required=True, type=in_dir, help="a `resilinet train` run directory")
    return p


def _add_runtime(p: argparse.ArgumentParser, port: str) -> None:
    """The flags for the most used runtime.* fields (a flag given wins over an override)."""
    p.add_argument("--host", default=None, help="HTTP bind address (runtime.host, default 127.0.0.1)")
    p.add_argument("--port", type=integer(0, 65535), default=None, help=f"HTTP port (runtime.port; {port})")
    p.add_argument("--hop-deadline-s", type=number(above=0), default=None,
                   help="a producer silent this long after its call is dead for the request "
                        "(runtime.hop_deadline_s, default 0.5)")
    p.add_argument("--relay-input", action="store_true",
                   help="send the raw input to the edge through the IoT process, the physical path when the "
                        "service does not run beside the data source (runtime.input_direct=false; default: the "
                        "router sends it itself, one transfer less; MLP only, where the IoT has no layers)")
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster (e.g. 127.0.0.1:6379) whose machines carry the role "
                        "resources iot/edge/fog/cloud (runtime.address); default: start a local loopback cluster")
    p.add_argument("overrides", nargs="*", metavar="runtime.field=value",
                   help="runtime overrides, e.g. runtime.batch_examples=0 (see `resilinet config`)")


def _add_train_and_evaluate(sub) -> None:
    p = _command(sub, "train", "train one model into a run directory",
                 "Train one partitioned model; select the epoch with the best clean validation accuracy; "
                 "evaluate it exactly under every failure pattern.", EXAMPLES["train"] + "\n\n" + _config_help())
    p.add_argument("--out", required=True, type=out_dir, help="run directory (created; an interrupted run resumes)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed for data split, init, order, failout (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    _add_common(p)

    p = _command(sub, "evaluate", "exact (and optional Monte-Carlo) accuracy under failures",
                 "Evaluate a trained run over all 2^n alive/dead patterns of its failure-prone nodes and "
                 "every reliability setting; write JSON.", EXAMPLES["evaluate"], run=True)
    p.add_argument("--out", required=True, type=out_file, help="JSON file to write")
    p.add_argument("--split", choices=("test", "val"), default="test", help="which split (default test)")
    p.add_argument("--mc-draws", type=integer(0), default=0, help="also estimate by Monte-Carlo with this many "
                   "passes over the split, one random pattern per sample (default 0: off)")
    p.add_argument("--mc-seed", type=integer(0), default=0, help="Monte-Carlo seed (default 0)")


def _add_studies(sub) -> None:
    for name, helptext, desc in (
            ("reproduce", "train all four methods on MLP + CNN over seeds; write report.md",
             "Train vanilla, deepFogGuard, ResiliNet and ResiliNet+ on the MLP chain and one CNN over "
             "several seeds, evaluate each exactly, and write OUT/report.md with the per-pattern table, "
             "expected accuracy per setting (mean +- sd), the analytic brackets and figures."),
            ("ablate", "weight schemes, failout rates, skip subsets, partition 2; write report.md",
             "The paper's ablations on the MLP chain (Health topology) and one CNN: hyperconnection weight "
             "schemes 1-4 (2-3: one model per reliability setting), failout survival rates (0.95, 0.9, 0.7, "
             "0.5, variable: one model per setting), every subset of skip hyperconnections, and partition 2 "
             "for all methods.")):
        p = _command(sub, name, helptext, desc, EXAMPLES[name] + "\n\n" + _config_help())
        p.add_argument("--out", required=True, type=out_dir, help="output directory (re-running continues it)")
        p.add_argument("--seeds", type=_seeds, default=None,
                       help="comma-separated seeds (default: cpu and smoke 0,1,2; paper Health 0..9, CNN 0)")
        p.add_argument("--jobs", type=integer(1), default=2, help="runs trained in parallel, one thread each (default 2)")
        cnns = ("mobilenet", "resnet18") if name == "reproduce" else ("mobilenet", "resnet18", "none")
        p.add_argument("--cnn", choices=cnns, default="resnet18",
                       help="the CNN studied beside the MLP chain (default resnet18)")
        if name == "ablate":
            p.add_argument("--only", default=",".join(ABLATION_GROUPS),
                           help=f"comma-separated subset of: {', '.join(ABLATION_GROUPS)}")
        _add_common(p)


def _add_runtime_commands(sub) -> None:
    runtime_help = _config_help(("runtime",))
    p = _command(sub, "serve", "serve a trained run on Ray: one process per node, HTTP endpoint",
                 "Start a loopback Ray cluster (or join one with --address), one node process per physical "
                 "node holding its partition of the run, and an HTTP endpoint: GET / (a live page), POST /predict, "
                 "GET /status, GET /metrics, GET /openapi.json. Crashed or hung nodes are routed around and "
                 "restarted; a merely slow node is waited for (adaptive per-node deadlines). See "
                 "docs/resilinet-runtime.md.", EXAMPLES["serve"] + "\n\n" + runtime_help, run=True)
    _add_runtime(p, "serve default 8100")

    p = _command(sub, "chaos", "load the service while killing and hanging node processes; report",
                 "Serve a run, drive steady load with test examples, SIGKILL a node process every "
                 "--kill-every s and SIGSTOP another for --hang-s every --hang-every s; write OUT/chaos.json "
                 "and OUT/chaos.md (requests sent, answered, failed, lost; alive patterns seen; empirical vs "
                 "exact accuracy) with OUT/timeline.png (kills and hangs against latency and answers). The live "
                 "page of `serve` is at the URL printed at the start.", EXAMPLES["chaos"] + "\n\n" + runtime_help, run=True)
    p.add_argument("--out", default=None, type=out_dir, help="report directory (default RUN/chaos)")
    p.add_argument("--duration", type=number(above=0), default=120.0, help="seconds of load (default 120)")
    p.add_argument("--kill-every", type=number(0), default=10.0, help="seconds between SIGKILLs (0: none; default 10)")
    p.add_argument("--hang-every", type=number(0), default=15.0, help="seconds between hangs (0: none; default 15)")
    p.add_argument("--hang-s", type=number(above=0), default=3.0, help="how long a hung node stays stopped (default 3)")
    p.add_argument("--clients", type=integer(1), default=4, help="concurrent clients (default 4)")
    p.add_argument("--batch", type=integer(1), default=16, help="examples per request (default 16)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed for examples and victims (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_runtime(p, "chaos default 0 = any free port")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="resilinet", formatter_class=FMT,
        description="ResiliNet (arXiv 2002.07386): DNNs partitioned over IoT -> edge -> fog -> cloud that "
                    "keep working when nodes fail (skip hyperconnections + failout): trained and evaluated exactly "
                    "in one process (train, evaluate, reproduce, ablate), served with one process per node on Ray "
                    "(serve, chaos).",
        epilog="Start with: resilinet reproduce --preset cpu --out runs/reproduce\n"
               "Run `resilinet <command> --help` for each command's options.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    _add_train_and_evaluate(sub)
    _add_studies(sub)
    _add_runtime_commands(sub)
    p = _command(sub, "config", "list every config field of a preset + overrides: value and meaning",
                 "Every field of the config tree (data, model, failout, train, runtime) under a preset "
                 "and overrides, its value and what it means.", _config_help(TRAINED_SECTIONS + ("runtime",)))
    _add_common(p)
    return parser


# -- the commands ----------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    cfg = make_config(args.preset, args.overrides)
    res = train(cfg, args.out, seed=args.seed, progress=not args.quiet)
    print(_summary(res))
    print(f"run written to {args.out} (results.json, metrics.jsonl, checkpoint.*)")
    return 0


def _summary(ev: dict) -> str:
    rows = [f"clean accuracy {100 * ev['clean_accuracy']:.2f}%  guess {100 * ev['guess_accuracy']:.2f}%"]
    for k, v in ev["expected_accuracy"].items():
        rows.append(f"  {k:<11} expected {100 * v:6.2f}%   P(no path) {ev['p_no_path'][k]:.6f}")
    bad = [p for p in ev["patterns"] if p["connected"]]
    worst = min(bad, key=lambda p: p["accuracy"]) if bad else None
    if worst is not None:
        dead = [n for n, a in zip(ev["nodes"], worst["alive"]) if not a] or ["none"]
        rows.append(f"  worst connected pattern: dead {', '.join(dead)} -> {100 * worst['accuracy']:.2f}%")
    return "\n".join(rows)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_splits
    from .evaluate import evaluate_model
    from .run import load_run

    cfg, model, seed = load_run(args.run)
    splits = load_splits(cfg, seed)
    t0 = time.time()
    ev = evaluate_model(model, splits, cfg.train.eval_batch_size, args.split, args.mc_draws, args.mc_seed,
                        progress=True)
    ev.update({"run": str(args.run), "method": cfg.model.method, "arch": cfg.model.arch, "seed": seed,
               "seconds": round(time.time() - t0, 3)})
    atomic_write_json(args.out, ev)
    print(_summary(ev))
    if "monte_carlo" in ev:
        for k, v in ev["monte_carlo"]["expected_accuracy"].items():
            print(f"  {k:<11} Monte-Carlo ({args.mc_draws} draws) {100 * v:6.2f}%")
    print(f"written to {args.out}")
    return 0


def _study_specs(args: argparse.Namespace, seeds: list[int], extra: tuple[str, ...]) -> list:
    """The runs of `reproduce` or `ablate --only ...`, checked before any training starts."""
    for o in extra:
        if o.split("=", 1)[0].strip() in ("model.arch", "model.method"):
            raise UserError(f"{o!r}: {args.command} sets model.arch and model.method itself")
    if args.command == "reproduce":
        specs = reproduce_specs(args.preset, seeds, args.cnn, extra)
    else:
        groups = [g.strip() for g in args.only.split(",") if g.strip()]
        for g in groups:
            if g not in ABLATION_GROUPS:
                raise UserError(f"--only: {g!r} is not one of {', '.join(ABLATION_GROUPS)}")
        archs = ["mlp"] + ([args.cnn] if args.cnn != "none" else [])
        specs = [s for arch in archs for s in ablation_specs(args.preset, seeds, extra, arch) if s.group in groups]
    for overrides in dict.fromkeys(s.overrides for s in specs):
        make_config(specs[0].preset, list(overrides))  # fail fast on a bad override, before any training
    return specs


def cmd_experiments(args: argparse.Namespace) -> int:
    from .experiments import run_all
    from .report import ablation_report, reproduce_report

    seeds = args.seeds
    extra = tuple(args.overrides)
    specs = _study_specs(args, seeds, extra)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = run_all(specs, out, args.jobs)
    wall = time.time() - t0
    header = (f"# ResiliNet {args.command} (preset `{args.preset}`)\n\n"
              f"Command: `resilinet {' '.join(sys.argv[1:]) if sys.argv[0].endswith('resilinet') else args.command}`"
              f"  \nSeeds: {seeds or 'preset default'}; runs: {len(set(s.name for s in specs))}; jobs: {args.jobs}; "
              f"wall time of this invocation: "
              f"{wall:.0f} s (finished runs are not redone).  \n"
              f"Dataset: {next(iter(results.values()))['dataset'] if results else '?'}; "
              f"overrides: {list(extra) or 'none'}.\n")
    report = (reproduce_report if args.command == "reproduce" else ablation_report)(specs, results, out, header)
    atomic_write_json(out / "summary.json", {
        "command": args.command, "preset": args.preset, "seeds": seeds, "overrides": list(extra), "wall_s": wall,
        "runs": {s.name: {"group": s.group, "label": s.label, "seed": s.seed, "arch": s.arch, "setting": s.setting,
                          "clean_accuracy": results[s.name]["clean_accuracy"],
                          "expected_accuracy": results[s.name]["expected_accuracy"],
                          "checks": results[s.name]["checks"]} for s in specs}})
    print(report)
    print(f"\nreport written to {out / 'report.md'} ({wall:.0f} s)")
    return 0


def _runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    """The runtime section: its defaults (chaos: any free port), then runtime.* overrides, then the
    flags given."""
    for item in args.overrides:
        if not item.startswith("runtime."):
            raise UserError(f"{item!r}: `resilinet {args.command}` takes runtime.* overrides only "
                            f"(the run's own config fixes the rest)")
    base = Config(runtime=RuntimeConfig(port=0) if args.command == "chaos" else RuntimeConfig())
    cfg = apply_overrides(base, args.overrides).runtime
    flags = {"host": args.host, "port": args.port, "hop_deadline_s": args.hop_deadline_s, "address": args.address,
             "input_direct": False if args.relay_input else None}
    return dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})


def _stop_on_signals() -> None:
    """SIGTERM (and SIGINT, even where a shell started the command with it ignored) end `serve` /
    `chaos` the way Ctrl-C does, a KeyboardInterrupt in the main thread, so every path out of them
    stops the node processes and the Ray cluster they started."""
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _runtime_config(args)
    from .runtime.service import start_service, stop_service

    _stop_on_signals()
    try:
        service = start_service(args.run, cfg)   # stops what it started if interrupted
    except KeyboardInterrupt:
        print("interrupted while starting; nothing is left running", file=sys.stderr)
        return 130
    try:
        host, port = service.address
        print(f"serving {args.run} ({service.info['method']}) on http://{host}:{port}  "
              f"GET / (live page)  POST /predict  GET /status  GET /metrics  (Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping: node processes and the Ray cluster", file=sys.stderr, flush=True)
    finally:
        stop_service(service)
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from .runtime.chaos import ChaosPlan, run_chaos

    cfg = _runtime_config(args)
    plan = ChaosPlan(args.duration, args.kill_every, args.hang_every, args.hang_s, args.clients, args.batch,
                     args.seed)
    out = Path(args.out) if args.out else Path(args.run) / "chaos"
    _stop_on_signals()
    try:
        report = run_chaos(args.run, out, plan, cfg, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted: no report written; the service and its node processes were stopped", file=sys.stderr)
        return 130
    print(report["markdown"])
    print(f"written to {out / 'chaos.json'}, {out / 'chaos.md'} and {out / 'timeline.png'}")
    return 0 if report["verdict"]["ok"] else 1


def cmd_config(args: argparse.Namespace) -> int:
    for key, value, doc in describe(make_config(args.preset, args.overrides)):
        print(f"{key:26} {value:20} {doc}")
    return 0


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"train": cmd_train, "evaluate": cmd_evaluate, "reproduce": cmd_experiments,
            "ablate": cmd_experiments, "config": cmd_config, "serve": cmd_serve,
            "chaos": cmd_chaos}[args.command](args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
