"""Spec section 3: failout statistics, granularity, rates, and training-only use."""
import pytest
import torch

from lab.errors import UserError
from resilinet.config import FailoutConfig, make_config
from resilinet.failout import Failout, survival_rates
from resilinet.topology import CNN, HEALTH
from resilinet.train import make_failout

from resilinet_toys import toy_model


def test_per_batch_draws_match_the_survival_rate():
    fo = Failout(HEALTH, (0.9, 0.7, 0.5), "batch")
    g = torch.Generator().manual_seed(0)
    draws = [fo.sample(32, g) for _ in range(20000)]
    for node, rate in zip(HEALTH.failure_prone, (0.9, 0.7, 0.5)):
        values = [d[node] for d in draws]
        assert all(v in (0.0, 1.0) for v in values)                  # one draw for the whole batch
        assert sum(values) / len(values) == pytest.approx(rate, abs=0.01)  # 4+ sigma


def test_per_sample_draws_match_the_rate_and_vary_within_a_batch():
    fo = Failout(CNN, (0.8, 0.6), "sample")
    masks = fo.sample(50000, torch.Generator().manual_seed(1))
    assert masks["f"].shape == (50000,)
    assert float(masks["f"].mean()) == pytest.approx(0.8, abs=0.01)
    assert float(masks["e"].mean()) == pytest.approx(0.6, abs=0.01)
    # nodes fail independently
    both = float((masks["f"] * masks["e"]).mean())
    assert both == pytest.approx(0.48, abs=0.01)


def test_rates_shared_per_node_and_variable():
    assert survival_rates(FailoutConfig(survival="0.9"), HEALTH) == (0.9, 0.9, 0.9)
    assert survival_rates(FailoutConfig(survival="0.95,0.9,0.7"), HEALTH) == (0.95, 0.9, 0.7)
    assert survival_rates(FailoutConfig(survival="variable", variable_setting="hazardous"), CNN) == (0.85, 0.80)
    for bad in ("0.9,0.8", "1.5", "often"):
        with pytest.raises(UserError, match="failout.survival"):
            survival_rates(FailoutConfig(survival=bad), HEALTH)


def test_failout_is_on_only_for_resilinet_and_resilinet_plus_by_default():
    for method, on in (("vanilla", False), ("deepfogguard", False), ("resilinet", True), ("resilinet+", True)):
        cfg = make_config("cpu", [f"model.method={method}"])
        assert (make_failout(cfg, toy_model("mlp", method)) is not None) == on
    cfg = make_config("cpu", ["model.method=deepfogguard", "failout.enabled=on"])
    assert make_failout(cfg, toy_model("mlp", "deepfogguard")) is not None


def test_failed_node_output_is_zeroed_for_every_consumer_without_rescaling():
    """A failed-out edge makes the ResiliNet+ fog see exactly the IoT skip term (no 1/p scaling),
    and the alive survivors pass unscaled."""
    model = toy_model("mlp", "resilinet+")
    x = torch.randn(6, 12)
    with torch.no_grad():
        dead_e = model(x, {"e": 0.0})
        manual_f2 = model.nodes["f2"].body(model.nodes["iot"]({"input": x}, {})["f2"])
        f1_in = model.nodes["f1"].combine_inputs({"f2": model.nodes["f2"].send(manual_f2)["f1"], "e": None},
                                                 {"f2": 1.0, "e": 0.0})
        assert torch.equal(f1_in, model.nodes["f2"].send(manual_f2)["f1"])
        assert not torch.allclose(dead_e, model(x))


def test_evaluation_runs_see_no_failout():
    model = toy_model("mlp", "resilinet")
    x = torch.randn(8, 12)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no random masks inside the model itself
