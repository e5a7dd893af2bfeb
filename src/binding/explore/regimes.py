"""One explorer page per regime of a `binding reproduce` folder, linked from its report.

Each page shows the regime's final model (first seed) beside the text-only model of the same seed,
on the same held-out examples (the paper's comparison); the text-only page shows it alone. Pages
go to OUT/explore/<regime>-seed<S>/index.html; probes come from each regime's analysis folder.
"""
from __future__ import annotations

from pathlib import Path

from lab.io import read_json
from lab.report import md_table

from .build import explore


def _final(regime_dir: Path) -> Path:
    return Path(read_json(regime_dir / "regime.json", "regime summary")["final_run_dir"])


def regime_pages(out: Path, table: list[dict], quiet: bool = True) -> list[dict]:
    pages = []
    for e in table:
        regime_dir, seed = Path(e["run_dirs"][0]), e["seeds"][0]
        text_dir = regime_dir.parent / "text-only"
        beside = e["regime"] != "text-only" and (text_dir / "regime.json").exists()
        if not quiet:
            print(f"explorer page: {e['regime']} seed {seed}", flush=True)
        page = explore(_final(regime_dir), out / "explore" / f"{e['regime']}-seed{seed}",
                       run2=_final(text_dir) if beside else None, analysis=regime_dir / "mechanism",
                       analysis2=text_dir / "mechanism")
        pages.append({"regime": e["regime"], "seed": seed, "beside": "text-only" if beside else "",
                      "path": Path(page["path"]).relative_to(out), "bytes": page["bytes"]})
    return pages


def report_section(pages: list[dict]) -> str:
    rows = [[p["regime"], p["seed"], p["beside"] or "-", f"[{p['path']}]({p['path']})", f"{p['bytes'] / 1e6:.1f} MB"]
            for p in pages]
    return ("## Explorer pages (`binding explore`)\n\n"
            "One self-contained page per regime (open it from the file system): held-out examples in words, "
            "attention per layer and head, the interchange interventions of each example's counterfactual pair, "
            "logit lens and probes at the query, accuracy by N and query slot.\n\n"
            + md_table(["regime", "seed", "beside", "page", "size"], rows))
