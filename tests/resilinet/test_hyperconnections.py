"""Spec section 2: what a dead node's consumers see under each method."""
import pytest
import torch

from resilinet.hyperconnections import combine, hyperconnection_weights
from resilinet.topology import CNN, HEALTH, INPUT

from resilinet_toys import toy_model


def sent_by_all(model, x):
    """Every node's outputs with everything alive: {node: {consumer: tensor}}."""
    sent = {INPUT: {"iot": x}}
    for name in model.topology.chain:
        node = model.nodes[name]
        sent[name] = node({p: sent[p][name] for p in node.producers}, {})
    return sent


@pytest.mark.parametrize("arch", ["mlp", "resnet18"])
def test_dead_edge_routes_through_skip(arch):
    """ResiliNet: with the edge dead, the fog's input is exactly the IoT skip, never a mix."""
    model = toy_model(arch, "resilinet")
    fog = "f2" if arch == "mlp" else "f"
    x = torch.randn(5, *model.input_shape)
    sent = sent_by_all(model, x)
    inputs = {p: sent[p][fog] for p in model.nodes[fog].producers}
    dead_e = model.nodes[fog].combine_inputs(inputs, {"e": 0.0, "iot": 1.0})
    assert torch.equal(dead_e, sent["iot"][fog])          # the skip projection computed on the IoT
    alive_e = model.nodes[fog].combine_inputs(inputs, {"e": 1.0, "iot": 1.0})
    assert torch.equal(alive_e, sent["e"][fog])           # the skip is ignored while the edge lives


def test_dead_fog1_routes_cloud_through_fog2_skip():
    model = toy_model("mlp", "resilinet")
    x = torch.randn(3, 12)
    sent = sent_by_all(model, x)
    inputs = {p: sent[p]["cloud"] for p in model.nodes["cloud"].producers}
    got = model.nodes["cloud"].combine_inputs(inputs, {"f1": 0.0, "f2": 1.0})
    assert torch.equal(got, sent["f2"]["cloud"])


def test_sum_drops_the_dead_term():
    """deepFogGuard / ResiliNet+: weighted sum of alive links; a dead producer contributes 0."""
    for method in ("deepfogguard", "resilinet+"):
        model = toy_model("mlp", method)
        sent = sent_by_all(model, torch.randn(4, 12))
        inputs = {p: sent[p]["f2"] for p in ("e", "iot")}
        both = model.nodes["f2"].combine_inputs(inputs, {"e": 1.0, "iot": 1.0})
        assert torch.allclose(both, sent["e"]["f2"] + sent["iot"]["f2"])
        only_skip = model.nodes["f2"].combine_inputs(inputs, {"e": 0.0, "iot": 1.0})
        assert torch.equal(only_skip, sent["iot"]["f2"])


def test_vanilla_dead_node_disconnects_its_consumer():
    model = toy_model("mlp", "vanilla")
    assert model.nodes["f2"].producers == ("e",)
    x = torch.randn(4, 12)
    sent = sent_by_all(model, x)
    assert model.nodes["f2"].combine_inputs({"e": sent["e"]["f2"]}, {"e": 0.0}) is None  # nothing arrives
    out = model.nodes["f2"]({"e": None}, {"e": 0.0}, batch_size=4)["f1"]
    zeros_in = model.nodes["f2"].body(torch.zeros(4, 16))
    assert torch.equal(out, zeros_in)                      # it computes on zeros
    assert not model.topology.connected([1, 1, 0])


def test_per_sample_masks_equal_per_pattern_runs():
    model = toy_model("resnet18", "resilinet")
    x = torch.randn(4, 1, 8, 8)
    masks = {"f": torch.tensor([1.0, 0.0, 1.0, 0.0]), "e": torch.tensor([1.0, 1.0, 0.0, 0.0])}
    with torch.no_grad():
        mixed = model(x, masks)
        for i in range(4):
            alone = model(x[i:i + 1], {"f": float(masks["f"][i]), "e": float(masks["e"][i])})
            assert torch.allclose(mixed[i], alone[0], atol=1e-5)


def test_mux_takes_first_alive_link_per_sample():
    a, b = torch.full((3, 2), 1.0), torch.full((3, 2), 10.0)
    out = combine("mux", [(a, torch.tensor([1.0, 0.0, 0.0]), 1.0), (b, torch.tensor([1.0, 1.0, 0.0]), 1.0)])
    assert out.tolist() == [[1, 1], [10, 10], [0, 0]]
    assert combine("mux", [(a, 0.0, 1.0), (None, 0.0, 1.0)]) is None


def test_weight_schemes_follow_the_original_code():
    r = HEALTH.reliabilities("poor")  # f1 .95, f2 .91, e .87
    ones = hyperconnection_weights(HEALTH, 1, r)
    assert set(ones.values()) == {1.0}
    norm = hyperconnection_weights(HEALTH, 2, r)
    assert norm[("iot", "f2")] == pytest.approx(1 / 1.87) and norm[("e", "f2")] == pytest.approx(0.87 / 1.87)
    assert norm[("f1", "cloud")] + norm[("f2", "cloud")] == pytest.approx(1.0)
    rel = hyperconnection_weights(HEALTH, 3, r)
    assert rel[("f2", "cloud")] == 0.91 and rel[("iot", "f2")] == 1.0
    uni = hyperconnection_weights(CNN, 4, CNN.reliabilities("poor"), seed=3)
    assert uni == hyperconnection_weights(CNN, 4, CNN.reliabilities("poor"), seed=3)
    assert all(0.0 <= w <= 1.0 for w in uni.values())


def test_weights_multiply_each_link():
    model = toy_model("mlp", "deepfogguard", weight_scheme=3, weight_setting="poor")
    sent = sent_by_all(model, torch.randn(2, 12))
    inputs = {p: sent[p]["cloud"] for p in ("f1", "f2")}
    got = model.nodes["cloud"].combine_inputs(inputs, {"f1": 1.0, "f2": 1.0})
    assert torch.allclose(got, 0.95 * sent["f1"]["cloud"] + 0.91 * sent["f2"]["cloud"])


@pytest.mark.parametrize("arch", ["mlp", "mobilenet", "resnet18"])
def test_only_a_link_that_carries_the_raw_input_is_marked_so(arch):
    """The runtime's router sends such a link itself (`passes_input_to`): it must be exactly the input."""
    model = toy_model(arch, "resilinet")
    iot = model.nodes["iot"]
    x = torch.randn(3, *model.input_shape)
    sent = sent_by_all(model, x)["iot"]
    marked = [c for c in iot.consumers if iot.passes_input_to(c)]
    assert marked == (["e"] if arch == "mlp" else [])     # the MLP's IoT has no layers; to f2 is a projection
    for c in marked:
        assert torch.equal(sent[c], x)
    assert not any(model.nodes[n].passes_input_to(c) for n in model.topology.chain[1:] for c in model.nodes[n].consumers)
