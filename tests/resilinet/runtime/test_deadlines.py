"""Per-node hop deadlines follow the node's measured latency, within a floor and a ceiling."""
from __future__ import annotations

import pytest

from lab.errors import UserError
from resilinet.config import RuntimeConfig
from resilinet.runtime.deadlines import HopDeadline


def deadline(**kw) -> HopDeadline:
    return HopDeadline(**{"floor_s": 0.5, "ceiling_s": 5.0, "quantile": 0.99, "factor": 3.0, "window": 100, **kw})


def test_a_node_with_no_history_gets_the_floor():
    assert deadline().deadline_s() == 0.5


def test_a_fast_node_keeps_the_floor_and_a_slow_one_is_given_longer():
    fast, slow = deadline(), deadline()
    for _ in range(50):
        fast.observe(0.02)
        slow.observe(0.4)
    assert fast.deadline_s() == 0.5
    assert slow.deadline_s() == pytest.approx(1.2)       # 3 x its p99


def test_the_deadline_never_passes_the_ceiling():
    d = deadline()
    d.observe(30.0)
    assert d.deadline_s() == 5.0


def test_old_latencies_leave_the_window():
    d = deadline(window=10)
    for _ in range(10):
        d.observe(1.0)
    assert d.deadline_s() == 3.0
    for _ in range(10):
        d.observe(0.01)
    assert d.deadline_s() == 0.5


def test_floor_equal_to_ceiling_is_the_fixed_deadline_of_before():
    d = HopDeadline.from_config(RuntimeConfig(hop_deadline_s=0.5, hop_deadline_max_s=0.5))
    d.observe(2.0)
    assert d.deadline_s() == 0.5


@pytest.mark.parametrize("kw, words", [
    ({"hop_deadline_s": 1.0, "hop_deadline_max_s": 0.5}, "hop_deadline_max_s must be in [hop_deadline_s, 60]"),
    ({"hop_deadline_quantile": 1.5}, "hop_deadline_quantile"),
    ({"hop_deadline_factor": 0.5}, "hop_deadline_factor must be >= 1"),
])
def test_bad_deadline_settings_are_one_clear_error(kw, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        RuntimeConfig(**kw)
