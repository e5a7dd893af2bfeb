"""`--preset paper` against the authors' Keras code (clearShallowAtEase Experiment/), point for point:
the fidelity table in docs/resilinet.md, each row that says "matched" pinned here."""
import json
import math

import pytest
import torch
from torch import nn

from resilinet.backbones import DepthwiseBlock
from resilinet.config import make_config, run_config
from resilinet.models import build_model
from resilinet.report import ablation_report, ordering_check
from resilinet.resnet import OfficialBlock, PreActBlock
from resilinet.studies import SETTINGS, ablation_specs, default_seeds, reproduce_specs
from resilinet.topology import topology_for
from resilinet.train import augment, l2_term, make_failout


def _maps(model, x):
    """Spatial side after the stem, the max-pool and each stage, node by node."""
    h = model.nodes["iot"].body(x)
    sides = [h.shape[-1]]
    for name in model.topology.chain[1:]:
        body = model.nodes[name].body
        for m in body if isinstance(body[0], (nn.Sequential, nn.MaxPool2d)) else [body]:
            h = m(h)
            if h.dim() == 4 and isinstance(m, (nn.Sequential, nn.MaxPool2d)):
                sides.append(h.shape[-1])
    return sides


@pytest.mark.parametrize("partition", [1, 2])
def test_official_resnet18_feature_maps_on_32px_go_16_8_4_2_1_1(partition):
    cfg = make_config("paper", ["model.arch=resnet18", "model.width=0.125", f"model.partition={partition}"])
    model = build_model(cfg.model, (3, 32, 32), 10).eval()
    with torch.no_grad():
        # stem 16 | max-pool 8, stage 0 4 (stride 2 in stage 0 too) | stage 1 2 | stage 2 1, stage 3 1
        assert _maps(model, torch.zeros(2, 3, 32, 32)) == [16, 8, 4, 2, 1, 1]
    stem = model.nodes["iot"].body[0]
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2)
    per_node = {n: model.nodes[n].in_shape[-1] for n in ("e", "f", "cloud")}
    assert per_node == ({"e": 16, "f": 4, "cloud": 2} if partition == 1 else {"e": 16, "f": 2, "cloud": 1})


def test_official_block_shortcut_reads_the_raw_input_and_stage_0_skips_the_first_preactivation():
    model = build_model(make_config("paper", ["model.arch=resnet18", "model.width=0.125"]).model, (3, 32, 32), 10)
    first = model.nodes["e"].body[1][0]   # after the max-pool: stage 0, block 0
    assert isinstance(first, OfficialBlock) and first.bn1 is None
    later = model.nodes["f"].body[0]
    assert later.bn1 is not None and isinstance(later.shortcut[1], nn.BatchNorm2d)
    x = torch.randn(2, *model.nodes["f"].in_shape)
    later.eval()
    with torch.no_grad():   # the shortcut sees x itself, not BN-ReLU(x)
        residual = later.conv2(torch.relu(later.bn2(later.conv1(torch.relu(later.bn1(x))))))
        assert torch.allclose(later(x), residual + later.shortcut(x), atol=1e-6)


def test_preact_variant_is_kept_and_runs_saved_before_the_field_load_as_it():
    model = build_model(make_config("cpu", ["model.arch=resnet18", "model.resnet=preact"]).model, (1, 32, 32), 10)
    assert isinstance(model.nodes["f"].body[0], PreActBlock)
    assert model.nodes["f"].in_shape[-1] == 16   # stride-1 stem and stage 0
    assert run_config({"model": {"arch": "resnet18"}}).model.resnet == "preact"
    assert run_config({"model": {"arch": "resnet18", "resnet": "official"}}).model.resnet == "official"


def _count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("arch,kind,p1,p2", [
    ("mobilenet", DepthwiseBlock, (0, 3, 5, 5), (1, 2, 4, 6)),   # cnn_Vanilla_MobileNet.py:13 "1-3-5-5" / "2-2-4-6"
    ("resnet18", OfficialBlock, (0, 2, 2, 4), (0, 4, 2, 2)),     # stages 0 | 1 | 2-3, and 0-1 | 2 | 3
])
def test_cnn_partition_2_moves_the_official_blocks(arch, kind, p1, p2):
    for partition, want in ((1, p1), (2, p2)):
        cfg = make_config("paper", [f"model.arch={arch}", "model.width=0.125", f"model.partition={partition}"])
        model = build_model(cfg.model, (3, 32, 32), 10)
        assert tuple(_count(model.nodes[n].body, kind) for n in model.topology.chain) == want


