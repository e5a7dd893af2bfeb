"""`binding explore`: the page shows what the interp API computes, example by example."""
from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from binding.cli import main as binding_main
from binding.config import AnalyzeConfig, preset
from binding.explore.build import explore
from binding.explore.examples import pick_examples
from lab.headless import HeadlessPage, unavailable
from binding.explore.inputs import load_run
from binding.explore.probing import load_probes
from binding.interp.analyze import analysis_n_range, analysis_samples, analyze
from binding.interp.counterfactual import OUTCOMES, STRATEGIES, classify, pairs_of
from binding.interp.interventions import patch_each_point, resid_points
from binding.interp.probes import probes
from binding.run import load_trained
from binding.task import Vocab, describe, sample_batch
from binding.train import train

READY = "document.body.dataset.ready === '1'"
needs_chromium = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    train(preset("smoke"), out, seed=0, quiet=True)
    return out


@pytest.fixture(scope="module")
def smoke_page(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("page")
    explore(smoke_run, out, per_n=4, pool=32)
    return out / "index.html"


def _expected(run_dir, n: int, k: int) -> dict:
    """What the Python API says about the k-th example shown at N = n: its text and, per layer,
    the patched answer and its outcome for its counterfactual pair."""
    model, cfg, seed = load_trained(run_dir)
    group = next(g for g in pick_examples(cfg.task, [model], 4, 32, seed) if g.n == n)
    one = group.shown_batch().select([k])
    pairs, _ = pairs_of(cfg.task, one, seed=0)
    patched = patch_each_point(model, pairs, resid_points(model))
    outcomes = []
    for pred in patched.by_point:
        hits = classify(pred, pairs)
        outcomes.append((int(pred[0]), next(o for o in OUTCOMES if hits[o][0])))
    return {"text": describe(one, 0, Vocab.of(cfg.task)), "outcomes": outcomes}


def _shown(page: HeadlessPage, layers: int) -> dict:
    text = page.evaluate("document.getElementById('example-text').textContent")
    cells = page.evaluate(f"[...Array({layers}).keys()].map(l => {{ const c = document.getElementById('patch-0-' + l); "
                          "return [Number(c.dataset.token), c.dataset.outcome]; })")
    return {"text": text, "outcomes": [tuple(c) for c in cells]}


@needs_chromium
def test_page_shows_the_example_and_its_interventions_as_the_api_computes_them(smoke_run, smoke_page):
    layers = preset("smoke").model.n_layers
    first, second = _expected(smoke_run, 3, 0), _expected(smoke_run, 3, 1)
    with HeadlessPage(smoke_page.as_uri() + "#n=3&example=1") as page:
        page.wait_for(READY)
        assert _shown(page, layers) == first
        page.evaluate("document.getElementById('next').click()")
        assert _shown(page, layers) == second
        assert first["text"] != second["text"]
        assert not page.errors, page.errors


@needs_chromium
def test_every_control_and_section_runs_without_a_javascript_error(smoke_page):
    with HeadlessPage(smoke_page.as_uri()) as page:
        page.wait_for(READY)
        texts = set()
        for _ in range(6):
            page.evaluate("document.getElementById('next').click()")
            texts.add(page.evaluate("document.getElementById('example-text').textContent"))
        page.evaluate("document.getElementById('mistake').click()")   # the smoke model makes plenty
        assert page.evaluate("document.querySelector('#answers .bad') !== null")
        page.evaluate("document.querySelector('.attn-run .tok[data-pos=\"1\"]').dispatchEvent(new Event('click'))")
        assert "from position 1" in page.evaluate("document.querySelector('.attn-run h3').textContent")
        page.evaluate("document.querySelector('.attn-run .strip[data-layer=\"0\"][data-head=\"1\"]')"
                      ".dispatchEvent(new Event('click'))")
        page.evaluate("const s = document.getElementById('n-select'); s.value = s.options[s.options.length - 1].value;"
                      "s.dispatchEvent(new Event('change'))")
        assert "(OOD)" in page.evaluate("document.getElementById('position').textContent")
        assert len(texts) == 6
        assert not page.errors, page.errors


@needs_chromium
def test_a_javascript_error_would_be_seen(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    with HeadlessPage(bad.as_uri()) as page:
        page.wait_for("document.readyState === 'complete'")
        assert any("undefinedFunction" in e for e in page.errors)


def test_the_page_is_self_contained_and_small(smoke_page):
    html = smoke_page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load anything"
    assert "fetch(" not in html and "XMLHttpRequest" not in html
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S).group(1))
    assert {e["n"] for e in data["examples"]} == set(range(2, 7))   # every ID and OOD N of the smoke task
    assert len(html) < 300_000


