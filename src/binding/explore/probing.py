"""The linear probes of `binding analyze`, refitted so the page can show their predictions.

`analyze` saves the probes' held-out accuracy, not the probes. Where a run has an analysis folder
(mechanism.json), the page refits them exactly as it did: the same settings (read from
mechanism.json), the same held-out examples (`analyze.analysis_samples`), the same split and
classifier (`probes.fitted_probes`), then reads the shown examples out with them. The held-out accuracies
the page quotes are mechanism.json's. Without an analysis folder the page says so and shows no probe.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab import config as cfglib
from lab.io import read_json

from ..config import AnalyzeConfig
from ..interp.analyze import analysis_n_range, analysis_samples
from ..interp.interventions import ratio_text
from ..interp.probes import TARGETS, fitted_probes, query_activations
from ..task import Batch
from .inputs import ExploredRun


@dataclass
class RunProbes:
    settings: AnalyzeConfig       # the analysis's settings (defaults without one)
    mechanism: dict | None        # mechanism.json, None without an analysis
    fitted: dict | None           # target -> per point (scaler, classifier)
    note: str                     # what the page says about the probes


def load_probes(run: ExploredRun) -> RunProbes:
    path = run.analysis_dir / "mechanism.json"
    if not path.exists():
        return RunProbes(AnalyzeConfig(), None, None,
                         f"No analysis at {path}: run `binding analyze --run {run.path} --out {run.analysis_dir}` "
                         "(1-2 minutes for a cpu run) to see the probes here.")
    mech = read_json(path, "mechanism")
    acfg = cfglib.from_dict(AnalyzeConfig, mech["analyze"])
    batch = analysis_samples(run.cfg.task, acfg, analysis_n_range(run.cfg, acfg))["probes"]
    return RunProbes(acfg, mech, fitted_probes(run.model, batch, acfg.seed),
                     f"Probes refitted as `binding analyze` fitted them ({Path(path)}; "
                     f"{acfg.probe_samples} examples, N {mech['n_range'][0]}..{mech['n_range'][1]}).")


def probe_predictions(run: ExploredRun, probes: RunProbes, batch: Batch) -> list[dict] | None:
    """Per example: target -> per point the probe's prediction (colour / shape index, or slot)."""
    if probes.fitted is None:
        return None
    acts = list(query_activations(run.model, batch).values())
    preds = {t: np.stack([clf.predict(scaler.transform(a)) for (scaler, clf), a in zip(probes.fitted[t], acts)], 1)
             for t in TARGETS}                                          # [B, points]
    return [{t: preds[t][i].tolist() for t in TARGETS} for i in range(len(batch))]


def analysis_summary(probes: RunProbes) -> dict | None:
    """What the page quotes from mechanism.json: outcome shares per layer, peak, probe accuracies."""
    m = probes.mechanism
    if m is None:
        return None
    return {"n_pairs": m["n_pairs"], "n_range": m["n_range"], "peak_layer": m["peak_layer"],
            "ratio": m["symbolic_positional_ratio"], "point": probes.settings.point,
            "ratio_text": ratio_text(m["symbolic_positional_ratio"], m["proportions_by_layer"][m["peak_layer"]],
                                     m["n_pairs"]),
            "position": probes.settings.position,
            "proportions_by_layer": [{o: round(v, 3) for o, v in p.items()} for p in m["proportions_by_layer"]],
            "probe_accuracy": {t: [round(a, 3) for a in acc] for t, acc in m["probes"]["accuracy"].items()},
            "probe_chance": {t: round(c, 3) for t, c in m["probes"]["chance"].items()}}
