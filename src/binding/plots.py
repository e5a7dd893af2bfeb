"""Figures of the binding study: accuracy against N, with the ID/OOD boundary marked."""
from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from lab.report import plt, save_figure


def plot_accuracy_by_n(curves: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """curves: label -> a results dict (accuracy_by_n, id_range); one line per label."""
    fig, ax = plt.subplots(figsize=(7, 4))
    id_hi = None
    for label, res in curves.items():
        ns = [int(n) for n in res["accuracy_by_n"]]
        ax.plot(ns, list(res["accuracy_by_n"].values()), marker="o", ms=3, label=label)
        id_hi = res["id_range"][1]
    if id_hi is not None:
        ax.axvline(id_hi + 0.5, color="grey", ls="--", lw=1)
        ax.text(id_hi + 0.7, 0.02, "out of distribution ->", color="grey", fontsize=8)
    ax.set_xlabel("N (objects in the context)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # N is a count: no half-integer ticks
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(textwrap.fill(title or "text-only accuracy by context size", 70))   # long titles wrap, not clip
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)
