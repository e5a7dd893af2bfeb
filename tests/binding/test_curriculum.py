"""Curricula (spec §3, §4): noise tokens, image contexts, feature grounding, stage order and reuse, resume."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from binding.config import AnalyzeConfig, preset
from binding.curriculum import ensure_encoder, regimes, run_regime
from binding.images.contexts import ImageSide, add_noise, model_inputs, sample_context
from binding.images.encoders import EncoderConfig
from binding.interp.compare import analyze_regimes, report_section
from binding.report import summarize, write_report
from binding.run import build_model
from binding.task import BOS, CTX_END, NOISE, QUE, Vocab, sample_batch
from binding.train import Stage, stage_losses, train_stage
from lab.errors import UserError

SMOKE = preset("smoke")
CUR = SMOKE.curriculum
D = SMOKE.model.d_model


def with_cur(cur):
    """The smoke config with another curriculum section."""
    return dataclasses.replace(SMOKE, curriculum=cur)


def rng(k):
    return np.random.default_rng(k)


def test_noise_fills_the_context_and_never_splits_a_pair():
    batch = sample_batch(SMOKE.task, 32, rng(0))
    cb = add_noise(batch, 12, rng(1))
    for i in range(len(batch)):
        n = int(batch.n[i])
        row, orig = cb.tokens[i].tolist(), batch.tokens[i].tolist()
        end = row.index(CTX_END)
        assert row[0] == BOS and end == 1 + max(12, 2 * n)
        ctx = row[1:end]
        assert ctx.count(NOISE) == max(0, 12 - 2 * n)
        assert [t for t in ctx if t != NOISE] == orig[1:1 + 2 * n]          # objects keep their order
        for j, t in enumerate(ctx):                                          # colour then its shape, adjacent
            if Vocab.of(SMOKE.task).color0 <= t < Vocab.of(SMOKE.task).shape0:
                assert ctx[j + 1] == orig[orig.index(t) + 1]
        assert row[end:int(cb.query_pos[i]) + 1] == orig[1 + 2 * n:4 + 4 * n]  # associations and query intact
        assert (~cb.attendable[i]).sum() == ctx.count(NOISE)
        assert all(row[p] == NOISE for p in torch.nonzero(~cb.attendable[i]).flatten().tolist())


def test_noise_tokens_are_never_attended_and_carry_no_loss():
    torch.manual_seed(0)
    model = build_model(SMOKE).eval()
    cb = add_noise(sample_batch(SMOKE.task, 16, rng(2)), 14, rng(3))
    noise = ~cb.attendable
    other = dataclasses.replace(cb, tokens=cb.tokens.masked_scatter(
        noise, torch.randint(5, model.vocab_size, (int(noise.sum()),))))
    assert not torch.equal(other.tokens, cb.tokens)
    with torch.no_grad():
        a = model(cb.tokens, attendable=cb.attendable)
        b = model(other.tokens, attendable=other.attendable)
        assert torch.allclose(a[~noise], b[~noise], atol=1e-5)                # nothing else sees them
        assert not torch.allclose(a[noise], b[noise])
        la = stage_losses(model, None, cb, SMOKE, True, 0.0, "cpu")[1]
        lb = stage_losses(model, None, other, SMOKE, True, 0.0, "cpu")[1]
    assert la["prev_token_loss"] == lb["prev_token_loss"] and la["loss"] == lb["loss"]


def test_image_tokens_sit_between_bos_and_ctx_end():
    torch.manual_seed(0)
    side = ImageSide(CUR.encoder, CUR.render, D)
    cb = sample_context("image", SMOKE.task, 8, rng(4), image_side=side)
    k = side.frontend.n_tokens
    assert k == CUR.render.n_tokens == cb.n_image_tokens
    assert (cb.tokens[:, 0] == BOS).all() and (cb.tokens[:, k + 1] == CTX_END).all()
    kw = model_inputs(cb, D, side, "cpu")
    assert kw["embeds_at"][:, 1:k + 1].all() and int(kw["embeds_at"].sum()) == 8 * k
    voc = Vocab.of(SMOKE.task)
    q = cb.tokens[torch.arange(8), cb.query_pos]
    assert ((q >= voc.color0) & (q < voc.shape0)).all()                      # the query is still a text colour
    model = build_model(SMOKE).eval()
    with torch.no_grad():                                                    # the image reaches the query
        a = model(**kw, positions=cb.query_pos)
        kw["input_embeds"] = torch.zeros_like(kw["input_embeds"])
        b = model(**kw, positions=cb.query_pos)
    assert not torch.allclose(a, b)


def test_image_shape_vocabulary_may_be_smaller_than_the_text_one():
    render = dataclasses.replace(CUR.render, n_shapes=5)
    side = ImageSide(EncoderConfig(kind="linear"), render, D)
    cb = sample_context("image", SMOKE.task, 64, rng(5), n_range=(2, 4), image_side=side)
    voc = Vocab.of(SMOKE.task)
    assert int(cb.text.shapes.max()) < 5
    shapes = cb.tokens[(cb.tokens >= voc.shape0) & (cb.tokens < voc.item0)]
    assert int(shapes.max()) < voc.shape0 + 5                                # text ids of the small vocabulary
    assert torch.equal(cb.text.answer, voc.item0 + cb.text.items[torch.arange(64), cb.text.query_slot])


def test_first_hop_queries_keep_their_marker_and_shape_answer_in_noise_and_image_contexts():
    render = dataclasses.replace(CUR.render, n_shapes=5)                     # answers re-read in text ids
    side = ImageSide(EncoderConfig(kind="linear"), render, D)
    voc = Vocab.of(SMOKE.task)
    for mode in ("noise", "image"):
        cb = sample_context(mode, SMOKE.task, 64, rng(6), noise_fill_to=12, image_side=side, n_range=(2, 4),
                            first_hop_fraction=0.5)
        rows = torch.arange(64)
        marker = cb.tokens[rows, cb.query_pos - 1]
        first = marker == CTX_END
        assert 10 < int(first.sum()) < 54 and ((marker == QUE) | first).all()
        shape_of_query = voc.shape0 + cb.text.shapes[rows, cb.text.query_slot]
        assert torch.equal(cb.text.answer[first], shape_of_query[first])
        assert torch.equal(cb.text.answer[~first], voc.item0 + cb.text.items[rows, cb.text.query_slot][~first])


def test_feature_grounding_trains_both_directions():
    torch.manual_seed(0)
    model, side = build_model(SMOKE), ImageSide(CUR.encoder, CUR.render, D)
    cb = sample_context("image", SMOKE.task, 16, rng(6), image_side=side)
    loss, stats = stage_losses(model, side, cb, SMOKE, False, 1.0, "cpu")
    assert stats["ground_img2text"] > 0 and stats["ground_text2img"] > 0
    loss.backward()
    assert side.where.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in side.frontend.projector.parameters())


def test_embedded_cnn_encoder_is_pretrained_once_and_frozen(tmp_path):
    cur = dataclasses.replace(CUR, encoder=EncoderConfig(kind="cnn"), encoder_pretrain_steps=2)
    cur = ensure_encoder(with_cur(cur), tmp_path / "enc").curriculum
    stamp = (tmp_path / "enc" / "encoder.safetensors").stat().st_mtime_ns
    again = ensure_encoder(with_cur(dataclasses.replace(cur, encoder=EncoderConfig(kind="cnn"))), tmp_path / "enc")
    assert again.curriculum.encoder.path
    assert (tmp_path / "enc" / "encoder.safetensors").stat().st_mtime_ns == stamp
    side = ImageSide(cur.encoder, cur.render, D)
    assert not any(p.requires_grad for p in side.frontend.encoder.parameters())
    cb = sample_context("image", SMOKE.task, 4, rng(7), image_side=side)
    assert model_inputs(cb, D, side, "cpu")["input_embeds"].shape == (4, cb.tokens.shape[1], D)


ENCODER_IN_A_PROCESS = """
import sys
from pathlib import Path
from binding.config import make_config
from binding.curriculum import ensure_encoder
ensure_encoder(make_config("cpu", ["curriculum.encoder_pretrain_steps=5"]), Path(sys.argv[1]))
"""


def test_the_pretrained_encoder_is_the_same_whatever_threads_the_process_started_with(tmp_path):
    """`binding reproduce` runs its jobs with one thread, a shell's `binding curriculum` with
    torch's default: the encoder (and so every image stage) must not depend on which started it."""
    blobs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", ENCODER_IN_A_PROCESS, str(tmp_path / threads)], check=True, env=env)
        blobs.append((tmp_path / threads / "encoder.safetensors").read_bytes())
    assert blobs[0] == blobs[1]


