"""The binding study's tables and reports: one entry per regime over seeds, the paper beside ours.

    table = summarize_seed_dirs([Path("runs/repro/seed0"), ...])   # what table.json holds
    write_report(out, table, "cpu", wall_s)                         # report.md + accuracy_by_n.png
    combine(["runs/repro", "runs/gpu"], "runs/all")                 # one table over several folders
    demo_section(demo, demo / "binding")                            # the `make demo` report's part

A `binding reproduce --out OUT` folder: OUT/seedS/<regime>/regime.json per regime and seed, the
text stage (the text-only regime's model) in OUT/seedS/text/, each regime's mechanism in
OUT/seedS/<regime>/mechanism/, and OUT/report.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.report import lift_report, md_table, mean_sd

from .plots import plot_accuracy_by_n

PAPER_OOD = {"text-only": 37.2, "noise-text": 57.5, "image-text": 69.5, "noise-image-text": 83.6}
REGIME_ORDER = ("text-only", "noise-text", "noise-image-text", "image-text", "mixed-from-start",
                "text-only-equal-compute", "appendix", "text-only+expand")   # also the scheduling priority
EXPANDED_PAIR = ("appendix", "text-only+expand")   # compared on the expanded task's OOD range only


def summarize(out: Path, seeds: list[int]) -> list[dict]:
    return summarize_seed_dirs([Path(out) / f"seed{s}" for s in seeds])


def summarize_seed_dirs(seed_dirs: list[Path]) -> list[dict]:
    """One table entry per regime over the seed folders (OUT/seedS) given, which may come from
    several `reproduce` folders (`binding combine`)."""
    table = []
    for regime in REGIME_ORDER:
        found = [d / regime for d in seed_dirs if (d / regime / "regime.json").exists()]
        runs = [read_json(d / "regime.json") for d in found]
        if not runs:
            continue
        ood_mean, ood_sd = mean_sd([r["ood_accuracy"] for r in runs])
        by_n = {n: mean_sd([r["accuracy_by_n"][n] for r in runs]) for n in runs[0]["accuracy_by_n"]}
        table.append({
            "regime": regime, "seeds": [r["seed"] for r in runs],
            "id_accuracy_mean": mean_sd([r["id_accuracy"] for r in runs])[0],
            "ood_accuracy_mean": ood_mean, "ood_accuracy_sd": ood_sd,
            "ood_accuracy_by_seed": {str(r["seed"]): r["ood_accuracy"] for r in runs},
            "accuracy_by_n_mean": {n: m for n, (m, _) in by_n.items()},
            "accuracy_by_n_sd": {n: sd for n, (_, sd) in by_n.items()},
            "total_steps_mean": mean_sd([r["total_steps"] for r in runs])[0],
            # a fixed-length stage (tag "text+3600" or "text+longest") has no threshold to miss
            "stages": [[(st["stage"], st["steps"], st["reached_threshold"] or "+" in st["stage"]) for st in r["stages"]]
                       for r in runs],
            "id_range": runs[0]["id_range"], "ood_range": runs[0]["ood_range"],
            "run_dirs": [str(d) for d in found],
            "paper_ood_accuracy": PAPER_OOD.get(regime),
        })
    return table


def effect_ratio(table: list[dict], num: str = "image-text", den: str = "text-only", resamples: int = 20_000,
                 seed: int = 0) -> dict | None:
    """Mean text OOD accuracy of `num` over that of `den`, on the seeds both have, with a 5-95%
    bootstrap interval (seeds resampled with replacement, the pairs kept together)."""
    by = {e["regime"]: e["ood_accuracy_by_seed"] for e in table}
    if num not in by or den not in by:
        return None
    seeds = sorted(set(by[num]) & set(by[den]), key=int)
    a, b = np.array([by[num][s] for s in seeds]), np.array([by[den][s] for s in seeds])
    idx = np.random.default_rng(seed).integers(0, len(seeds), size=(resamples, len(seeds)))
    boot = a[idx].mean(1) / b[idx].mean(1)
    return {"num": num, "den": den, "seeds": seeds, "ratio": float(a.mean() / b.mean()),
            "per_seed": (a / b).tolist(), "p5": float(np.percentile(boot, 5)), "p95": float(np.percentile(boot, 95))}


def write_report(out: Path, table: list[dict], preset: str, wall_s: float | None, mechanism: str = "") -> Path:
    rows = []
    for e in table:
        sd = f" +- {100 * e['ood_accuracy_sd']:.1f}" if len(e["seeds"]) > 1 else " (1 seed)"
        paper = f"{e['paper_ood_accuracy']:.1f}" if e["paper_ood_accuracy"] is not None else "-"
        stages = " -> ".join(f"{s}:{n}{'' if ok else '*'}" for s, n, ok in e["stages"][0])
        lo, hi = e["ood_range"]
        rows.append([e["regime"], f"{lo}-{hi}", f"{100 * e['ood_accuracy_mean']:.1f}{sd}", paper,
                     f"{100 * e['id_accuracy_mean']:.1f}", f"{e['total_steps_mean']:.0f}", stages])
    png = plot_accuracy_by_n({e["regime"]: {"accuracy_by_n": e["accuracy_by_n_mean"], "id_range": e["id_range"]}
                              for e in table}, out / "accuracy_by_n.png",
                             f"text-only accuracy by N, preset {preset}, mean over seeds")
    text = (f"# Binding study: curricula (preset {preset})\n\n"
            f"Text-only evaluation of each regime's final model, ID = N {table[0]['id_range'][0]}.."
            f"{table[0]['id_range'][1]}; each row's OOD range is its own (regimes that end with the "
            f"vocabulary expansion are evaluated on the larger task, to N = 32 where it allows; rows "
            f"with different ranges are not comparable). Paper numbers: mean text OOD accuracy (its N "
            f"9..32, its model and encoders).\n\n"
            + md_table(["regime", "OOD N", "ours: text OOD % (mean +- sd)", "paper: text OOD %", "ours: text ID %",
                        "steps", "stages (steps; * = threshold not reached)"], rows)
            + "".join(f"\n{_ratio_line(r)}\n" for r in (effect_ratio(table), effect_ratio(table, *EXPANDED_PAIR)) if r)
            + "\n" + ood_by_n_table(table)
            + f"\n![accuracy by N]({png.name})\n"
            + (f"\nWall time of this `binding reproduce` call: {wall_s:.0f} s (stages finished by an earlier "
               f"call are reused, not retrained; each stage's own train_seconds is in its results.json).\n"
               if wall_s is not None else "")
            + (f"\n{mechanism}" if mechanism else ""))
    (out / "report.md").write_text(text)
    return out / "report.md"


def ood_by_n_table(table: list[dict]) -> str:
    """Text accuracy per OOD N, mean +- sd over seeds, a row per regime ('-' where a regime's
    OOD range does not reach that N): where a regime gains or loses, not only how much on average."""
    ns = sorted({int(n) for e in table for n in e["accuracy_by_n_mean"] if int(n) > e["id_range"][1]})
    rows = []
    for e in table:
        cells = []
        for n in map(str, ns):
            if n not in e["accuracy_by_n_mean"]:
                cells.append("-")
            else:
                sd = f" +- {e['accuracy_by_n_sd'][n]:.3f}" if len(e["seeds"]) > 1 else ""
                cells.append(f"{e['accuracy_by_n_mean'][n]:.3f}{sd}")
        rows.append([e["regime"], str(len(e["seeds"]))] + cells)
    return ("Text accuracy by OOD N (mean +- sd over seeds):\n\n"
            + md_table(["regime", "seeds"] + [f"N {n}" for n in ns], rows))


def _ratio_line(r: dict) -> str:
    paper = (f"{PAPER_OOD[r['num']] / PAPER_OOD[r['den']]:.2f}x" if r["num"] in PAPER_OOD and r["den"] in PAPER_OOD
             else "not reported")
    return (f"{r['num']} / {r['den']} (mean text OOD): **{r['ratio']:.2f}x** over {len(r['seeds'])} seed(s) "
            f"(per seed {', '.join(f'{x:.2f}' for x in r['per_seed'])}; bootstrap over seeds 5-95%: "
            f"{r['p5']:.2f}-{r['p95']:.2f}x; paper {paper}).")


def combine(folders: list[str | Path], out: str | Path) -> list[dict]:
    """The table and report over the seeds of several `reproduce` folders (e.g. seeds trained on
    another machine with --first-seed); a seed found in two folders is an error."""
    seed_dirs: dict[str, Path] = {}
    for folder in map(Path, folders):
        found = sorted(d for d in folder.glob("seed*/") if d.name[4:].isdigit())
        if not found:
            raise UserError(f"{folder} holds no seedS folders of a `binding reproduce` run")
        for d in found:
            if d.name in seed_dirs:
                raise UserError(f"{d.name} is in both {seed_dirs[d.name].parent} and {folder}; combine distinct seeds")
            seed_dirs[d.name] = d
    table = summarize_seed_dirs(sorted(seed_dirs.values(), key=lambda d: int(d.name[4:])))
    if not table:
        raise UserError(f"no trained regime (seedS/<regime>/regime.json) in {', '.join(map(str, folders))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "table.json", table)
    write_report(out, table, "combined: " + ", ".join(map(str, folders)), None)
    return table


def demo_section(demo: Path, root: Path) -> list[str]:
    """The `make demo` report's binding part, from `binding reproduce --out ROOT` (ROOT inside
    `demo`): its text-only model first (per N, mistakes, its mechanism), then the reproduce report
    (every regime beside the paper)."""
    run = root / "seed0" / "text"                  # the text stage = the text-only regime's model
    res_path = run / "results.json"
    if not res_path.exists():
        return ["## Binding study", "", f"(no results: {res_path} is missing)", ""]
    res = read_json(res_path)
    lo, hi = res["ood_range"]
    lines = ["## Binding study: text-only training", "",
             f"ID accuracy (N {res['id_range'][0]}-{res['id_range'][1]}): **{res['id_accuracy']:.3f}**; "
             f"OOD accuracy (N {lo}-{hi}): **{res['ood_accuracy']:.3f}** (paper: perfect / 0.372). "
             f"{res['steps']} steps, {res['train_seconds']} s of training.", "",
             "| N | " + " | ".join(res["accuracy_by_n"]) + " |",
             "|---|" + "---|" * len(res["accuracy_by_n"]),
             "| accuracy | " + " | ".join(f"{a:.2f}" for a in res["accuracy_by_n"].values()) + " |", "",
             f"![accuracy by N]({(run / 'accuracy_by_n.png').relative_to(demo)})", ""]
    if res.get("mistakes"):
        lines += ["First mistakes:", "", "```", *res["mistakes"][:2], "```", ""]
    mech_dir = root / "seed0" / "text-only" / "mechanism"
    mech = mech_dir / "mechanism.json"
    if mech.exists():
        from .interp.interventions import ratio_text

        m = read_json(mech)
        peak = m["proportions_by_layer"][m["peak_layer"]]
        ratio = m["symbolic_positional_ratio"]
        lines += ["### Its mechanism (`binding analyze`)", "",
                  f"Patching the counterfactual's residual at the query, after each block, over {m['n_pairs']} pairs: "
                  "positional : symbolic : reflexive = " + " / ".join(
                      f"{p['positional']:.2f} : {p['symbolic']:.2f} : {p['reflexive']:.2f}" for p in m["proportions_by_layer"])
                  + f". Peak layer {m['peak_layer']} (symbolic {peak['symbolic']:.2f}, positional "
                  f"{peak['positional']:.2f}; ratio {ratio_text(ratio, peak, m['n_pairs'])}). The paper's text-only "
                  "models are positional; why this one is not: docs/results/binding-mechanism.md.", "",
                  f"![outcomes]({(mech_dir / 'outcomes.png').relative_to(demo)}) "
                  f"![probes]({(mech_dir / 'probes.png').relative_to(demo)})", ""]
    return lines + lift_report(demo, root / "report.md", "## Binding study: every training regime")
