"""One explorer page per regime of a `binding reproduce` folder, linked from its report.

Each page shows the regime's final model (first seed) beside the text-only model of the same seed,
on the same held-out examples (the paper's comparison); the text-only page, and a regime trained on
another task (an expanded vocabulary), show the model alone. Pages
go to OUT/explore/<regime>-seed<S>/index.html; probes come from each regime's analysis folder.
"""
from __future__ import annotations

from pathlib import Path

from lab.errors import UserError
from lab.io import read_json
from lab.report import md_table

from ..run import load_config
from .build import explore


def _final(regime_dir: Path) -> Path:
    return Path(read_json(regime_dir / "regime.json", "regime summary")["final_run_dir"])


def _text_only_beside(regime: str, final: Path, text_dir: Path) -> Path | None:
    """The same seed's text-only model, when it is another model of the same task (an expanded
    vocabulary is another task: that page shows the regime alone)."""
    if regime == "text-only" or not (text_dir / "regime.json").exists():
        return None
    text_final = _final(text_dir)
    return text_final if load_config(text_final)[0].task == load_config(final)[0].task else None


def regime_pages(out: Path, table: list[dict], quiet: bool = True) -> list[dict]:
    pages = []
    for e in table:
        regime_dir, seed = Path(e["run_dirs"][0]), e["seeds"][0]
        text_dir = regime_dir.parent / "text-only"
        final = _final(regime_dir)
        beside = _text_only_beside(e["regime"], final, text_dir)
        if not quiet:
            print(f"explorer page: {e['regime']} seed {seed}", flush=True)
        entry = {"regime": e["regime"], "seed": seed, "beside": "text-only" if beside else ""}
        try:
            page = explore(final, out / "explore" / f"{e['regime']}-seed{seed}", run2=beside,
                           analysis=regime_dir / "mechanism", analysis2=text_dir / "mechanism")
            pages.append({**entry, "path": Path(page["path"]).relative_to(out), "bytes": page["bytes"]})
        except UserError as err:    # one page that cannot be made does not cost the report
            pages.append({**entry, "error": str(err)})
    return pages


def report_section(pages: list[dict]) -> str:
    rows = [[p["regime"], p["seed"], p["beside"] or "-",
             f"[{p['path']}]({p['path']})" if "path" in p else f"not written: {p['error']}",
             f"{p['bytes'] / 1e6:.1f} MB" if "path" in p else "-"] for p in pages]
    return ("## Explorer pages (`binding explore`)\n\n"
            "One self-contained page per regime (open it from the file system): held-out examples in words, "
            "attention per layer and head, the interchange interventions of each example's counterfactual pair, "
            "logit lens and probes at the query, accuracy by N and query slot.\n\n"
            + md_table(["regime", "seed", "beside", "page", "size"], rows))
