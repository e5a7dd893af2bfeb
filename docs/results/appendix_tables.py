"""The per-N tables of the appendix order and its control (docs/results/binding-curricula.md):
mean +- sd over seeds 0-2, and the same models before and after the expansion.

    .venv/bin/python docs/results/appendix_tables.py runs/demo/binding
"""
import json, sys, statistics as st
from pathlib import Path
root = Path(sys.argv[1]); seeds = [0, 1, 2]
NS = ["9", "10", "12", "14", "16", "18", "20", "24", "28", "32"]
for reg in ("appendix", "text-only+expand"):
    rs = [json.load(open(root / f"seed{s}" / reg / "regime.json")) for s in seeds if (root / f"seed{s}" / reg / "regime.json").exists()]
    def ms(xs): return f"{st.mean(xs):.3f} +- {st.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
    idr = [min(r["accuracy_by_n"][str(n)] for n in range(2, 9)) for r in rs]
    print(reg, "seeds", [r["seed"] for r in rs], "OOD", [round(r["ood_accuracy"], 3) for r in rs], ms([r["ood_accuracy"] for r in rs]),
          "ID", [round(r["id_accuracy"], 4) for r in rs], "lowest N in ID", [round(x, 3) for x in idr],
          "steps", [r["total_steps"] for r in rs], [[(s["stage"], s["steps"], s["threshold_step"]) for s in r["stages"]][-1] for r in rs])
    print("| " + reg + " | " + " | ".join(f"{st.mean([r['accuracy_by_n'][n] for r in rs]):.3f}" + (f" +- {st.stdev([r['accuracy_by_n'][n] for r in rs]):.3f}" if len(rs) > 1 else "") for n in NS) + " |")

print("before vs after expansion, same N")
PAIRS = {"appendix": ("text/noise/image/mix20", "text/noise/image/mix20/mix20-expand"), "text-only+expand": ("text", "text/text-expand")}
for reg, (a, b) in PAIRS.items():
    for label, sub in (("before", a), ("after", b)):
        rs = [json.load(open(root / f"seed{s}" / sub / "results.json")) for s in seeds if (root / f"seed{s}" / sub / "results.json").exists()]
        print(f"| {reg} {label} | " + " | ".join(f"{st.mean([r['accuracy_by_n'][n] for r in rs]):.3f}" for n in ["9", "10", "12", "14", "16", "18", "20", "24"]) + f" | {st.mean([st.mean([r['accuracy_by_n'][str(n)] for n in range(9, 25)]) for r in rs]):.3f} | seeds {len(rs)}")
