"""Linear probes (spec §5): what the query position's residual stream holds, layer by layer.

At the query token, after the embedding and after every block, a multinomial logistic regression
(scikit-learn) is fit on three quarters of the examples and scored on the rest, for three targets:

    colour   the queried colour (the query token itself: decodable early by construction)
    shape    the shape of the queried object (the first hop's result)
    slot     the ordinal slot of the queried object in the context (what a positional binding carries)

"chance" is the held-out accuracy of always answering the most common training label.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..hooks import run_with_cache
from ..model import Transformer
from ..task import Batch

TARGETS = ("colour", "shape", "slot")


def probe_points(model: Transformer) -> list[str]:
    return ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]


def targets(batch: Batch) -> dict[str, np.ndarray]:
    rows = torch.arange(len(batch))
    return {"colour": batch.colors[rows, batch.query_slot].numpy(),
            "shape": batch.shapes[rows, batch.query_slot].numpy(),
            "slot": batch.query_slot.numpy()}


@torch.no_grad()
def query_activations(model: Transformer, batch: Batch) -> dict[str, np.ndarray]:
    points = probe_points(model)
    _, cache = run_with_cache(model, points, batch.tokens, positions=batch.query_pos)
    rows = torch.arange(len(batch))
    return {p: cache[p][rows, batch.query_pos].float().numpy() for p in points}


def fit_probe_model(x_train, y_train, seed: int) -> tuple[StandardScaler, LogisticRegression]:
    """One probe: standardised features, then a multinomial logistic regression."""
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=500, C=1.0, random_state=seed)
    clf.fit(scaler.transform(x_train), y_train)
    return scaler, clf


def fit_probe(x_train, y_train, x_test, y_test, seed: int) -> float:
    scaler, clf = fit_probe_model(x_train, y_train, seed)
    return float(clf.score(scaler.transform(x_test), y_test))


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) example indices: a seeded 3/4 : 1/4 split."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = (3 * n) // 4
    return perm[:cut], perm[cut:]


def probes(model: Transformer, batch: Batch, seed: int = 0) -> dict:
    """Held-out probe accuracy per target and layer point; needs a few thousand examples."""
    model.eval()
    acts = query_activations(model, batch)
    ys = targets(batch)
    tr, te = split(len(batch), seed)
    out = {"points": list(acts), "n_train": len(tr), "n_test": len(te), "accuracy": {}, "chance": {}}
    for name, y in ys.items():
        values, counts = np.unique(y[tr], return_counts=True)
        out["chance"][name] = float((y[te] == values[counts.argmax()]).mean())
        out["accuracy"][name] = [fit_probe(a[tr], y[tr], a[te], y[te], seed) for a in acts.values()]
    return out


def fitted_probes(model: Transformer, batch: Batch, seed: int = 0) -> dict[str, list[tuple]]:
    """The probes `probes` scores, fitted on the same training split: target -> per point
    (scaler, classifier), to read out other examples (`query_activations` of them)."""
    model.eval()
    acts = query_activations(model, batch)
    tr, _ = split(len(batch), seed)
    return {name: [fit_probe_model(a[tr], y[tr], seed) for a in acts.values()]
            for name, y in targets(batch).items()}
