"""Figures of the mechanism analysis: intervention outcomes per layer, knockout and probe curves."""
from __future__ import annotations

from pathlib import Path

from lab.report import plt, save_figure

from .counterfactual import OUTCOMES

COLOURS = {"positional": "#d95f02", "symbolic": "#1b9e77", "reflexive": "#7570b3", "no_effect": "#bbbbbb",
           "other": "#444444"}


def _stacked(ax, proportions: list[dict[str, float]], labels: list[str], title: str) -> None:
    bottom = [0.0] * len(proportions)
    for o in OUTCOMES:
        vals = [p[o] for p in proportions]
        ax.bar(labels, vals, bottom=bottom, color=COLOURS[o], label=o.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("patched residual: after block")


def plot_outcomes(proportions: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    _stacked(ax, proportions, [str(i) for i in range(len(proportions))], title or "interchange interventions")
    ax.set_ylabel("share of pairs")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)


def plot_regimes(by_regime: dict[str, list[dict[str, float]]], path: str | Path, per_row: int = 4) -> Path:
    """One panel per regime, `per_row` to a row (the regimes' mean proportions per layer). A panel
    with no pair (the model answers no pair correctly on both sides) says so instead of staying blank."""
    k = len(by_regime)
    rows, cols = -(-k // per_row), min(k, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.2, 3.0 * rows + 0.4), sharey=True, squeeze=False)
    for ax, (name, props) in zip(axes.flat, by_regime.items()):
        _stacked(ax, props, [str(i) for i in range(len(props))], name)
        if not any(sum(p.values()) for p in props):
            ax.text(0.5, 0.5, "no pair counted\n(none answered right\non both sides)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="grey")
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("share of pairs")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)


def plot_knockout(knock: dict, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for group, acc in knock["accuracy_by_layer"].items():
        ax.plot(range(len(acc)), acc, marker="o", label=f"query cannot see {group}")
    ax.axhline(knock["clean_accuracy"], color="grey", ls="--", lw=1, label="nothing blocked")
    return _finish_curves(fig, ax, "layer (block) where the query's attention is blocked", "accuracy", path)


def plot_probes(pr: dict, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    labels = ["embed"] + [str(i) for i in range(len(pr["points"]) - 1)]
    for name, acc in pr["accuracy"].items():
        line, = ax.plot(labels, acc, marker="o", label=f"{name} (chance {pr['chance'][name]:.2f})")
        ax.axhline(pr["chance"][name], color=line.get_color(), ls=":", lw=1)
    return _finish_curves(fig, ax, "residual stream at the query: after block", "held-out probe accuracy", path)


def _finish_curves(fig, ax, xlabel: str, ylabel: str, path: str | Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