def test_resnet_partition_2_iot_fog_skip_is_the_official_stride_8_projection():
    cfg = make_config("paper", ["model.arch=resnet18", "model.partition=2", "model.method=resilinet"])
    proj = build_model(cfg.model, (3, 32, 32), 10).nodes["iot"].projections["f"]
    assert (proj.out_channels, proj.stride, proj.bias) == (128, (8, 8), None)   # cnn_DFG_ResNet.py:158


@pytest.mark.parametrize("arch", ["mlp", "resnet18"])
def test_weight_schemes_2_and_3_train_one_model_per_setting_with_its_weights(arch):
    topo = topology_for(arch)
    specs = [s for s in ablation_specs("cpu", [0], arch=arch) if s.label in ("scheme 2", "scheme 3")]
    for label in ("scheme 2", "scheme 3"):
        mine = [s for s in specs if s.label == label]
        assert sorted(s.setting for s in mine) == sorted(SETTINGS) and len({s.name for s in mine}) == 4
    for spec in specs:
        model = build_model(make_config("cpu", list(spec.overrides)).model, (1, 28, 28) if arch != "mlp" else (784,), 10)
        r = dict(zip(topo.failure_prone, topo.reliabilities(spec.setting))) | {topo.iot: 1.0}
        for node in topo.chain[1:]:
            w = model.nodes[node].weights
            for p in w:
                want = r[p] / sum(r[q] for q in w) if spec.label == "scheme 2" else r[p]
                assert math.isclose(w[p], want), (spec.name, node, p)
    no_failure = build_model(make_config("cpu", list(next(
        s for s in specs if s.label == "scheme 2" and s.setting == "no failure").overrides)).model,
        (784,) if arch == "mlp" else (1, 28, 28), 10)
    # official: under scheme 2, "no failure" means every two-input weight is 0.5
    assert {v for n in topo.chain[2:] for v in no_failure.nodes[n].weights.values()} == {0.5}


@pytest.mark.parametrize("arch", ["mlp", "mobilenet"])
def test_variable_failout_trains_one_model_per_setting_with_its_reliabilities(arch):
    topo = topology_for(arch)
    specs = [s for s in ablation_specs("cpu", [0], arch=arch) if s.label == "variable"]
    assert [s.setting for s in specs] == ["normal", "poor", "hazardous"]   # no-failure: rates 1, not trained
    for spec in specs:
        cfg = make_config("cpu", list(spec.overrides))
        failout = make_failout(cfg, build_model(cfg.model, (784,) if arch == "mlp" else (1, 28, 28), 10))
        assert failout.rates == topo.reliabilities(spec.setting)


def test_resnet_weight_and_skip_ablations_train_with_survival_095_as_the_official_code():
    for arch, want in (("resnet18", True), ("mobilenet", False), ("mlp", False)):
        for spec in ablation_specs("cpu", [0], arch=arch):
            if spec.group in ("weights", "skips"):
                assert ("failout.survival=0.95" in spec.overrides) == want, spec.name
    skips = {s.label for s in ablation_specs("cpu", [0], arch="resnet18") if s.group == "skips"}
    assert skips == {"none", "iot-f", "e-cloud", "iot-f,e-cloud"}


def _fake(value: float, seed: int) -> dict:
    return {"expected_accuracy": {s: value for s in SETTINGS}, "checks": {"inside_brackets": True}, "seed": seed}


