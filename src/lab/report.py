"""Markdown tables and matplotlib figures for reports (headless: the Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return m, sd


def save_figure(fig: "plt.Figure", path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def lift_report(demo: Path, report: Path, title: str) -> list[str]:
    """A study's own report.md as lines of a combined report in `demo` (the `make demo` report):
    under `title`, its links rewritten to sit beside the combined report, its own headings one
    level down."""
    if not report.exists():
        return [title, "", f"(no results: {report} is missing)", ""]
    rel = report.parent.relative_to(demo)
    body = report.read_text().replace("](", f"]({rel}/")  # its figures sit beside it
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.splitlines()[1:])
    return [title, "", f"The full report: [{rel}/report.md]({rel}/report.md)", "", body, ""]
