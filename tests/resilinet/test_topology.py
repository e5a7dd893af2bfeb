"""Spec sections 1, 2 and 5: the topologies as data, connectivity and the analytic brackets."""
import pytest

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
