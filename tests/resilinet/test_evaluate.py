"""Spec section 5: exact expected accuracy, the guess for cut-off clouds, Monte-Carlo, cost."""
import itertools
import math

import pytest
import torch

from resilinet.evaluate import (evaluate_model, exact_pattern_accuracies, expected_accuracy,
                                monte_carlo_accuracy, naive_pattern_accuracies)
from resilinet.hyperconnections import METHODS

from resilinet_toys import toy_model, toy_splits

CASES = [(arch, m, {}) for arch in ("mlp", "resnet18", "mobilenet") for m in METHODS]
CASES += [(arch, m, {"partition": 2}) for arch in ("mlp", "resnet18", "mobilenet") for m in ("deepfogguard", "resilinet")]
CASES += [("resnet18", m, {"resnet": "preact"}) for m in ("deepfogguard", "resilinet")]


@pytest.mark.parametrize("arch,method,kw", CASES)
def test_exact_evaluation_agrees_with_brute_force(arch, method, kw):
    model = toy_model(arch, method, skips="all", **kw)
    sp = toy_splits(image=arch != "mlp")
    exact = exact_pattern_accuracies(model, sp.x_test, sp.y_test, 0.25, batch_size=7)
    naive = naive_pattern_accuracies(model, sp.x_test, sp.y_test, 0.25, batch_size=7)
    assert [(r.alive, r.accuracy, r.connected) for r in exact] == [(r.alive, r.accuracy, r.connected) for r in naive]


def test_brute_force_expected_accuracy_by_hand():
    """E[acc] = sum over patterns of P(pattern) x accuracy, computed here from scratch per sample."""
    model = toy_model("mlp", "resilinet")
    sp = toy_splits()
    topo, r = model.topology, (0.85, 0.80, 0.78)
    guess = sp.guess_accuracy()
    want = 0.0
    for alive in itertools.product((1, 0), repeat=3):
        p = math.prod(ri if a else 1 - ri for a, ri in zip(alive, r))
        if not topo.connected(alive):
            want += p * guess
            continue
        with torch.no_grad():
            pred = model(sp.x_test, dict(zip(topo.failure_prone, map(float, alive)))).argmax(1)
        want += p * int((pred == sp.y_test).sum()) / len(sp.y_test)
    got = expected_accuracy(exact_pattern_accuracies(model, sp.x_test, sp.y_test, guess), r)
    assert got == pytest.approx(want, abs=1e-12)


def test_patterns_without_a_path_get_the_guess_accuracy():
    model = toy_model("mlp", "deepfogguard")
    sp = toy_splits()
    guess = sp.guess_accuracy()
    p = sp.class_prior()
    assert guess == pytest.approx(float((p * p).sum()))
    for res in exact_pattern_accuracies(model, sp.x_test, sp.y_test, guess):
        if not res.connected:
            assert res.accuracy == guess
    assert sum(not r.connected for r in exact_pattern_accuracies(model, sp.x_test, sp.y_test, guess)) == 3


def test_vanilla_expected_accuracy_is_p_all_alive_times_clean_plus_rest_times_guess():
    model = toy_model("resnet18", "vanilla")
    ev = evaluate_model(model, toy_splits(image=True), eval_batch_size=16)
    for name, r in ev["reliability_settings"].items():
        p_all = math.prod(r)
        want = p_all * ev["clean_accuracy"] + (1 - p_all) * ev["guess_accuracy"]
        assert abs(ev["expected_accuracy"][name] - want) <= 1e-9
    assert ev["checks"]["vanilla_identity_holds"] and ev["checks"]["inside_brackets"]
    assert ev["checks"]["p_no_path_matches_spec"]


def test_evaluation_json_has_the_documented_fields():
    ev = evaluate_model(toy_model("mlp", "resilinet"), toy_splits())
    assert ev["nodes"] == ["f1", "f2", "e"]
    assert len(ev["patterns"]) == 8 and ev["patterns"][0]["alive"] == [1, 1, 1]
    assert set(ev["patterns"][0]) >= {"alive", "accuracy", "connected"}
    assert set(ev["expected_accuracy"]) == set(ev["reliability_settings"]) == {"no failure", "normal", "poor", "hazardous"}
    assert ev["expected_accuracy"]["no failure"] == ev["clean_accuracy"]
    assert 0 < ev["guess_accuracy"] < 1


def test_monte_carlo_converges_to_the_exact_value():
    torch.manual_seed(0)
    model = toy_model("mlp", "resilinet")
    sp = toy_splits(n=400)
    r = (0.6, 0.5, 0.7)  # low reliabilities: many failure patterns get sampled
    exact = expected_accuracy(exact_pattern_accuracies(model, sp.x_test, sp.y_test, sp.guess_accuracy()), r)
    mc = monte_carlo_accuracy(model, sp.x_test, sp.y_test, sp.class_prior(), r, draws=400, seed=1)
    n = 400 * len(sp.y_test)
    assert abs(mc - exact) < 4 * math.sqrt(0.25 / n) + 1e-3  # 4 sigma of a Bernoulli mean


def test_exact_evaluation_reuses_node_outputs_instead_of_2_to_the_n_passes():
    model = toy_model("mlp", "resilinet")
    sp = toy_splits()
    counts = {}
    exact_pattern_accuracies(model, sp.x_test, sp.y_test, 0.25, batch_size=len(sp.y_test), counts=counts)
    # one batch: the edge runs once (not 8x); f2 per alive state of e; the cloud only for the
    # 5 connected patterns' distinct inputs (naive: 8 of everything).
    assert counts == {"iot": 1, "e": 1, "f2": 2, "f1": 3, "cloud": 5}
    vanilla = {}
    exact_pattern_accuracies(toy_model("mlp", "vanilla"), sp.x_test, sp.y_test, 0.25,
                             batch_size=len(sp.y_test), counts=vanilla)
    assert vanilla == {"iot": 1, "e": 1, "f2": 1, "f1": 1, "cloud": 1}  # only all-alive is connected


def test_skip_subset_changes_connectivity():
    model = toy_model("mlp", "resilinet", skips="iot-f2")
    ev = evaluate_model(model, toy_splits())
    conn = {tuple(p["alive"]): p["connected"] for p in ev["patterns"]}
    assert conn[(1, 1, 0)] and not conn[(1, 0, 1)]
    assert "p_no_path_matches_spec" not in ev["checks"]  # the spec tabulates only none / all skips
    assert ev["checks"]["inside_brackets"]
