"""Spec sections 1, 2 and 5: the topologies as data, connectivity and the analytic brackets."""
import pytest
import torch

from lab.errors import UserError
from resilinet.topology import (ANALYTIC_P_NO_PATH, CNN, HEALTH, Topology, p_no_path, parse_skips,
                                pattern_probability)


@pytest.mark.parametrize("topo", [HEALTH, CNN], ids=["health", "cnn"])
def test_p_no_path_matches_the_spec_brackets(topo):
    for setting, (vanilla, skips) in ANALYTIC_P_NO_PATH[topo.name].items():
        r = topo.reliabilities(setting)
        assert p_no_path(topo.with_skips(()), r) == pytest.approx(vanilla, abs=1e-9)
        assert p_no_path(topo, r) == pytest.approx(skips, abs=1e-9)


def test_pattern_probabilities_sum_to_one():
    r = HEALTH.reliabilities("hazardous")
    assert sum(pattern_probability(a, r) for a in HEALTH.patterns()) == pytest.approx(1.0)


def test_health_cloud_is_cut_off_only_when_f2_and_one_of_f1_e_are_dead():
    # alive order is [f1, f2, e]
    assert HEALTH.connected([1, 0, 1])        # f2 dead: e -> f1 skip carries on
    assert HEALTH.connected([0, 1, 0])        # f1, e dead: iot -> f2 -> cloud
    assert not HEALTH.connected([0, 0, 1])    # f1, f2 dead
    assert not HEALTH.connected([1, 0, 0])    # f2, e dead: f1 receives nothing
    assert not HEALTH.with_skips(()).connected([1, 1, 0])  # vanilla: any failure cuts the chain


def test_producers_are_in_multiplexer_priority_order_chain_first():
    assert HEALTH.producers("f2") == ("e", "iot")
    assert HEALTH.producers("cloud") == ("f1", "f2")
    assert CNN.producers("cloud") == ("f", "e")
    assert HEALTH.upstream("cloud") == ("f1", "f2", "e")
    assert CNN.upstream("f") == ("e",)


def test_a_new_partition_is_a_new_description_not_new_code():
    two_fogs = Topology("health", ("iot", "e", "f2", "f1", "cloud"), ("f1", "f2", "e"), (("iot", "f2"),))
    assert two_fogs.connected([1, 1, 0]) and not two_fogs.connected([1, 0, 1])
    with pytest.raises(ValueError, match="bypass exactly one"):
        Topology("cnn", ("iot", "e", "f", "cloud"), ("f", "e"), (("iot", "cloud"),))


def test_skip_subsets_parse_by_name_and_reject_unknown_links():
    assert parse_skips(HEALTH, "all") == HEALTH.all_skips
    assert parse_skips(HEALTH, "none") == ()
    assert parse_skips(HEALTH, "f2-cloud,iot-f2") == (("iot", "f2"), ("f2", "cloud"))
    with pytest.raises(UserError, match="iot-f1"):
        parse_skips(HEALTH, "iot-f1")


def test_unknown_reliability_setting_is_a_user_error():
    with pytest.raises(UserError, match="hazardous"):
        CNN.reliabilities("terrible")


from hypothesis import given, settings, strategies as st  # noqa: E402

prob = st.floats(0.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(prob, prob, prob)
def test_health_p_no_path_has_the_closed_form(r_f1, r_f2, r_e):
    """Cut off iff f2 dead and (f1 or e dead); vanilla iff anything dead."""
    r = (r_f1, r_f2, r_e)
    assert p_no_path(HEALTH, r) == pytest.approx((1 - r_f2) * (1 - r_f1 * r_e), abs=1e-12)
    assert p_no_path(HEALTH.with_skips(()), r) == pytest.approx(1 - r_f1 * r_f2 * r_e, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(prob, prob)
def test_cnn_p_no_path_has_the_closed_form(r_f, r_e):
    """Cut off iff both die (iot->f and e->cloud each bypass one)."""
    assert p_no_path(CNN, (r_f, r_e)) == pytest.approx((1 - r_f) * (1 - r_e), abs=1e-12)


def test_one_alive_mask_in_every_form_the_code_reads():
    from resilinet.topology import INPUT, AliveMask, alive_columns, pattern_indices, producer_flags

    mask = AliveMask.from_pattern(HEALTH, (1, 0, 1))            # f2 dead
    assert mask.pattern == (1, 0, 1) and mask.dead() == ("f2",)
    assert mask.failure_prone() == {"f1": True, "f2": False, "e": True}
    assert mask.alive_nodes() == {"iot": True, "e": True, "f2": False, "f1": True, "cloud": True}
    assert mask.floats()["f2"] == 0.0 and mask.floats()["iot"] == 1.0
    assert mask.connected and mask == AliveMask.from_nodes(HEALTH, {"iot", "e", "f1", "cloud"})
    assert producer_flags(("e", "iot"), {"iot"}) == {"e": 0.0, "iot": 1.0}
    assert producer_flags((INPUT,), set()) == {INPUT: 1.0}      # the sensor reading is always there
    patterns = list(HEALTH.patterns())
    draws = torch.tensor(patterns, dtype=torch.float32)          # [8, 3], one pattern per row
    assert pattern_indices(HEALTH, draws).tolist() == list(range(len(patterns)))
    assert torch.equal(alive_columns(HEALTH, draws)["e"], draws[:, 2])
    with pytest.raises(ValueError, match="3 entries"):
        AliveMask.from_pattern(HEALTH, (1, 0))


def test_an_evaluation_record_names_its_topology():
    from resilinet.topology import TOPOLOGIES, recorded_topology

    assert recorded_topology({"name": "cnn", "chain": list(CNN.chain), "skips": []}) is CNN
    # written before the name was recorded: found by its chain, not guessed from the node count
    assert recorded_topology({"chain": list(HEALTH.chain), "skips": []}) is HEALTH
    assert set(TOPOLOGIES) == {"health", "cnn"}
