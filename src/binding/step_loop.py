"""The resumable step loop that `binding train` and every curriculum stage share.

    loop = StepLoop(tc, state, done=lambda step, threshold_step: ...)
    loop.run(train_step, evaluate, checkpoint, log)

It owns what must behave the same everywhere: the step counter, the ID-threshold streak and the
step at which the threshold first held (`threshold_step`; the training aids switch off there),
wall time carried across resumes, an evaluation every `eval_every` steps and at the last step,
a checkpoint every `checkpoint_every` steps and at the end, a stop with one message when the loss
or gradient turns non-finite (before anything of that step is logged or saved), and the tests' `kill -9` hook
(BINDING_CRASH_AT_STEP). What a step trains on and what an evaluation measures are the caller's.

The loop state is a plain dict so it goes into the checkpoint's JSON as is:
{"step", "streak", "threshold_step", "train_seconds"}.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

from lab.diverged import check_finite
from lab.rundir import MetricsLog


def new_state() -> dict:
    return {"step": 0, "streak": 0, "threshold_step": None, "train_seconds": 0.0}


class StepLoop:
    def __init__(self, tc, state: dict, done: Callable[[int, int | None], bool]):
        """tc: a TrainConfig (eval_every, checkpoint_every, stop_threshold, stop_patience,
        aids_off_at_threshold); done(step, threshold_step): whether training is over at `step`."""
        self.tc, self.state, self._done = tc, state, done
        self._t0 = time.perf_counter() - state["train_seconds"]

    def done(self) -> bool:
        return self._done(self.state["step"], self.state["threshold_step"])

    def aids_on(self) -> bool:
        """The training aids stay on until the threshold holds (when aids_off_at_threshold)."""
        return not (self.tc.aids_off_at_threshold and self.state["threshold_step"] is not None)

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` just spent (e.g. waiting for other jobs) out of the training time."""
        self._t0 += seconds

    def elapsed(self) -> float:
        self.state["train_seconds"] = time.perf_counter() - self._t0
        return self.state["train_seconds"]

    def run(self, train_step: Callable[[int], dict], evaluate: Callable[[int], tuple[float, dict]],
            checkpoint: Callable[[], None], log: MetricsLog, after_eval: Callable[[int, float, dict], None] | None = None,
            after_step: Callable[[], None] | None = None) -> dict:
        """train_step(step) -> fields for the log (loss, lr, ...); evaluate(step) -> (ID accuracy
        compared with the threshold, fields for the log). Returns the last evaluation's fields."""
        tc, state = self.tc, self.state
        crash_at = int(os.environ.get("BINDING_CRASH_AT_STEP", "0"))  # tests: a real SIGKILL mid-run
        last_eval: dict = {}
        saved = state["step"]   # the step of the checkpoint on disk (0: none yet)
        while not self.done():
            stats = train_step(state["step"])
            state["step"] = step = state["step"] + 1
            check_finite(stats["loss"], stats.get("grad_norm", 0.0), f"step {step}",
                         f"the checkpoint of step {saved} is kept" if saved else "no checkpoint had been written")
            if after_step:
                after_step()
            if step % tc.eval_every == 0 or self.done():
                id_acc, last_eval = evaluate(step)
                state["streak"] = state["streak"] + 1 if id_acc >= tc.stop_threshold else 0
                if state["streak"] >= tc.stop_patience and state["threshold_step"] is None:
                    state["threshold_step"] = step   # a fixed-length run does not stop there; its aids switch off
                log.append({"step": step, **stats, **last_eval, "threshold_step": state["threshold_step"],
                            "seconds": round(self.elapsed(), 2)})
                if after_eval:
                    after_eval(step, id_acc, stats)
            if step % tc.checkpoint_every == 0:
                self.elapsed()
                checkpoint()
                saved = step
            if crash_at and step == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)
        self.elapsed()
        checkpoint()
        return last_eval
