"""How long the equal-compute control trains: as many steps in all as the longest other regime of its seed.

    longest = LongestRegime(seed_dir, {"noise-text": [seed_dir/"text", seed_dir/"text/noise"], ...}, follow=False)
    longest.total()          # the longest other regime's total steps
    longest.reached(step)    # whether a control at global step `step` is done

Without `follow`, the total is that of the longest regime already trained (its regime.json), and at
least one must be. With `follow`, the control may start while the other regimes still train
(`binding curriculum --follow`, which `binding reproduce` uses): the total is known once every
other regime has finished, and until then their progress so far (finished stages' steps plus the
running stage's last logged step) is a lower bound on it, which the control may train up to and
waits at. Its data and rate schedule do not depend on its length, so it ends exactly where one
started after the others would.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from lab.errors import UserError
from lab.io import read_json
from lab.rundir import MetricsLog


class LongestRegime:
    def __init__(self, seed_dir: Path, stage_dirs: dict[str, list[Path]], follow: bool, poll_s: float = 2.0,
                 quiet: bool = True):
        """stage_dirs: each other regime's stage folders in order (regime name -> folders)."""
        self.seed_dir, self.stage_dirs, self.follow = Path(seed_dir), stage_dirs, follow
        self.poll_s, self.quiet = poll_s, quiet
        self.waited_s = 0.0            # seconds spent waiting for the other regimes
        self._exact: int | None = None
        self._bound = 0
        self._announced = False
        self.refresh()

    def _progress(self, name: str) -> tuple[int, bool]:
        """(steps so far, finished) of one regime, from its folders."""
        summary = self.seed_dir / name / "regime.json"
        if summary.exists():
            return read_json(summary)["total_steps"], True
        steps = 0
        for d in self.stage_dirs[name]:
            if (d / "results.json").exists():
                steps += read_json(d / "results.json")["steps"]
                continue
            rows = MetricsLog(d / "metrics.jsonl").rows()
            return steps + (rows[-1].get("step", 0) if rows else 0), False
        return steps, False

    def refresh(self) -> None:
        progress = [self._progress(name) for name in self.stage_dirs]
        finished = [steps for steps, done in progress if done]
        self._bound = max([self._bound] + [steps for steps, _ in progress])
        if self.follow:
            self._exact = max(finished) if len(finished) == len(progress) else None
        elif not finished:
            raise UserError(f"text-only-equal-compute needs the other regimes of {self.seed_dir} trained first "
                            f"(or --follow, to start alongside them)")
        else:
            self._exact = max(finished)

    def known(self) -> int | None:
        """The total if it is known now."""
        return self._exact

    def total(self) -> int:
        """The total, waiting for the other regimes if need be."""
        if self._exact is None:
            self._announce()
        while self._exact is None:
            self._wait()
        return self._exact

    def reached(self, step: int) -> bool:
        """Whether a control at global step `step` has trained enough. It returns at once while the
        step is below the lower bound, and otherwise waits until the bound passes it or the total is known."""
        if self._exact is None and step >= self._bound:
            self._announce()
        while self._exact is None and step >= self._bound:
            self._wait()
        return self._exact is not None and step >= self._exact

    def _announce(self) -> None:   # once: the control catches up with the others many times
        if not self.quiet and not self._announced:
            print(f"equal-compute control: waiting for the other regimes of {self.seed_dir} whenever it "
                  f"catches up with them (longest so far {self._bound} steps)", file=sys.stderr)
        self._announced = True

    def _wait(self) -> None:
        t0 = time.perf_counter()
        time.sleep(self.poll_s)
        self.refresh()
        self.waited_s += time.perf_counter() - t0
