"""A sweep's summary: one row per run, one per recipe, and ID accuracy against step.

    DIR/summary.json   {"runs": [...], "recipes": [...]}
    DIR/summary.md     the recipe table, then the run table (with each run's command)
    DIR/id_accuracy.png   ID accuracy against step, one line per run
    DIR/diagnostics.png   the plateau diagnostics against step (attention per hop, slot accuracy)

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


def trend(curve: list[tuple[int, float]]) -> dict:
    """ID accuracy's least-squares slope over the second half of the evaluations (per 10k steps,
    with its standard error) and what it predicts: the step at which ID 0.99 would be reached if the
    slope held; None unless the slope is positive by more than two standard errors."""
    half = curve[len(curve) // 2:]
    if len(half) < 4:
        return {"slope_per_10k": None, "slope_se": None, "extrapolated_step_to_0.99": None}
    xs, ys = [s / 1e4 for s, _ in half], [a for _, a in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys)]
    se = (sum(r * r for r in resid) / (len(xs) - 2) / sxx) ** 0.5
    step, acc = curve[-1]
    reach = round(step + (THRESHOLDS[-1] - acc) / slope * 1e4) if slope > 2 * se and acc < THRESHOLDS[-1] else None
    return {"slope_per_10k": slope, "slope_se": se, "extrapolated_step_to_0.99": reach}


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
    curve = [(r["step"], r["id_accuracy"]) for r in evals]
    row |= {"steps": last["step"], "examples": last["step"] * batch, "id_accuracy": last["id_accuracy"],
            "seconds": last.get("seconds"), "curve": curve, **trend(curve),
            "diagnostics_curve": [(r["step"], max(r.get("attn_query_shape") or [0]), max(r.get("attn_assoc_item") or [0]),
                                   (r.get("slot_accuracy") or {}).get("0", 0.0),
                                   (r.get("slot_accuracy") or {}).get("1", 0.0)) for r in evals],
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


def _trend(r: dict) -> str:
    if r.get("slope_per_10k") is None:
        return "-"
    return f"{r['slope_per_10k']:+.4f} +- {r['slope_se']:.4f}"


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
              "answer's association shape / item (diagnostics.py). ID trend: the least-squares slope of ID "
              "accuracy over the second half of the run's evaluations, +- its standard error; the "
              "extrapolated step to ID 0.99 is given only where that slope is positive by more than two "
              "standard errors.", "", "![ID accuracy](id_accuracy.png)", "", "![diagnostics](diagnostics.png)", ""]
    lines += [md_table(["recipe", "seed", "steps", "examples", "ID", "OOD", "pool", "to 0.5", "to 0.99",
                       "ID trend per 10k steps (late half)", "0.99 at step (extrapolated)",
                       "wall s", "slot accuracy", "attn colour", "attn shape", "attn assoc shape",
                       "attn assoc item"],
                      [[r["recipe"], r["seed"], _fmt(r.get("steps")), _fmt(r.get("examples")),
                        _fmt(r.get("id_accuracy")), _fmt(r.get("ood_accuracy")), _fmt(r.get("pool_accuracy")),
                        _fmt(r.get("steps_to_0.5")), _fmt(r.get("steps_to_0.99")), _trend(r),
                        _fmt(r.get("extrapolated_step_to_0.99")) if r.get("slope_per_10k") is not None else "-",
                        _fmt(r.get("seconds"), 0),
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


def plot_diagnostics(runs: list[dict], path: Path, plateau: float) -> None:
    """The hidden-progress curves: per run, the first hop's attention (query -> the queried object's
    shape, the largest layer), the second hop's (query -> the answer's association item), and the
    accuracy on the first two query slots, the ones every example has (a positional shortcut shows
    up first as some slots answered well; later slots have too few diagnostic examples to plot)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
    titles = ("query -> queried shape (first hop), max over layers", "query -> answer's item (second hop)",
              "accuracy when the query asks slot 0 (solid) or slot 1 (dotted)")
    colours = {}
    for r in runs:
        if not r.get("diagnostics_curve"):
            continue
        colour = colours.setdefault(r["recipe"], f"C{len(colours) % 10}")
        steps, shape, item, slot0, slot1 = zip(*r["diagnostics_curve"])
        label = r["recipe"] if r["recipe"] not in axes[0].get_legend_handles_labels()[1] else None
        axes[0].plot(steps, shape, color=colour, lw=1, label=label)
        axes[1].plot(steps, item, color=colour, lw=1)
        axes[2].plot(steps, slot0, color=colour, lw=1)
        axes[2].plot(steps, slot1, color=colour, lw=1, ls=":")
    axes[2].axhline(plateau, color="grey", ls="--", lw=1)
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("attention mass / accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def write_summary(spec: SweepSpec, out: str | Path) -> Path:
    out = Path(out)
    runs = [run_row(spec, recipe, seed, folder) for recipe, seed, folder in spec.runs(out)]
    recipes = [recipe_row(r.name, [x for x in runs if x["recipe"] == r.name]) for r in spec.recipes]
    atomic_write_json(out / "summary.json", {"runs": runs, "recipes": recipes})
    (out / "summary.md").write_text(markdown(spec, runs, recipes, out))
    plot_curves(runs, out / "id_accuracy.png", plateau_level(spec))
    plot_diagnostics(runs, out / "diagnostics.png", plateau_level(spec))
    return out / "summary.md"
