"""The step loop `binding train` and every curriculum stage share."""
import json
from dataclasses import dataclass

from binding.step_loop import StepLoop, new_state
from lab.rundir import MetricsLog


@dataclass
class TC:
    eval_every: int = 10
    checkpoint_every: int = 20
    stop_threshold: float = 0.9
    stop_patience: int = 2
    aids_off_at_threshold: bool = True


def run(tmp_path, accuracies, extra=15, max_steps=100, state=None):
    """Evaluations return accuracies[k] in turn; training stops `extra` steps after the threshold."""
    state = state or new_state()
    loop = StepLoop(TC(), state, lambda step, thr: step >= max_steps or (thr is not None and step >= thr + extra))
    seen = {"aids": [], "checkpoints": []}
    acc = iter(accuracies)

    def train_step(step):
        seen["aids"].append(loop.aids_on())
        return {"loss": 1.0 / (step + 1)}

    log = MetricsLog(tmp_path / "metrics.jsonl")
    loop.run(train_step, lambda step: (next(acc), {"id_accuracy": step}),
             lambda: seen["checkpoints"].append(state["step"]), log)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return state, seen, rows


def test_threshold_after_patience_then_extra_steps_with_the_aids_off(tmp_path):
    state, seen, rows = run(tmp_path, [0.5, 0.95, 0.5, 0.95, 0.95, 0.95, 0.95])
    assert state["threshold_step"] == 50          # 0.95 at 40 and 50: two in a row
    assert state["step"] == 65                    # + 15 extra steps, then an evaluation at the last step
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60, 65]
    assert seen["aids"] == [True] * 50 + [False] * 15
    assert seen["checkpoints"] == [20, 40, 60, 65]
    assert rows[-1]["threshold_step"] == 50 and rows[0]["loss"] == 0.1 and "seconds" in rows[0]


def test_a_resumed_loop_continues_where_the_state_says(tmp_path):
    state = {"step": 40, "streak": 1, "threshold_step": None, "train_seconds": 12.0}
    state, seen, rows = run(tmp_path, [0.95, 0.95, 0.95], state=state)
    assert state["threshold_step"] == 50 and state["step"] == 65 and state["train_seconds"] >= 12.0
    assert [r["step"] for r in rows] == [50, 60, 65]
