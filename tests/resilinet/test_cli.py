"""The command line: every subcommand has help; bad input gives one clear error, no traceback;
train -> evaluate writes the documented files; an interrupted run resumes to the same model."""
import json

import pytest
import torch

from resilinet import train as train_mod
from resilinet.cli import main
from resilinet.config import make_config
from resilinet.run import load_run

TINY = ["data.name=digits", "data.limit=300", "train.epochs=2", "train.batch_size=64", "model.hidden_units=32"]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["reproduce"], ["ablate"], ["config"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(command + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: resilinet" in out
    if command in (["train"], ["reproduce"]):
        assert "model.method" in out and "examples:" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "--out", "X", "model.methd=resilinet"], "unknown config field 'model.methd'"),
    (["train", "--out", "X", "model.method=magic"], "is not one of"),
    (["train", "--out", "X", "--preset", "gpu"], "argument --preset: invalid choice: 'gpu'"),
    (["train", "--out", "X", "train.epochs=many"], "train.epochs: expected int"),
    (["train", "--out", "X", "train.epochs=0"], "train.epochs must be >= 1"),
    (["train", "--out", "X", "model.arch=vgg"], "model.arch: 'vgg' is not one of"),
    (["train", "--out", "X", "noequals"], "not of the form section.field=value"),
    (["evaluate", "--run", "/nonexistent/run", "--out", "e.json"], "--run: /nonexistent/run not found"),
    (["train", "--out", "X", "--preset", "paper"], "needs data.root=DIR"),
    (["train", "--out", "X", "data.name=fashion-mnist", "data.root=/nonexistent"], "/nonexistent"),
    (["reproduce", "--out", "X", "--seeds", "a,b"], "--seeds"),
    (["reproduce", "--out", "X", "model.arch=mlp"], "sets model.arch and model.method itself"),
    (["ablate", "--out", "X", "--only", "dropout"], "--only: 'dropout'"),
])
def test_bad_input_gives_one_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_bad_skip_name_and_partition_3_are_clear_errors(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "a"), "model.skips=iot-cloud", *TINY]) == 2
    assert "skip hyperconnection" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "b"), "model.arch=resnet18", "model.partition=3", *TINY]) == 2
    assert "model.partition must be 1 or 2" in capsys.readouterr().err


def test_a_diverging_run_stops_with_one_message_and_no_results(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", *TINY, "train.lr=1e30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training diverged at epoch 1" in err and "use a new --out" in err
    assert not (run / "results.json").exists() and not (run / "checkpoint.safetensors").exists()


def test_a_second_train_in_the_same_folder_is_refused(tmp_path, capsys):
    from lab.rundir import held

    run = tmp_path / "run"
    with held(run):
        assert main(["train", "--out", str(run), "--quiet", *TINY]) == 2
    assert "is being written by pid" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_evaluate_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path), "--out", str(tmp_path / "e.json")]) == 2
    assert "has no checkpoint" in capsys.readouterr().err


def test_train_then_evaluate_writes_the_documented_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--out", str(run), "--seed", "3", "model.method=resilinet", *TINY]) == 0
    for f in ("config.json", "metrics.jsonl", "checkpoint.safetensors", "checkpoint.json", "results.json"):
        assert (run / f).exists(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["config"]["model"]["method"] == "resilinet" and "git_commit" in cfg
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--run", str(run), "--out", str(out), "--mc-draws", "2"]) == 0
    ev = json.loads(out.read_text())
    assert ev["nodes"] == ["f1", "f2", "e"] and len(ev["patterns"]) == 8
    assert {"guess_accuracy", "clean_accuracy", "reliability_settings", "expected_accuracy"} <= set(ev)
    results = json.loads((run / "results.json").read_text())
    assert ev["expected_accuracy"] == results["expected_accuracy"]  # the checkpoint rebuilds the model
    assert "monte_carlo" in ev


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, monkeypatch):
    cfg = make_config("cpu", ["model.method=resilinet+", *TINY, "train.epochs=3"])
    train_mod.train(cfg, tmp_path / "straight", seed=1, progress=False)

    calls = {"n": 0}
    real = train_mod.clean_accuracy

    def crash_in_epoch_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "clean_accuracy", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", seed=1, progress=False)
    monkeypatch.setattr(train_mod, "clean_accuracy", real)
    assert json.loads((tmp_path / "resumed" / "checkpoint.json").read_text())["epoch"] == 1
    train_mod.train(cfg, tmp_path / "resumed", seed=1, progress=False)

    a = json.loads((tmp_path / "straight" / "results.json").read_text())
    b = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert a["expected_accuracy"] == b["expected_accuracy"] and a["best_epoch"] == b["best_epoch"]
    rows = [json.loads(l) for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    _, ma, _ = load_run(tmp_path / "straight")
    _, mb, _ = load_run(tmp_path / "resumed")
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resuming_with_a_different_config_is_refused(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--quiet", "--out", run, *TINY, "train.epochs=1"]) == 0
    (tmp_path / "run" / "results.json").unlink()
    assert main(["train", "--quiet", "--out", run, *TINY, "train.epochs=1", "train.lr=0.01"]) == 2
    assert "different config" in capsys.readouterr().err


def test_cnn_training_with_per_sample_failout_and_augmentation(tmp_path):
    run = tmp_path / "cnn"
    argv = ["train", "--quiet", "--out", str(run), "model.arch=mobilenet", "model.width=0.25",
            "model.method=resilinet", "failout.granularity=sample", "failout.survival=0.8,0.6",
            "train.augment=true", "data.name=digits", "data.limit=200", "train.epochs=1"]
    assert main(argv) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["nodes"] == ["f", "e"] and res["checks"]["inside_brackets"]


def test_the_smoke_preset_trains_in_one_epoch_on_a_few_hundred_examples(tmp_path, capsys):
    cfg = make_config("smoke")
    assert cfg.train.epochs == 1 and cfg.data.limit <= 600
    assert make_config("smoke", ["model.arch=resnet18"]).data.limit <= 300
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "r"), "--quiet", "data.name=digits"]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["best_epoch"] == 1


def test_the_expected_accuracy_legend_stands_beside_the_lines(tmp_path, monkeypatch):
    from resilinet import report

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path: figures.append(fig) or path)
    run = {"expected_accuracy": dict.fromkeys(report.SETTINGS, 0.5)}
    report._expected_figure("mlp", {"vanilla": [run]}, ["vanilla"], tmp_path)
    fig = figures[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1 - 1   # outside the plot area: it covers no line