def test_probes_are_refitted_as_analyze_fitted_them(tmp_path):
    run = tmp_path / "run"
    train(preset("smoke"), run, seed=0, quiet=True)
    acfg = AnalyzeConfig(n_pairs=50, probe_samples=200, knockout_samples=50)
    mech = analyze(run, run / "mechanism", acfg)
    explored = load_run(run)
    refit = load_probes(explored)
    assert refit.fitted is not None and refit.settings == acfg
    batch = analysis_samples(explored.cfg.task, acfg, analysis_n_range(explored.cfg, acfg))["probes"]
    assert probes(explored.model, batch, acfg.seed)["accuracy"] == mech["probes"]["accuracy"]
    page = explore(run, tmp_path / "page", per_n=1, pool=4)
    assert '"probes":{"colour":' in (tmp_path / "page" / "index.html").read_text()
    assert page["examples"] >= 5


def test_a_run_without_analysis_says_how_to_get_one(smoke_run):
    note = load_probes(load_run(smoke_run)).note
    assert "binding analyze --run" in note and "mechanism" in note


def test_counterfactuals_of_given_examples_separate_the_strategies():
    task = preset("cpu").task
    batch = sample_batch(task, 64, np.random.default_rng(0), (2, 12), split="eval")
    pairs, rows = pairs_of(task, batch, seed=3)
    assert torch.equal(rows, torch.nonzero(batch.n >= 3).flatten())
    assert torch.equal(pairs.original.tokens[:, :batch.tokens.shape[1]], batch.tokens[rows])
    pred = torch.stack([pairs.predicted[s] for s in STRATEGIES])
    assert all(len(set(pred[:, b].tolist())) == 4 for b in range(len(pairs)))
    alone, _ = pairs_of(task, batch.select(rows[5:6]), seed=3)   # depends on the example, not the batch
    width = alone.counterfactual.tokens.shape[1]
    assert torch.equal(alone.counterfactual.tokens[0], pairs.counterfactual.tokens[5, :width])


@pytest.mark.parametrize("make_args, message", [
    (lambda t, run: ["--run", str(t / "missing"), "--out", str(t / "o")], "missing not found"),
    (lambda t, run: ["--run", str(t), "--out", str(t / "o")], "is not a trained run"),
    (lambda t, run: ["--run", str(run / "config.json"), "--out", str(t / "o")], "is a file"),
    (lambda t, run: ["--run", str(run), "--out", str(run / "config.json")], "--out"),
])
def test_bad_input_is_one_clear_error(smoke_run, tmp_path, capsys, make_args, message):
    with pytest.raises(SystemExit) as exit_:
        binding_main(["explore", *make_args(tmp_path, smoke_run)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
@needs_chromium
def test_an_image_trained_stage_shows_its_images_beside_the_text_twins(tmp_path):
    assert binding_main_rc(["curriculum", "--preset", "smoke", "--regime", "image-text", "--out", str(tmp_path),
                            "--quiet"]) == 0
    text, mix = tmp_path / "seed0" / "text", tmp_path / "seed0" / "text" / "image" / "mix20"
    explore(mix, tmp_path / "page", run2=text, per_n=2, pool=8)
    with HeadlessPage((tmp_path / "page" / "index.html").as_uri()) as page:
        page.wait_for(READY)
        assert page.evaluate("document.querySelectorAll('#images-body img').length") >= 1
        assert page.evaluate("document.querySelectorAll('.attn-run').length") == 2
        assert "on the image" in page.evaluate("document.getElementById('images-body').textContent")
        assert not page.errors, page.errors


def binding_main_rc(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        binding_main(argv)
    return exit_.value.code


def test_the_explorer_imports_no_training_code():
    """As tests/test_architecture.py checks for analyze and the reports: a page needs only run folders."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "test_architecture.py"
    spec = importlib.util.spec_from_file_location("architecture", path)
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    graph = arch._graph(top_level_only=False)
    for module in [m for m in graph if m.startswith("binding.explore")]:
        assert not arch._reachable(graph, module) & arch.TRAINING, module


def test_reproduce_gets_a_page_per_regime_beside_text_only_when_the_task_is_the_same(smoke_run, tmp_path):
    from binding.config import make_config
    from binding.explore.regimes import regime_pages, report_section

    other_task = tmp_path / "wider"
    train(make_config("smoke", ["task.n_items=10"]), other_task, seed=0, quiet=True)
    table = []
    for regime, final in (("text-only", smoke_run), ("image-text", smoke_run), ("text-only+expand", other_task)):
        (tmp_path / "seed0" / regime).mkdir(parents=True)
        (tmp_path / "seed0" / regime / "regime.json").write_text(json.dumps({"final_run_dir": str(final)}))
        table.append({"regime": regime, "seeds": [0], "run_dirs": [str(tmp_path / "seed0" / regime)]})
    pages = regime_pages(tmp_path, table)
    assert [p["beside"] for p in pages] == ["", "text-only", ""]
    section = report_section(pages)
    for regime in ("text-only", "image-text", "text-only+expand"):
        assert f"(explore/{regime}-seed0/index.html)" in section
        assert (tmp_path / "explore" / f"{regime}-seed0" / "index.html").exists()