def test_report_shows_each_per_setting_model_only_at_its_own_setting(tmp_path):
    specs = [s for s in ablation_specs("cpu", [0], arch="mlp") if s.group == "weights"]
    values = {name: 0.10 + 0.01 * i for i, name in enumerate(dict.fromkeys(s.name for s in specs))}
    results = {name: _fake(v, 0) for name, v in values.items()}
    text = ablation_report(specs, results, tmp_path, "# test\n")
    row = next(line for line in text.splitlines() if line.startswith("| scheme 2 |"))
    want = [values[next(s.name for s in specs if s.label == "scheme 2" and s.setting == st)] for st in SETTINGS]
    assert row.split("|")[2:6] == [f" {100 * v:.2f} ± 0.00 " for v in want]
    row = next(line for line in text.splitlines() if line.startswith("| scheme 2, one model (normal weights) |"))
    normal = values[next(s.name for s in specs if s.label == "scheme 2" and s.setting == "normal")]
    assert row.split("|")[2:6] == [f" {100 * normal:.2f} ± 0.00 "] * 4


def test_ordering_check_names_every_inversion_and_counts_seeds():
    runs = {"resilinet+": [_fake(0.80, 0), _fake(0.82, 1)], "resilinet": [_fake(0.81, 0), _fake(0.79, 1)],
            "deepfogguard": [_fake(0.75, 0), _fake(0.87, 1)], "vanilla": [_fake(0.5, 0), _fake(0.5, 1)]}
    line = ordering_check(runs, "poor")
    assert "does NOT hold (inverted: ResiliNet 80.00 < deepFogGuard 81.00)" in line
    assert "ResiliNet+ >= ResiliNet in 1/2 seeds" in line and "ResiliNet > deepFogGuard in 1/2 seeds" in line
    runs["deepfogguard"] = [_fake(0.75, 0), _fake(0.76, 1)]
    assert "**holds**" in ordering_check(runs, "poor")


def test_paper_preset_is_the_official_schedule_and_preprocessing():
    mlp = make_config("paper")
    assert (mlp.data.name, mlp.data.legacy_mhealth, mlp.train.epochs, mlp.train.batch_size) == ("mhealth", True, 50, 1024)
    for arch in ("mobilenet", "resnet18"):
        cnn = make_config("paper", [f"model.arch={arch}"])
        assert (cnn.data.name, cnn.data.standardise, cnn.train.epochs, cnn.train.batch_size, cnn.train.augment) == \
            ("cifar10", False, 75, 128, True)
        assert cnn.train.l2 == (1e-4 if arch == "resnet18" else 0.0)
    assert make_config("paper", ["model.arch=resnet18"]).model.resnet == "official"
    imagenet = make_config("paper", ["model.arch=mobilenet", "data.name=imagenet"])
    assert (imagenet.data.image_size, imagenet.model.width, imagenet.model.small_input, imagenet.train.epochs) == \
        (160, 0.75, False, 10)
    assert default_seeds("paper", "mlp") == list(range(10)) and default_seeds("paper", "resnet18") == [0]
    assert {s.seed for s in reproduce_specs("paper", None) if s.arch == "mlp"} == set(range(10))
    assert default_seeds("cpu", "mlp") == [0, 1, 2]


def test_l2_covers_the_conv_kernels_of_the_nodes_only():
    model = build_model(make_config("paper", ["model.arch=resnet18", "model.width=0.125",
                                              "model.method=resilinet"]).model, (3, 32, 32), 10)
    body_convs = [m.weight for n in model.nodes.values() for m in n.body.modules() if isinstance(m, nn.Conv2d)]
    assert torch.isclose(l2_term(model), sum((w * w).sum() for w in body_convs))
    everything = sum((p * p).sum() for p in model.parameters() if p.dim() > 1)
    assert l2_term(model) < everything   # the dense head and the skip projections are not in it


def test_augmentation_fills_with_the_nearest_pixel_as_keras():
    x = torch.full((8, 3, 16, 16), 0.7)
    out = augment(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-6)   # zero fill would darken rotated / shifted corners


def test_paper_health_preset_trains_on_the_official_preprocessing(tmp_path, capsys):
    from resilinet.cli import main
    from test_data import write_mhealth

    (tmp_path / "mh").mkdir()
    write_mhealth(tmp_path / "mh", rows_per_file=30)
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--preset", "paper", "--out", str(out), f"data.root={tmp_path / 'mh'}",
                 "train.epochs=1", "model.hidden_units=16"]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["data"]["legacy_mhealth"] is True and saved["train"]["batch_size"] == 1024
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "mhealth" and results["checks"]["inside_brackets"]