def test_curriculum_stage_order_and_shared_text_stage(tmp_path):
    table = regimes(CUR)
    assert [s.mode for s in table["noise-image-text"]] == ["text", "noise", "image", "mix"]
    assert [s.mode for s in table["image-text"]] == ["text", "image", "mix"]
    assert [s.mode for s in table["noise-text"]] == ["text", "noise"]
    assert [s.mode for s in table["mixed-from-start"]] == ["mix"]
    assert table["image-text"][-1].image_fraction == 0.2

    res = run_regime("noise-image-text", SMOKE, tmp_path, 0)
    seed_dir = tmp_path / "seed0"
    rows = [json.loads(line) for line in (seed_dir / "noise-image-text" / "metrics.jsonl").read_text().splitlines()]
    starts = [r for r in rows if r.get("event") == "stage_start"]
    assert [r["stage"] for r in starts] == ["text", "noise", "image", "mix20"]
    steps = [r["global_step"] for r in rows]
    assert steps == sorted(steps) and res["total_steps"] == sum(s["steps"] for s in res["stages"])
    assert [r["global_step"] for r in starts] == [s["start_step"] for s in res["stages"]]
    image_cfg = json.loads((seed_dir / "text/noise/image/config.json").read_text())
    assert image_cfg["parent"] == str(seed_dir / "text/noise") and image_cfg["stage"]["mode"] == "image"
    assert image_cfg["image_vocab"]["image_tokens"] == CUR.render.n_tokens

    text_results = seed_dir / "text" / "results.json"
    stamp = text_results.stat().st_mtime_ns
    res2 = run_regime("image-text", SMOKE, tmp_path, 0)                 # reuses the text stage
    assert text_results.stat().st_mtime_ns == stamp
    assert res2["stages"][0]["run_dir"] == str(seed_dir / "text")
    assert json.loads((seed_dir / "text/image/config.json").read_text())["parent"] == str(seed_dir / "text")

    eq = run_regime("text-only-equal-compute", SMOKE, tmp_path, 0)
    assert eq["total_steps"] == max(res["total_steps"], res2["total_steps"])
    assert [s["mode"] for s in eq["stages"]] == ["text", "text"]

    table = summarize(tmp_path, [0])
    assert {e["regime"] for e in table} == {"noise-image-text", "image-text", "text-only-equal-compute"}
    report = write_report(tmp_path, table, "smoke", 1.0).read_text()
    assert "83.6" in report and (tmp_path / "accuracy_by_n.png").exists()
    fixed = eq["stages"][1]["stage"]                       # no threshold, so never marked missed
    assert fixed == "text+longest" and f"{fixed}:{eq['stages'][1]['steps']}*" not in report
    assert f"{fixed}:{eq['stages'][1]['steps']}" in report

    # the mechanism of every regime's final model, side by side (what `binding reproduce` adds)
    small = AnalyzeConfig(n_pairs=40, knockout_samples=64, probe_samples=80)
    mech = analyze_regimes(tmp_path, table, small, quiet=True)
    assert [m["regime"] for m in mech] == [e["regime"] for e in table]
    assert (seed_dir / "image-text" / "mechanism" / "mechanism.json").exists()
    assert (tmp_path / "mechanism_by_regime.png").exists()
    assert json.loads((tmp_path / "mechanism.json").read_text())[0]["layers"] == [0, 1]
    assert "image-text" in report_section(mech)
    stamp = (seed_dir / "image-text" / "mechanism" / "mechanism.json").stat().st_mtime_ns
    analyze_regimes(tmp_path, table, small, quiet=True)                       # kept, not recomputed
    assert (seed_dir / "image-text" / "mechanism" / "mechanism.json").stat().st_mtime_ns == stamp


