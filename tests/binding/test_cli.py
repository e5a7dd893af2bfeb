"""The `binding` command: what a user types, and the one-line errors for mistakes."""
import json
import subprocess
import sys

import pytest


def binding(*args):
    return subprocess.run([sys.executable, "-m", "binding.cli", *args], capture_output=True, text=True, timeout=300)


def test_sample_prints_examples_in_words():
    out = binding("sample", "--preset", "cpu", "--n", "3", "--count", "2")
    assert out.returncode == 0
    assert out.stdout.count("N=3") == 2 and "answer" in out.stdout


def test_train_then_evaluate_writes_the_results_schema(tmp_path):
    run = tmp_path / "run"
    assert binding("train", "--preset", "smoke", "--out", str(run), "--seed", "2", "--quiet").returncode == 0
    out = binding("evaluate", "--run", str(run), "--out", str(tmp_path / "e.json"), "--samples", "32")
    assert out.returncode == 0, out.stderr
    assert "evaluate:" in out.stderr and "/5 [" in out.stderr   # a progress bar over the 5 N while it works
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["accuracy_by_n"]) == {"2", "3", "4", "5", "6"}
    assert result["samples_per_n"] == 32 and result["ood_range"] == [5, 6]
    out = binding("evaluate", "--run", str(run), "--out", str(tmp_path / "f.json"), "--samples", "32", "--first-hop")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "f.json").read_text())["queries"] == "first-hop" and "queries" not in result


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "smoke", "--out", "X", "model.n_layrs=3"], "unknown config field 'model.n_layrs'"),
    (["train", "--preset", "smoke", "--out", "X", "train.lr=fast"], "train.lr: expected float"),
    (["train", "--preset", "smoke", "--out", "X", "task.ood_n=5,99"], "N=99"),
    (["train", "--preset", "smoke", "--out", "X", "model.pos_encoding=alibi"], "not one of"),
    (["train", "--preset", "smoke", "--out", "X", "lr"], "section.field=value"),
    (["train", "--preset", "smoke", "--out", "X", "train.first_hop_fraction=1.5"],
     "train.one_hop_fraction and train.first_hop_fraction must be in [0, 1]"),
    (["train", "--preset", "smoke", "--out", "X", "train.init_from=no/such/run"], "no checkpoint there"),
    (["curriculum", "--preset", "smoke", "--regime", "noise-text", "--out", "X", "curriculum.stage_min_lr_ratio=0"],
     "curriculum.stage_min_lr_ratio must be in (0, 1]"),
    (["curriculum", "--preset", "smoke", "--regime", "noise-text", "--out", "X", "curriculum.mix_stage_lr=-1"],
     "curriculum.mix_stage_lr must be >= 0"),
    (["curriculum", "--preset", "smoke", "--regime", "noise-text", "--out", "X", "--follow"],
     "--follow applies only to text-only-equal-compute"),
    (["curriculum", "--preset", "smoke", "--regime", "text-only-equal-compute", "--out", "X"],
     "needs the other regimes of"),
    (["train", "--preset", "smoke", "--out", "X", "train.queries_per_example=0"],
     "train.queries_per_example must be >= 1"),
    (["curriculum", "--preset", "smoke", "--regime", "noise-text", "--out", "X", "train.queries_per_example=2"],
     "train.queries_per_example applies to `binding train` only"),
    (["evaluate", "--run", "no/such/run"], "--run: no/such/run not found"),
    (["sample", "--preset", "smoke", "--n", "50"], "larger than the vocabularies"),
    (["reproduce", "--preset", "smoke", "--out", "X", "--first-seed", "-1"], "--first-seed: expected an integer >= 0"),
])
def test_bad_input_gets_one_clear_message_and_no_traceback(args, message, tmp_path):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    out = binding(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "X").exists()  # nothing was created for a rejected command


def test_unknown_preset_is_rejected_by_the_parser():
    out = binding("train", "--preset", "huge", "--out", "x")
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_preset_trains_and_writes_results(preset, tmp_path):
    # shortened to two steps: this checks that the preset's config runs end to end, not its accuracy
    out = binding("train", "--preset", preset, "--out", str(tmp_path / preset), "--seed", "1", "--quiet",
                  "train.max_steps=2", "train.eval_every=1", "train.eval_samples_per_n=2",
                  "train.final_samples_per_n=2", "train.warmup_steps=1")
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / preset / "results.json").read_text())
    assert result["steps"] == 2 and result["seed"] == 1


