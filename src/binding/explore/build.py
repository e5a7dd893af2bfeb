"""`binding explore`: the data of the page, example by example, and the page itself.

    binding explore --run runs/t0 --out runs/t0/explore                   # one run
    binding explore --run A --run2 B --out runs/a-vs-b                    # two runs on the same examples

Every number on the page comes from the project's own functions: the examples from
`evaluate.eval_batches` (the final evaluation's held-out stream), readings from the model's hook
points (`hooks.run_with_cache`), interventions from `interp.counterfactual` and
`interp.interventions`, probes refitted with `interp.probes` on `interp.analyze`'s samples.
"""
from __future__ import annotations

from pathlib import Path

from lab.errors import UserError

from ..diagnostics import attention_targets
from ..interp.counterfactual import OUTCOMES
from ..task import Vocab, describe
from .examples import NGroup, n_values, pick_examples
from .image_twin import image_examples, image_trained
from .inputs import ExploredRun, check_out, check_same_task, load_run
from .page import AttentionBlob, vocab_entries, write_page
from .patching import example_pairs, pair_entries, patch_entries
from .probing import RunProbes, analysis_summary, load_probes, probe_predictions
from .readings import ATTENTION_LEVELS, read_examples
from .slices import run_slices


def explore(run: str | Path, out: str | Path, run2: str | Path | None = None, analysis: str | Path | None = None,
            analysis2: str | Path | None = None, per_n: int = 4, pool: int = 64, seed: int = 0) -> dict:
    """Write OUT/index.html; returns its path, size and counts."""
    if per_n < 1 or pool < per_n:
        raise UserError(f"need 1 <= --per-n <= --pool, got --per-n {per_n} --pool {pool}")
    out = check_out(out)
    runs = [load_run(run, analysis)] + ([load_run(run2, analysis2, "--run2")] if run2 else [])
    check_same_task(runs)
    task = runs[0].cfg.task
    groups = pick_examples(task, [r.model for r in runs], per_n, pool, runs[0].seed)
    probes = [load_probes(r) for r in runs]
    blob = AttentionBlob()
    examples = [e for g in groups for e in group_entries(g, runs, probes, blob, seed)]
    data = {"vocab": vocab_entries(Vocab.of(task)), "id_n": list(task.id_n), "ood_n": list(task.ood_n),
            "n_values": n_values(task), "examples": examples, "pair_seed": seed,
            "attention_levels": ATTENTION_LEVELS, "outcomes": list(OUTCOMES),
            "runs": [run_entry(r, i, p, groups) for i, (r, p) in enumerate(zip(runs, probes))],
            "images": image_examples(runs, n_values(task), seed)}
    return write_page(out, data, blob)


def run_entry(run: ExploredRun, index: int, probes: RunProbes, groups: list[NGroup]) -> dict:
    m = run.cfg.model
    return {"name": run.name, "path": str(run.path), "seed": run.seed, "layers": m.n_layers, "heads": m.n_heads,
            "image_trained": image_trained(run.path), "slices": run_slices(run, index, groups),
            "analysis": analysis_summary(probes), "probe_note": probes.note}


def group_entries(group: NGroup, runs: list[ExploredRun], probes: list[RunProbes], blob: AttentionBlob,
                  seed: int) -> list[dict]:
    """The page's entries for the examples shown at one N."""
    task = runs[0].cfg.task
    vocab = Vocab.of(task)
    batch = group.shown_batch()
    readings = [read_examples(r.model, batch) for r in runs]
    probe_preds = [probe_predictions(r, p, batch) for r, p in zip(runs, probes)]
    found = example_pairs(task, batch, seed)
    pair_of, pairs, patches = {}, [], [[] for _ in runs]
    if found is not None:
        pr, rows = found
        pair_of = {int(row): p for p, row in enumerate(rows)}
        pairs = pair_entries(task, pr)
        patches = [patch_entries(r.model, pr, p.settings) for r, p in zip(runs, probes)]
    marks = attention_targets(batch)
    lo, hi = task.id_n
    entries = []
    for i in range(len(batch)):
        p = pair_of.get(i)
        entries.append({
            "n": group.n, "split": "ID" if lo <= group.n <= hi else "OOD", "tokens": batch.tokens[i].tolist(),
            "query": int(batch.query_pos[i]), "answer": int(batch.answer[i]), "slot": int(batch.query_slot[i]),
            "text": describe(batch, i, vocab), "marks": {k: int(v[i]) for k, v in marks.items()},
            "pair": None if p is None else pairs[p],
            "runs": [{"prediction": rd["prediction"][i], "attention": blob.add(rd["attention"][i]),
                      "lens": rd["lens"][i], "probes": None if pp is None else pp[i],
                      "patch": None if p is None else patches[r][p]}
                     for r, (rd, pp) in enumerate(zip(readings, probe_preds))]})
    return entries
