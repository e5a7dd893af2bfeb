"""One combined report for `make demo`: links each study's own report and lifts its headline.

    python -m lab.demo_report runs/demo        # writes runs/demo/REPORT.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _binding_section(demo: Path) -> list[str]:
    """`binding reproduce --out DEMO/binding`: its text-only model first (per N, mistakes, its
    mechanism), then the reproduce report (every regime beside the paper)."""
    root = demo / "binding"
    run = root / "seed0" / "text"                  # the text stage = the text-only regime's model
    res_path = run / "results.json"
    if not res_path.exists():
        return ["## Binding study", "", f"(no results: {res_path} is missing)", ""]
    res = json.loads(res_path.read_text())
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
        m = json.loads(mech.read_text())
        peak = m["proportions_by_layer"][m["peak_layer"]]
        ratio = m["symbolic_positional_ratio"]
        lines += ["### Its mechanism (`binding analyze`)", "",
                  f"Patching the counterfactual's residual at the query, after each block, over {m['n_pairs']} pairs: "
                  "positional : symbolic : reflexive = " + " / ".join(
                      f"{p['positional']:.2f} : {p['symbolic']:.2f} : {p['reflexive']:.2f}" for p in m["proportions_by_layer"])
                  + f". Peak layer {m['peak_layer']} (symbolic {peak['symbolic']:.2f}, positional "
                  f"{peak['positional']:.2f}; ratio {'inf' if ratio is None else f'{ratio:.1f}'}). The paper's text-only "
                  "models are positional; why this one is not: docs/RESULTS.md, 'Binding mechanism'.", "",
                  f"![outcomes]({(mech_dir / 'outcomes.png').relative_to(demo)}) "
                  f"![probes]({(mech_dir / 'probes.png').relative_to(demo)})", ""]
    return lines + _lifted(demo, root / "report.md", "## Binding study: every training regime")


def _resilinet_section(demo: Path) -> list[str]:
    return _lifted(demo, demo / "resilinet" / "report.md", "## ResiliNet")


def _lifted(demo: Path, report: Path, title: str) -> list[str]:
    """A study's own report under `title`, its links rewritten to sit beside REPORT.md; its own
    headings one level down."""
    if not report.exists():
        return [title, "", f"(no results: {report} is missing)", ""]
    rel = report.parent.relative_to(demo)
    body = report.read_text().replace("](", f"]({rel}/")  # its figures sit beside it
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.splitlines()[1:])
    return [title, "", f"The full report: [{rel}/report.md]({rel}/report.md)", "", body, ""]


def write(demo: Path) -> Path:
    text = ["# Demo report", "", "Produced by `make demo` (the `cpu` presets of both studies). "
            "The papers' numbers and the measured ones are compared in docs/RESULTS.md.", "",
            *_binding_section(demo), *_resilinet_section(demo)]
    out = demo / "REPORT.md"
    demo.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text) + "\n")
    return out


if __name__ == "__main__":
    print(f"-> {write(Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/demo'))}")
