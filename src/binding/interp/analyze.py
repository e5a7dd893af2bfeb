"""`binding analyze`: the mechanism of one trained model (spec §5), as JSON, figures and a summary.

    binding analyze --run runs/official/text-only-s0 --out runs/official/text-only-s0/mechanism

writes OUT/mechanism.json (interchange interventions per layer, peak layer, symbolic/positional
ratio, attention knockout, linear probes), OUT/outcomes.png, OUT/knockout.png, OUT/probes.png and
OUT/summary.md. Works on any run or curriculum stage directory with a config.json and checkpoint
(image-trained models are analysed on text inputs: the question is what their text path does).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from lab import config as cfglib
from lab.errors import UserError
from lab.io import atomic_write_bytes, atomic_write_json
from lab.report import md_table
from lab.rundir import git_commit

from ..config import AnalyzeConfig, BindingConfig
from ..run import CHECKPOINT, is_trained, load_trained
from ..task import Batch, TaskConfig, sample_batch
from .counterfactual import OUTCOMES, make_pairs
from .interventions import peak_and_ratio, ratio_text, sweep
from .knockout import knockout
from .plots import plot_knockout, plot_outcomes, plot_probes
from .probes import probes


def analyze(run_dir: str | Path, out: str | Path, acfg: AnalyzeConfig | None = None, progress: bool = False) -> dict:
    """progress: a bar over the three analyses (interventions, knockout, probes)."""
    run_dir, out = Path(run_dir), Path(out)
    acfg = acfg or AnalyzeConfig()
    if not is_trained(run_dir):
        raise UserError(f"{run_dir} is not a trained run (needs config.json and {CHECKPOINT}.safetensors/.json)")
    model, cfg, run_seed = load_trained(run_dir)
    n_range = analysis_n_range(cfg, acfg)

    bar = tqdm(total=3, desc="analyze", unit="analysis", disable=not progress, dynamic_ncols=True)
    bar.set_postfix_str(f"interchange interventions, {acfg.n_pairs} pairs")
    pairs = make_pairs(cfg.task, acfg.n_pairs, acfg.seed, n_range)
    points = [f"blocks.{l}.hook_{acfg.point}" for l in range(cfg.model.n_layers)]
    sw = sweep(model, pairs, points, acfg.position)
    props = sw.proportions()
    peak, ratio = peak_and_ratio(props)
    samples = analysis_samples(cfg.task, acfg, n_range)
    bar.update(1)
    bar.set_postfix_str("attention knockout")
    knock = knockout(model, samples["knockout"])
    bar.update(1)
    bar.set_postfix_str("linear probes")
    pr = probes(model, samples["probes"], acfg.seed)
    bar.update(1)
    bar.close()

    result = {
        "run": str(run_dir), "run_seed": run_seed, "git_commit": git_commit(), "analyze": cfglib.to_dict(acfg),
        "n_range": list(n_range), "layers": list(range(cfg.model.n_layers)), "points": points,
        "proportions_by_layer": props, "peak_layer": peak, "symbolic_positional_ratio": ratio,
        "ratio_by_layer": [(p["symbolic"] / p["positional"]) if p["positional"] > 0 else None for p in props],
        "n_pairs": int(sw.used.sum()), "n_pairs_generated": len(pairs), "baseline_accuracy": sw.baseline_accuracy,
        "forward_passes": sw.forward_passes, "knockout": knock, "probes": pr,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "mechanism.json", result)
    plot_outcomes(props, out / "outcomes.png", f"{run_dir.name}: patching {acfg.point} at the {acfg.position}")
    plot_knockout(knock, out / "knockout.png")
    plot_probes(pr, out / "probes.png")
    atomic_write_bytes(out / "summary.md", summary(result).encode())
    return result


def analysis_n_range(cfg: BindingConfig, acfg: AnalyzeConfig) -> tuple[int, int]:
    """N of the pairs and samples: analyze.n_range, or the run's ID range."""
    n_range = tuple(acfg.n_range) if acfg.n_range != (0, 0) else tuple(cfg.task.id_n)
    if n_range[1] > cfg.task.max_n:
        raise UserError(f"analyze.n_range {n_range} goes past the model's longest N ({cfg.task.max_n})")
    return n_range


def analysis_samples(task: TaskConfig, acfg: AnalyzeConfig, n_range: tuple[int, int]) -> dict[str, Batch]:
    """The held-out examples of the knockout and of the probes (one seeded draw, in that order)."""
    rng = np.random.default_rng(acfg.seed + 1)
    knock = sample_batch(task, acfg.knockout_samples, rng, n_range, split="eval")
    return {"knockout": knock, "probes": sample_batch(task, acfg.probe_samples, rng, n_range, split="eval")}


def summary(res: dict) -> str:
    props, peak = res["proportions_by_layer"], res["peak_layer"]
    rows = [[l, *(f"{p[o]:.3f}" for o in OUTCOMES), ratio_text(r, p, res["n_pairs"])]
            for l, p, r in zip(res["layers"], props, res["ratio_by_layer"])]
    knock = res["knockout"]
    krows = [[g, *(f"{a:.3f}" for a in acc)] for g, acc in knock["accuracy_by_layer"].items()]
    pr = res["probes"]
    prow = [[t, f"{pr['chance'][t]:.3f}", *(f"{a:.3f}" for a in acc)] for t, acc in pr["accuracy"].items()]
    a = res["analyze"]
    return "\n".join([
        f"# Mechanism of `{res['run']}`", "",
        f"{res['n_pairs']} of {res['n_pairs_generated']} counterfactual pairs (N {res['n_range'][0]}..{res['n_range'][1]}) "
        f"are answered correctly on both sides and count; accuracy on the originals {res['baseline_accuracy']:.3f}. "
        f"Patched: `{a['point']}` of every block at the {a['position']} position ({res['forward_passes']} batched "
        "forward passes).", "",
        "## Interchange interventions", "",
        md_table(["after block", *OUTCOMES, "symbolic/positional"], rows),
        f"Peak layer (largest positional + symbolic share): **{peak}**; symbolic/positional ratio there: "
        f"**{ratio_text(res['symbolic_positional_ratio'], props[peak], res['n_pairs'])}**.", "",
        "![outcomes](outcomes.png)", "",
        "## Attention knockout (the query cannot attend to a group, in one layer)", "",
        f"Accuracy with nothing blocked: {knock['clean_accuracy']:.3f}.", "",
        md_table(["blocked", *(f"layer {l}" for l in res["layers"])], krows),
        "![knockout](knockout.png)", "",
        "## Linear probes at the query position (held-out accuracy)", "",
        md_table(["target", "chance", "embed", *(f"after {l}" for l in res["layers"])], prow),
        "![probes](probes.png)", "",
    ])
