"""A sweep's summary: one row per run, one per recipe, and ID accuracy against step.

    DIR/summary.json   {"runs": [...], "recipes": [...]}
    DIR/summary.md     the recipe table, then the run table (with each run's command)
    DIR/id_accuracy.png

Read from the run folders alone (metrics.jsonl, results.json, config.json), so it can be written
while the sweep runs (`binding sweep FILE --out DIR --report-only`); an unfinished run reports its
last evaluation, and "-" where a figure needs the final evaluation.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lab.io import atomic_write_json, read_json  # noqa: E402
from lab.report import md_table, save_figure  # noqa: E402
from lab.rundir import MetricsLog  # noqa: E402

from .sweep_file import SweepSpec  # noqa: E402

THRESHOLDS = (0.5, 0.99)


def _first_step(evals: list[dict], level: float) -> int | None:
    return next((r["step"] for r in evals if r.get("id_accuracy", 0.0) >= level), None)


def run_row(spec: SweepSpec, recipe, seed: int, folder: Path) -> dict:
    """What one run has reached (nothing if it has not started)."""
    row = {"recipe": recipe.name, "seed": seed, "folder": str(folder), "started": False, "finished": False}
    if not (folder / "metrics.jsonl").exists():
        return row
    batch = spec.config(recipe).train.batch_size
    evals = [r for r in MetricsLog(folder / "metrics.jsonl").rows() if "id_accuracy" in r]
    row["started"] = bool(evals)
    if not evals:
        return row
    last = evals[-1]
    row |= {"steps": last["step"], "examples": last["step"] * batch, "id_accuracy": last["id_accuracy"],
            "seconds": last.get("seconds"), "curve": [(r["step"], r["id_accuracy"]) for r in evals],
            "slot_accuracy": last.get("slot_accuracy"), "pool_accuracy": last.get("pool_accuracy"),
            **{k: last[k] for k in last if k.startswith("attn_")}}
    for level in THRESHOLDS:
        step = _first_step(evals, level)
        row[f"steps_to_{level}"] = step
        row[f"examples_to_{level}"] = step * batch if step is not None else None
    if (folder / "results.json").exists():
        res = read_json(folder / "results.json")
        row |= {"finished": True, "steps": res["steps"], "id_accuracy": res["id_accuracy"],
                "ood_accuracy": res["ood_accuracy"], "seconds": res.get("train_seconds")}
    return row


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def recipe_row(name: str, rows: list[dict]) -> dict:
    started = [r for r in rows if r["started"]]
    out = {"recipe": name, "seeds": len(rows), "started": len(started),
           "finished": sum(r["finished"] for r in rows),
           "steps": _mean([r.get("steps") for r in started]),
           "id_accuracy": _mean([r.get("id_accuracy") for r in started]),
           "ood_accuracy": _mean([r.get("ood_accuracy") for r in started])}
    for level in THRESHOLDS:   # seeds that got there, and the mean step among them
        reached = [r[f"steps_to_{level}"] for r in started if r.get(f"steps_to_{level}") is not None]
        out[f"reached_{level}"] = len(reached)
        out[f"steps_to_{level}"] = _mean(reached)
    return out


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _slots(acc: dict | None) -> str:
    return " ".join(f"{float(v):.2f}" for _, v in sorted((acc or {}).items(), key=lambda kv: int(kv[0]))) or "-"


def _layers(values: list | None) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "-"


def markdown(spec: SweepSpec, runs: list[dict], recipes: list[dict], out: Path) -> str:
    lines = [f"# Sweep `{out}`", "", f"Preset `{spec.preset}`, seeds {list(spec.seeds)}, common overrides: "
             f"`{' '.join(spec.overrides) or '(none)'}`. Steps to a level: the first evaluation at or "
             "above it (mean over the seeds that reached it). Regenerate: "
             f"`binding sweep {out}/sweep.toml --out {out} --report-only`.", "", "## Recipes", ""]
    lines += [md_table(["recipe", "seeds started / finished", "steps (mean)", "ID", "OOD",
                       "reached ID 0.5 (mean step)", "reached ID 0.99 (mean step)"],
                      [[r["recipe"], f"{r['started']} / {r['finished']}", _fmt(r["steps"], 0),
                        _fmt(r["id_accuracy"]), _fmt(r["ood_accuracy"]),
                        f"{r['reached_0.5']} ({_fmt(r['steps_to_0.5'], 0)})",
                        f"{r['reached_0.99']} ({_fmt(r['steps_to_0.99'], 0)})"] for r in recipes])]
    lines += ["", "## Runs", "", "Slot accuracy: by the queried object's slot (0 first). Attention: per "
              "layer, the largest head-mean mass from the query to the queried colour / shape and the "
              "answer's association shape / item (diagnostics.py).", ""]
    lines += [md_table(["recipe", "seed", "steps", "examples", "ID", "OOD", "pool", "to 0.5", "to 0.99",
                       "wall s", "slot accuracy", "attn colour", "attn shape", "attn assoc shape",
                       "attn assoc item"],
                      [[r["recipe"], r["seed"], _fmt(r.get("steps")), _fmt(r.get("examples")),
                        _fmt(r.get("id_accuracy")), _fmt(r.get("ood_accuracy")), _fmt(r.get("pool_accuracy")),
                        _fmt(r.get("steps_to_0.5")), _fmt(r.get("steps_to_0.99")), _fmt(r.get("seconds"), 0),
                        _slots(r.get("slot_accuracy")), _layers(r.get("attn_query_color")),
                        _layers(r.get("attn_query_shape")), _layers(r.get("attn_assoc_shape")),
                        _layers(r.get("attn_assoc_item"))] for r in runs if r["started"]])]
    not_started = [f"{r['recipe']} seed {r['seed']}" for r in runs if not r["started"]]
    if not_started:
        lines += ["", f"Not started yet: {', '.join(not_started)}."]
    return "\n".join(lines) + "\n"


def plateau_level(spec: SweepSpec) -> float:
    """ID accuracy of "pick one of the N items present": the mean of 1/N over the ID range."""
    lo, hi = spec.config(spec.recipes[0]).task.id_n
    return statistics.fmean(1 / n for n in range(lo, hi + 1))


def plot_curves(runs: list[dict], path: Path, plateau: float) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhline(plateau, color="grey", ls="--", lw=1, label=f"plateau: an item present ({plateau:.3f})")
    colours = {}
    for r in runs:
        if not r.get("curve"):
            continue
        colour = colours.setdefault(r["recipe"], f"C{len(colours) % 10}")
        steps, acc = zip(*r["curve"])
        ax.plot(steps, acc, color=colour, lw=1.2, label=r["recipe"] if r["recipe"] not in ax.get_legend_handles_labels()[1]
                else None)
    ax.set_xlabel("step")
    ax.set_ylabel("ID accuracy (held-out)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("ID accuracy against step (one line per seed)")
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path)


def write_summary(spec: SweepSpec, out: str | Path) -> Path:
    out = Path(out)
    runs = [run_row(spec, recipe, seed, folder) for recipe, seed, folder in spec.runs(out)]
    recipes = [recipe_row(r.name, [x for x in runs if x["recipe"] == r.name]) for r in spec.recipes]
    atomic_write_json(out / "summary.json", {"runs": runs, "recipes": recipes})
    (out / "summary.md").write_text(markdown(spec, runs, recipes, out))
    plot_curves(runs, out / "id_accuracy.png", plateau_level(spec))
    return out / "summary.md"
