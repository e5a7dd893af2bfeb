"""The mechanism analysis: counterfactual pairs, interchange interventions, knockout, probes, `analyze`."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binding.cli import main as binding_main
from binding.config import preset
from binding.interp.counterfactual import OUTCOMES, STRATEGIES, classify, make_pairs
from binding.interp.interventions import (naive_sweep, patched_logits, peak_and_ratio, ratio_text, resid_points,
                                          sweep)
from binding.interp.knockout import knocked_out_predictions, knockout
from binding.task import TaskConfig, Vocab, sample_batch
from binding.run import build_model
from binding.train import train
from lab.errors import UserError

CPU_TASK = preset("cpu").task


def _random_model(cfg=None, seed=0):
    cfg = cfg or preset("cpu")
    torch.manual_seed(seed)
    return build_model(cfg).eval()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.integers(1, 8), width=st.integers(2, 16))
def test_every_counterfactual_separates_the_strategies(seed, lo, width):
    hi = min(lo + width, 24)
    pairs = make_pairs(CPU_TASK, 16, seed, (lo, hi))
    pred = torch.stack([pairs.predicted[s] for s in STRATEGIES])           # [4, B]
    for b in range(len(pairs)):
        assert len(set(pred[:, b].tolist())) == 4, "two strategies predict the same item"
    o, c = pairs.original, pairs.counterfactual
    assert torch.equal(pairs.predicted["no_effect"], o.answer)
    assert torch.equal(pairs.predicted["reflexive"], c.answer)
    assert torch.equal(o.n, c.n) and torch.equal(o.query_pos, c.query_pos)
    item0 = Vocab.of(CPU_TASK).item0
    rows = torch.arange(len(pairs))
    # the counterfactual query is the original's object j (same colour and shape), now at slot k
    assert torch.equal(c.colors[rows, c.query_slot], o.colors[rows, pairs.symbolic_slot])
    assert torch.equal(c.shapes[rows, c.query_slot], o.shapes[rows, pairs.symbolic_slot])
    assert torch.equal(c.query_slot, pairs.cf_slot)
    assert torch.equal(pairs.predicted["positional"], item0 + o.items[rows, pairs.cf_slot])
    assert (o.n >= 3).all()


def test_pairs_are_deterministic_for_a_seed():
    a, b = make_pairs(CPU_TASK, 50, 7), make_pairs(CPU_TASK, 50, 7)
    assert torch.equal(a.original.tokens, b.original.tokens)
    assert torch.equal(a.counterfactual.tokens, b.counterfactual.tokens)
    assert not torch.equal(a.original.tokens, make_pairs(CPU_TASK, 50, 8).original.tokens)


def test_impossible_pair_ranges_are_clear_errors():
    with pytest.raises(UserError, match="N >= 3"):
        make_pairs(CPU_TASK, 10, 0, (2, 2))
    with pytest.raises(UserError, match="distinct predicted items"):
        make_pairs(TaskConfig(n_colors=8, n_shapes=8, n_items=3, train_n=(2, 3), id_n=(2, 3), ood_n=(3, 3)), 5, 0)


def test_classify_names_each_strategy_and_other():
    pairs = make_pairs(CPU_TASK, 5, 0)
    for s in STRATEGIES:
        out = classify(pairs.predicted[s], pairs)
        assert out[s].all() and not out["other"].any()
    out = classify(torch.zeros(5, dtype=torch.long), pairs)     # <pad>: no strategy's item
    assert out["other"].all()


def test_patching_the_originals_own_activations_changes_nothing():
    model = _random_model()
    pairs = make_pairs(CPU_TASK, 64, 1)
    clean = model(pairs.original.tokens, positions=pairs.original.query_pos)
    from binding.hooks import run_with_cache
    for point in resid_points(model) + ["blocks.1.hook_attn_out", "blocks.2.hook_mlp_out"]:
        _, cache = run_with_cache(model, [point], pairs.original.tokens)
        for position in ("query", "all"):
            patched = patched_logits(model, pairs, point, cache[point], position)
            torch.testing.assert_close(patched, clean, rtol=0, atol=1e-6)


def test_patching_the_last_layers_full_residual_gives_the_counterfactuals_logits():
    model = _random_model()
    pairs = make_pairs(CPU_TASK, 64, 2)
    from binding.hooks import run_with_cache
    last = resid_points(model)[-1]
    cf_logits, cache = run_with_cache(model, [last], pairs.counterfactual.tokens,
                                      positions=pairs.counterfactual.query_pos)
    patched = patched_logits(model, pairs, last, cache[last])
    torch.testing.assert_close(patched, cf_logits, rtol=0, atol=1e-5)
    # and it is an intervention: the clean original's logits differ
    assert not torch.allclose(model(pairs.original.tokens, positions=pairs.original.query_pos), cf_logits, atol=1e-3)


def test_batched_sweep_agrees_with_the_one_pair_at_a_time_loop():
    model = _random_model(seed=3)
    pairs = make_pairs(CPU_TASK, 80, 3)
    # a random model answers almost nothing correctly: count pairs by taking its answers as the
    # right ones, where the four strategies still predict four different items
    pred_o = model(pairs.original.tokens, positions=pairs.original.query_pos).argmax(-1)
    pred_c = model(pairs.counterfactual.tokens, positions=pairs.counterfactual.query_pos).argmax(-1)
    pairs.original.answer, pairs.counterfactual.answer = pred_o, pred_c
    pairs.predicted["no_effect"], pairs.predicted["reflexive"] = pred_o, pred_c
    distinct = [len(set(torch.stack([pairs.predicted[s][b] for s in STRATEGIES]).tolist())) == 4
                for b in range(len(pairs))]
    pairs = pairs.select(torch.nonzero(torch.tensor(distinct)).flatten())
    assert len(pairs) >= 20
    sw = sweep(model, pairs)
    assert sw.used.all() and sw.forward_passes == model.cfg.n_layers + 2
    naive = naive_sweep(model, pairs)
    for o in OUTCOMES:
        assert [int(h.sum()) for h in sw.outcomes[o]] == naive[o]
    # resuming from a patched residual (resid points) and patching by hook (the rest) agree too
    points = ["blocks.0.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.2.hook_mlp_out"]
    other, naive_other = sweep(model, pairs, points), naive_sweep(model, pairs, points)
    for o in OUTCOMES:
        assert [int(h.sum()) for h in other.outcomes[o]] == naive_other[o]
    props = sw.proportions()
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in props), props
    assert props[-1]["reflexive"] == 1.0        # the full final residual: the counterfactual's own answer


def test_peak_layer_and_ratio():
    zero = dict.fromkeys(OUTCOMES, 0.0)
    props = [{**zero, "symbolic": 0.2, "positional": 0.1}, {**zero, "symbolic": 0.3, "positional": 0.6},
             {**zero, "reflexive": 1.0}]
    assert peak_and_ratio(props) == (1, 0.5)
    assert peak_and_ratio([{**zero, "symbolic": 0.5}]) == (0, None)


def test_an_undefined_ratio_reads_the_same_everywhere_with_its_counts():
    # every report and console line uses ratio_text: no "inf", no "None", no "undefined"
    assert ratio_text(1.5, {"symbolic": 0.6, "positional": 0.4}, 1000) == "1.50"
    assert ratio_text(None, {"symbolic": 0.99, "positional": 0.0}, 1000) == "990 : 0 pairs, no positional"
    assert ratio_text(None, {"symbolic": 0.0, "positional": 0.0}, 1000) == "0 : 0 pairs, neither"
    assert ratio_text(None, {"symbolic": 0.0, "positional": 0.0}, 0) == "no pair counted"


def test_knockout_of_nothing_changes_nothing_and_of_everything_changes_predictions():
    model = _random_model()
    batch = sample_batch(CPU_TASK, 128, __import__("numpy").random.default_rng(0), (3, 8), split="eval")
    clean = model(batch.tokens, positions=batch.query_pos).argmax(-1)
    for layer in range(model.cfg.n_layers):
        assert torch.equal(knocked_out_predictions(model, batch, layer, "none"), clean)
    knocked = torch.stack([knocked_out_predictions(model, batch, l, g) for l in range(4)
                           for g in ("context", "associations")])
    assert (knocked != clean).any()
    res = knockout(model, batch)
    assert set(res["accuracy_by_layer"]) == {"context", "associations"}
    assert len(res["accuracy_by_layer"]["context"]) == model.cfg.n_layers


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    train(preset("smoke"), out, seed=0, quiet=True)
    return out


def test_analyze_writes_mechanism_json_figures_and_summary(smoke_run, tmp_path, capsys):
    out = tmp_path / "mech"
    binding_main_rc = _run(["analyze", "--run", str(smoke_run), "--out", str(out), "--pairs", "60",
                            "--probe-samples", "200"])
    assert binding_main_rc == 0
    res = json.loads((out / "mechanism.json").read_text())
    for key in ("layers", "proportions_by_layer", "peak_layer", "symbolic_positional_ratio", "n_pairs",
                "knockout", "probes"):
        assert key in res
    assert res["layers"] == [0, 1] and len(res["proportions_by_layer"]) == 2
    for p in res["proportions_by_layer"]:
        assert set(p) == set(OUTCOMES)
        if res["n_pairs"]:
            assert abs(sum(p.values()) - 1) < 1e-9
    assert res["forward_passes"] == 4
    assert set(res["probes"]["accuracy"]) == {"colour", "shape", "slot"}
    # the query token's own colour is in the residual from the start
    assert res["probes"]["accuracy"]["colour"][0] > 0.9
    for f in ("outcomes.png", "knockout.png", "probes.png", "summary.md"):
        assert (out / f).stat().st_size > 0
    assert "peak layer" in capsys.readouterr().out


def test_analyze_errors_are_one_line(tmp_path, capsys):
    assert _run(["analyze", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "argument --run:" in err and "missing not found" in err
    (tmp_path / "empty").mkdir()
    assert _run(["analyze", "--run", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a trained run" in capsys.readouterr().err


def _run(argv):
    with pytest.raises(SystemExit) as e:
        binding_main(argv)
    return e.value.code
