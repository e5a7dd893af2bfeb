"""The chaos report's timeline plot: kills and hangs against request latency and answers.

    plot_timeline(answers, events, plan, "OUT/timeline.png")
    # answers: [(seconds since the load started, latency ms, dead nodes in that answer)]
    # events:  the saboteur's [{"t_s", "event": "kill" | "hang" | "resume", "node", "pid"}]

Top: every answer's latency (log scale), coloured by how many nodes it counted dead. Bottom:
answers per second, split into "every node alive" and "routed around a node". Kills are red
lines, hangs blue spans (SIGSTOP to SIGCONT), each labelled with the node.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lab.report import plt, save_figure

DEAD_COLOURS = ("#2a9d4b", "#e67e22", "#c0392b", "#7d3c98")   # 0, 1, 2, 3+ nodes dead


def plot_timeline(answers: list[tuple[float, float, int]], events: list[dict], plan, path: str | Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    a = np.array(answers, dtype=float).reshape(-1, 3)
    for k, colour in enumerate(DEAD_COLOURS):
        sel = (a[:, 2] == k) if k < len(DEAD_COLOURS) - 1 else (a[:, 2] >= k)
        if sel.any():
            top.scatter(a[sel, 0], a[sel, 1], s=6, color=colour, label=f"{k}{'+' if k == 3 else ''} dead")
    top.set_yscale("log")
    top.set_ylabel("request latency (ms)")
    top.legend(loc="upper right", fontsize=8, markerscale=2, title="nodes counted dead", title_fontsize=8)

    edges = np.arange(0, np.ceil(plan.duration_s) + 1)
    alive = np.histogram(a[a[:, 2] == 0, 0], edges)[0]
    around = np.histogram(a[a[:, 2] > 0, 0], edges)[0]
    bottom.bar(edges[:-1], alive, width=1, align="edge", color=DEAD_COLOURS[0], label="every node alive")
    bottom.bar(edges[:-1], around, width=1, align="edge", bottom=alive, color=DEAD_COLOURS[1],
               label="routed around a node")
    bottom.set_ylabel("answers / s")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper right", fontsize=8)

    _mark_events(events, plan, (top, bottom))
    top.set_title(f"chaos: {plan.clients} clients x batch {plan.batch}; red line: SIGKILL, blue span: SIGSTOP for {plan.hang_s:g} s")
    bottom.set_xlim(0, plan.duration_s)
    return save_figure(fig, path)


def _mark_events(events: list[dict], plan, axes) -> None:
    resumes = [e for e in events if e["event"] == "resume"]
    for e in events:
        if e["event"] == "kill":
            for ax in axes:
                ax.axvline(e["t_s"], color="#c0392b", lw=1.2, alpha=0.8)
        elif e["event"] == "hang":
            end = next((r["t_s"] for r in resumes if r["pid"] == e["pid"] and r["t_s"] >= e["t_s"]),
                       e["t_s"] + plan.hang_s)
            for ax in axes:
                ax.axvspan(e["t_s"], end, color="#3498db", alpha=0.18, lw=0)
        else:
            continue
        axes[0].annotate(e["node"], (e["t_s"], 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                         textcoords="offset points", fontsize=8, color="#555")
