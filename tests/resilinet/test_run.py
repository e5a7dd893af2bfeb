"""A trained run is rebuilt from its checkpoint and sidecar alone: the model, its config and seed,
and the class prior and guess accuracy the cloud falls back to, without the dataset."""
import dataclasses
import json

import pytest
import torch

from lab.errors import UserError
from resilinet import data as data_mod
from resilinet.cli import main
from resilinet.config import Config, RuntimeConfig, make_config, same_trained_model
from resilinet.run import load_run, load_trained

TINY = ["data.name=digits", "data.limit=300", "train.epochs=1", "train.batch_size=64", "model.hidden_units=32"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "mlp"
    assert main(["train", "--quiet", "--out", str(run), "--seed", "2", *TINY]) == 0
    return run


def test_a_trained_run_loads_without_reading_its_dataset(run_dir, monkeypatch):
    cfg, model, seed = load_run(run_dir)
    splits = data_mod.load_splits(cfg, seed)

    def no_dataset(*a, **k):
        raise AssertionError("the dataset was read")

    monkeypatch.setattr(data_mod, "load_dataset", no_dataset)
    run = load_trained(run_dir)
    assert run.seed == 2 and same_trained_model(run.cfg, cfg) and not run.model.training
    assert torch.equal(run.class_prior, splits.class_prior())
    assert run.guess_accuracy == splits.guess_accuracy()
    results = json.loads((run_dir / "results.json").read_text())
    assert run.guess_accuracy == results["guess_accuracy"]
    for a, b in zip(run.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_saved_before_the_prior_was_recorded_still_loads(run_dir, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for f in ("checkpoint.safetensors", "config.json", "results.json"):
        (old / f).write_bytes((run_dir / f).read_bytes())
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    (old / "checkpoint.json").write_text(json.dumps({k: v for k, v in meta.items()
                                                     if k not in ("class_prior", "guess_accuracy")}))
    new, legacy = load_trained(run_dir), load_trained(old)
    assert torch.equal(new.class_prior, legacy.class_prior) and new.guess_accuracy == legacy.guess_accuracy


def test_the_evaluation_records_its_topology(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["topology"]["name"] == "health"


def test_configs_are_frozen_and_validate_themselves():
    cfg = make_config("cpu", ["model.arch=resnet18"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3
    with pytest.raises(UserError, match="model.resnet"):
        make_config("cpu", ["model.arch=resnet18", "model.resnet=cifar"])
    with pytest.raises(UserError, match="runtime.hop_deadline_s"):
        RuntimeConfig(hop_deadline_s=0)
    # the runtime section never makes a trained model "different"
    assert same_trained_model(cfg, Config(cfg.data, cfg.model, cfg.failout, cfg.train, RuntimeConfig(port=0)))
    assert not same_trained_model(cfg, make_config("cpu", ["model.arch=resnet18", "train.lr=0.01"]))