def test_a_control_started_alongside_the_other_regimes_ends_as_one_started_after_them(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cur = dataclasses.replace(CUR, scratch_max_steps=40)   # mixed-from-start short too
    run_regime("text-only", with_cur(cur), a, 0)
    with open(tmp_path / "follower.err", "w") as err:
        follower = subprocess.Popen([sys.executable, "-m", "binding.cli", "curriculum", "--preset", "smoke", "--regime",
                                     "text-only-equal-compute", "--seed", "0", "--out", str(a), "--follow",
                                     "curriculum.scratch_max_steps=40"], stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(1200):   # it waits at once: the others have only the text stage so far
        if "waiting for the other regimes" in (tmp_path / "follower.err").read_text() or follower.poll() is not None:
            break
        time.sleep(0.1)
    assert "waiting for the other regimes" in (tmp_path / "follower.err").read_text()
    totals = [run_regime(r, with_cur(cur), a, 0)["total_steps"]
              for r in ("noise-text", "image-text", "noise-image-text", "mixed-from-start")]
    assert follower.wait(timeout=300) == 0, (tmp_path / "follower.err").read_text()
    shutil.copytree(a, b)
    shutil.rmtree(b / "seed0" / "text" / "text+longest")
    shutil.rmtree(b / "seed0" / "text-only-equal-compute")
    after = run_regime("text-only-equal-compute", with_cur(cur), b, 0)
    followed = json.loads((a / "seed0" / "text-only-equal-compute" / "regime.json").read_text())
    assert followed["total_steps"] == after["total_steps"] == max(totals)
    assert _comparable(a / "seed0/text/text+longest") == _comparable(b / "seed0/text/text+longest")


def test_a_finished_control_that_no_longer_matches_the_longest_regime_is_refused(tmp_path):
    run_regime("noise-text", SMOKE, tmp_path, 0)
    run_regime("text-only-equal-compute", SMOKE, tmp_path, 0)
    results = tmp_path / "seed0" / "text" / "text+longest" / "results.json"
    res = json.loads(results.read_text())
    results.write_text(json.dumps({**res, "steps": res["steps"] - 1}))   # as if the others had changed
    with pytest.raises(UserError, match="equal-compute stage of .* steps, but the longest other regime now needs"):
        run_regime("text-only-equal-compute", SMOKE, tmp_path, 0)


def _comparable(stage_dir):
    results = json.loads((stage_dir / "results.json").read_text())
    results.pop("train_seconds")
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return results, rows


def test_a_stage_resumes_after_kill_9(tmp_path):
    over = ["curriculum.stage_max_steps=40", "curriculum.stage_extra_steps=40"]
    run_regime("text-only", SMOKE, tmp_path / "a", 0)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    cmd = [sys.executable, "-m", "binding.cli", "curriculum", "--preset", "smoke", "--regime", "noise-text",
           "--seed", "0", "--quiet", *over]
    whole = subprocess.run(cmd + ["--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    env = {**os.environ, "BINDING_CRASH_AT_STEP": "30"}                      # after the checkpoint at 20
    crashed = subprocess.run(cmd + ["--out", str(tmp_path / "b")], capture_output=True, text=True, env=env, timeout=300)
    assert crashed.returncode != 0 and not (tmp_path / "b/seed0/text/noise/results.json").exists()
    resumed = subprocess.run(cmd + ["--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    assert _comparable(tmp_path / "a/seed0/text/noise") == _comparable(tmp_path / "b/seed0/text/noise")


def test_a_stage_is_reused_whatever_the_encoder_location(tmp_path):
    # noise-text leaves encoder.path empty; noise-image-text fills it in and must reuse the noise stage
    first = run_regime("noise-text", SMOKE, tmp_path, 0)
    elsewhere = dataclasses.replace(CUR, encoder=dataclasses.replace(CUR.encoder, path=str(tmp_path / "enc")))
    again = run_regime("noise-text", with_cur(elsewhere), tmp_path, 0)
    assert again["stages"] == first["stages"]


def test_later_stages_keep_the_training_aids_until_their_threshold_unless_switched_off(tmp_path):
    def noise_rows(cur, out):
        run_regime("noise-text", with_cur(cur), out, 0)
        return [json.loads(line) for line in (out / "seed0" / "text" / "noise" / "metrics.jsonl").read_text().splitlines()]

    with_aids = noise_rows(CUR, tmp_path / "on")
    assert CUR.stage_aids and with_aids[0]["aids_on"] and "hop_loss" in with_aids[0]
    for row in with_aids:   # on until the stage's own threshold holds, off after it
        assert row["aids_on"] == (row["threshold_step"] is None or row["step"] <= row["threshold_step"])
    without = noise_rows(dataclasses.replace(CUR, stage_aids=False), tmp_path / "off")
    assert not any(r["aids_on"] for r in without)


def test_a_fixed_length_stage_switches_its_aids_off_at_its_threshold_but_runs_every_step(tmp_path, monkeypatch):
    # the equal-compute control continues text training: once its threshold holds, it trains on the
    # paper's task alone, as every other stage does, and still runs its exact number of steps
    import binding.train as trainer
    run_regime("text-only", SMOKE, tmp_path, 0)
    monkeypatch.setattr(trainer, "mode_accuracy", lambda *a, **k: {2: 1.0})   # the threshold holds at once
    stage_dir = tmp_path / "seed0" / "text" / "text+30"
    res = train_stage(SMOKE, Stage("text", fixed_steps=30), stage_dir, 0, parent=tmp_path / "seed0" / "text", index=1)
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    patience = SMOKE.train.stop_patience
    assert res["steps"] == 30 and res["threshold_step"] == patience * SMOKE.train.eval_every
    assert [r["aids_on"] for r in rows] == [r["step"] <= res["threshold_step"] for r in rows]
    assert not rows[-1]["aids_on"]


def test_a_later_stage_holds_its_rate_or_decays_it_as_configured(tmp_path):
    run_regime("text-only", SMOKE, tmp_path, 0)
    parent = tmp_path / "seed0" / "text"

    def rates(cur, name):
        train_stage(with_cur(cur), Stage("text", fixed_steps=40), parent / name, 0, parent=parent, index=1)
        return [json.loads(line)["lr"] for line in (parent / name / "metrics.jsonl").read_text().splitlines()]

    assert set(rates(CUR, "const")) == {CUR.stage_lr}     # warmup (5 steps) is over by the first row
    decayed = rates(dataclasses.replace(CUR, stage_min_lr_ratio=0.1, stage_decay_steps=25), "decay")
    assert decayed[0] < CUR.stage_lr and all(a > b for a, b in zip(decayed, decayed[1:3]))
    assert decayed[-1] == decayed[-2] == CUR.stage_lr * 0.1   # reached the floor at step 25, then held
    mix = dataclasses.replace(CUR, mix_stage_lr=3e-4)         # a mix stage has a rate of its own
    train_stage(with_cur(mix), Stage("mix", 0.5, fixed_steps=20), parent / "mix", 0, parent=parent, index=1)
    assert {json.loads(line)["lr"] for line in (parent / "mix" / "metrics.jsonl").read_text().splitlines()} == {3e-4}


def test_with_cooldown_a_stage_ends_at_its_floor_rate_whenever_its_threshold_held(tmp_path, monkeypatch):
    import binding.train as trainer
    run_regime("text-only", SMOKE, tmp_path, 0)
    parent = tmp_path / "seed0" / "text"
    monkeypatch.setattr(trainer, "mode_accuracy", lambda *a, **k: {2: 1.0})   # the threshold holds at once
    cur = dataclasses.replace(CUR, stage_min_lr_ratio=0.1, stage_decay_steps=1000, stage_cooldown=True,
                              stage_max_steps=100)
    res = train_stage(with_cur(cur), Stage("noise"), parent / "noise", 0, parent=parent, index=1)
    rows = [json.loads(line) for line in (parent / "noise" / "metrics.jsonl").read_text().splitlines()]
    t = res["threshold_step"]
    assert t == SMOKE.train.stop_patience * SMOKE.train.eval_every and res["steps"] == t + cur.stage_extra_steps
    at_threshold = next(r["lr"] for r in rows if r["step"] == t)
    assert at_threshold > 0.9 * cur.stage_lr                  # barely decayed yet (1000-step decay)
    assert rows[-1]["lr"] == cur.stage_lr * 0.1               # cooled down to the floor by the last step
