"""The before/after-expansion table of docs/results/binding-curricula.md: the appendix order and
its control on the same N before and after the vocabulary expansion, means over seeds 0-2.
(The per-N mean +- sd table is in `binding combine`'s report.md.)

    .venv/bin/python docs/results/appendix_tables.py runs/demo/binding
"""
import json
import statistics as st
import sys
from pathlib import Path

root = Path(sys.argv[1])
NS = ["9", "10", "12", "14", "16", "18", "20", "24"]
PAIRS = {"appendix": ("text/noise/image/mix20", "text/noise/image/mix20/mix20-expand"),
         "text-only+expand": ("text", "text/text-expand")}
print("| N | " + " | ".join(NS) + " | mean 9-24 | seeds |")
for regime, stages in PAIRS.items():
    for label, stage in zip(("before", "after"), stages):
        found = [root / f"seed{s}" / stage / "results.json" for s in (0, 1, 2)]
        rs = [json.loads(p.read_text()) for p in found if p.exists()]
        if not rs:
            continue
        per_n = [st.mean(r["accuracy_by_n"][n] for r in rs) for n in NS]
        mean_9_24 = st.mean(st.mean(r["accuracy_by_n"][str(n)] for n in range(9, 25)) for r in rs)
        print(f"| {regime} {label} | " + " | ".join(f"{a:.3f}" for a in per_n) + f" | {mean_9_24:.3f} | {len(rs)} |")
