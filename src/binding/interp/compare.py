"""The mechanism of every regime of a `binding reproduce` folder, side by side.

For each regime and seed, `analyze` runs on the regime's final model (its text path) into
OUT/seedS/<regime>/mechanism/ (kept if already there with the same settings); the regimes'
proportions are averaged over seeds into OUT/mechanism.json, OUT/mechanism_by_regime.png and a
Markdown section for the report.
"""
from __future__ import annotations

import json
from pathlib import Path

from lab import config as cfglib
from lab.io import atomic_write_json, read_json
from lab.report import md_table, mean_sd

from ..config import AnalyzeConfig
from .analyze import analyze
from .counterfactual import OUTCOMES
from .interventions import peak_and_ratio, ratio_text
from .plots import plot_regimes


def analyze_regime(regime_dir: Path, acfg: AnalyzeConfig | None = None, quiet: bool = False) -> dict:
    """`analyze` of one regime's final model into regime_dir/mechanism, kept if already there with
    the same settings (`binding reproduce` runs these as jobs beside the training)."""
    acfg = acfg or AnalyzeConfig()
    settings = json.loads(json.dumps(cfglib.to_dict(acfg)))   # as read back from mechanism.json (lists)
    final = Path(read_json(regime_dir / "regime.json")["final_run_dir"])
    old = regime_dir / "mechanism" / "mechanism.json"
    if old.exists() and (r := read_json(old)).get("run") == str(final) and r.get("analyze") == settings:
        return r
    if not quiet:
        print(f"analyzing {regime_dir.name} ({final})", flush=True)
    return analyze(final, regime_dir / "mechanism", acfg)


def analyze_regimes(out: Path, table: list[dict], acfg: AnalyzeConfig | None = None,
                    quiet: bool = False) -> list[dict]:
    acfg = acfg or AnalyzeConfig()
    entries = []
    for e in table:
        per_seed = [analyze_regime(Path(d), acfg, quiet) for d in e["run_dirs"]]
        layers = per_seed[0]["layers"]
        mean_props = [{o: mean_sd([r["proportions_by_layer"][l][o] for r in per_seed])[0] for o in OUTCOMES}
                      for l in range(len(layers))]
        peak, ratio = peak_and_ratio(mean_props)
        entries.append({
            "regime": e["regime"], "seeds": e["seeds"], "layers": layers, "proportions_by_layer": mean_props,
            "peak_layer": peak, "symbolic_positional_ratio": ratio,
            "ratio_by_seed": [r["symbolic_positional_ratio"] for r in per_seed],
            "ratio_text_by_seed": [ratio_text(r["symbolic_positional_ratio"], r["proportions_by_layer"][r["peak_layer"]],
                                              r["n_pairs"]) for r in per_seed],
            "peak_layer_by_seed": [r["peak_layer"] for r in per_seed],
            "n_pairs": [r["n_pairs"] for r in per_seed],
            "knockout_drop_mean": {g: [mean_sd([r["knockout"]["drop_by_layer"][g][l] for r in per_seed])[0]
                                       for l in range(len(layers))] for g in per_seed[0]["knockout"]["drop_by_layer"]},
            "probe_accuracy_mean": {t: [mean_sd([r["probes"]["accuracy"][t][i] for r in per_seed])[0]
                                        for i in range(len(per_seed[0]["probes"]["points"]))]
                                    for t in per_seed[0]["probes"]["accuracy"]},
            "analysis_dirs": [str(Path(d) / "mechanism") for d in e["run_dirs"]],
        })
    atomic_write_json(out / "mechanism.json", entries)
    plot_regimes({x["regime"]: x["proportions_by_layer"] for x in entries}, out / "mechanism_by_regime.png")
    return entries


def report_section(entries: list[dict]) -> str:
    rows = []
    for x in entries:
        p = x["proportions_by_layer"]
        peak = p[x["peak_layer"]]
        per_layer = " / ".join(f"{q['positional']:.2f}:{q['symbolic']:.2f}:{q['reflexive']:.2f}" for q in p)
        shape = x["probe_accuracy_mean"].get("shape", [])
        slot = x["probe_accuracy_mean"].get("slot", [])
        rows.append([x["regime"], x["peak_layer"], ratio_text(x["symbolic_positional_ratio"], peak, sum(x["n_pairs"])),
                     ", ".join(x["ratio_text_by_seed"]), per_layer,
                     " / ".join(f"{a:.2f}" for a in shape), " / ".join(f"{a:.2f}" for a in slot)])
    return ("## Mechanism (interchange interventions at the query, text inputs)\n\n"
            "Per layer `positional:symbolic:reflexive` shares of the pairs (the rest: no effect / other); "
            "ratio = symbolic/positional at the peak layer (largest positional + symbolic share). Probe "
            "columns: held-out linear-probe accuracy at the query, embed then after each block. Every "
            "model's full analysis is in its `mechanism/summary.md`.\n\n"
            + md_table(["regime", "peak layer", "sym/pos (mean)", "sym/pos per seed",
                        "pos:sym:refl per layer", "probe: bound shape", "probe: ordinal slot"], rows)
            + "\n![mechanism by regime](mechanism_by_regime.png)\n")
