"""The equal-compute control's length: the longest other regime's total, and a lower bound while they train."""
import json
import threading
import time

import pytest

from binding.longest import LongestRegime
from lab.errors import UserError


def finish_stage(d, steps):
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps({"steps": steps}))


def log_rows(d, *steps):
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in steps))


def finish_regime(seed_dir, name, total):
    (seed_dir / name).mkdir(parents=True, exist_ok=True)
    (seed_dir / name / "regime.json").write_text(json.dumps({"regime": name, "total_steps": total}))


@pytest.fixture
def layout(tmp_path):
    """Two regimes sharing a text stage of 100 steps: a (text -> a) and b (text -> b1 -> b2)."""
    text = tmp_path / "text"
    finish_stage(text, 100)
    return tmp_path, {"a": [text, text / "a"], "b": [text, text / "b1", text / "b1" / "b2"]}


def test_without_follow_the_total_is_the_longest_trained_regime_and_one_is_needed(layout):
    seed_dir, dirs = layout
    with pytest.raises(UserError, match="trained first"):
        LongestRegime(seed_dir, dirs, follow=False)
    finish_regime(seed_dir, "a", 250)
    longest = LongestRegime(seed_dir, dirs, follow=False)
    assert longest.total() == 250 and not longest.reached(249) and longest.reached(250)


def test_while_regimes_train_their_progress_is_a_lower_bound_and_the_total_waits_for_all(layout):
    seed_dir, dirs = layout
    finish_stage(dirs["b"][1], 80)                  # b: text 100 + b1 80 + b2 so far 30
    log_rows(dirs["b"][2], 10, 20, 30)
    log_rows(dirs["a"][1], 10)                      # a: text 100 + 10 so far
    finish_regime(seed_dir, "a", 170)
    longest = LongestRegime(seed_dir, dirs, follow=True, poll_s=0.05)
    assert longest.known() is None
    assert not longest.reached(209)                 # below the bound (210): no waiting, no reading
    assert longest.waited_s == 0

    def b_finishes():
        time.sleep(0.3)
        log_rows(dirs["b"][2], 10, 20, 30, 40)      # the bound moves to 220 first
        time.sleep(0.3)
        finish_regime(seed_dir, "b", 225)

    threading.Thread(target=b_finishes).start()
    assert not longest.reached(215)                 # waits until the bound passes 215
    assert longest.known() is None and longest.waited_s > 0.2
    assert longest.reached(225) and longest.total() == 225   # waits for b's regime.json
    assert not longest.reached(224)