@pytest.mark.slow
def test_reproduce_adds_seeds_from_first_seed(tmp_path):
    # a study extended on another machine: seeds 2.. land in their own folders and in the table
    out = binding("reproduce", "--preset", "smoke", "--out", str(tmp_path), "--seeds", "1", "--first-seed", "2",
                  "--no-analysis", "--quiet", "curriculum.stage_max_steps=10", "train.max_steps=20")
    assert out.returncode == 0, out.stderr
    table = json.loads((tmp_path / "table.json").read_text())
    assert {e["regime"] for e in table} >= {"text-only", "image-text", "text-only-equal-compute"}
    assert all(e["seeds"] == [2] for e in table)
    assert (tmp_path / "seed2" / "text-only" / "regime.json").exists() and not (tmp_path / "seed0").exists()
    # what reproduce's analysis jobs run: the trained regime is reused, its final model analysed
    stamp = (tmp_path / "seed2" / "text" / "results.json").stat().st_mtime_ns
    out = binding("curriculum", "--preset", "smoke", "--out", str(tmp_path), "--regime", "text-only", "--seed", "2",
                  "--analyze", "--quiet", "curriculum.stage_max_steps=10", "train.max_steps=20")
    assert out.returncode == 0, out.stderr
    assert "symbolic/positional" in out.stdout
    assert (tmp_path / "seed2" / "text" / "results.json").stat().st_mtime_ns == stamp
    mech = json.loads((tmp_path / "seed2" / "text-only" / "mechanism" / "mechanism.json").read_text())
    assert mech["run"] == str(tmp_path / "seed2" / "text")


def _strict_rows(path):
    """metrics.jsonl rows, failing on NaN/Infinity (what strict JSON readers refuse)."""
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))
            for line in path.read_text().splitlines()]


def test_a_diverging_run_stops_with_one_message_and_strict_json(tmp_path):
    run = tmp_path / "run"
    out = binding("train", "--preset", "smoke", "--out", str(run), "--quiet", "train.lr=1e9")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "training diverged at step" in line and "use a new --out" in line
    assert not (run / "results.json").exists()       # nothing non-finite is written as a result
    _strict_rows(run / "metrics.jsonl")


def test_a_second_train_in_the_same_folder_is_refused_and_the_first_goes_on(tmp_path):
    from lab.rundir import held

    run = tmp_path / "run"
    with held(run):   # another process is writing the folder
        out = binding("train", "--preset", "smoke", "--out", str(run), "--quiet")
    assert out.returncode == 2 and "is being written by pid" in out.stderr
    assert not (run / "metrics.jsonl").exists()
    out = binding("train", "--preset", "smoke", "--out", str(run), "--quiet")   # once it is free
    assert out.returncode == 0, out.stderr
    steps = [r["step"] for r in _strict_rows(run / "metrics.jsonl")]
    assert steps == sorted(set(steps))   # each evaluation logged once


def test_a_finished_run_with_a_damaged_checkpoint_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    assert binding("train", "--preset", "smoke", "--out", str(run), "--quiet").returncode == 0
    ckpt = run / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    for args in (["train", "--preset", "smoke", "--out", str(run), "--quiet"], ["evaluate", "--run", str(run)]):
        out = binding(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "does not match its sidecar" in out.stderr and "rerun with a new --out, or delete" in out.stderr
    assert (run / "results.json").exists()   # nothing lost


def test_render_samples_refuses_an_impossible_range_naming_the_flags(tmp_path):
    out = binding("render-samples", "--out", str(tmp_path / "g.png"), "--n-min", "5", "--n-max", "2")
    assert out.returncode == 2 and "--n-min 5 is larger than --n-max 2" in out.stderr
    out = binding("render-samples", "--out", str(tmp_path / "g.png"), "--n-max", "500")
    assert out.returncode == 2 and "--n-max 500: at most" in out.stderr
    assert not (tmp_path / "g.png").exists()


def test_accuracy_by_n_has_whole_number_ticks(tmp_path, monkeypatch):
    from binding import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    plots.plot_accuracy_by_n({"run": {"accuracy_by_n": {"2": 1.0, "3": 0.9, "4": 0.5}, "id_range": [2, 3]}},
                             tmp_path / "a.png")
    ticks = figures[0].axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)
