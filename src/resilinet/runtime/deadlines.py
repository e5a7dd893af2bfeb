"""Per-node hop deadlines that follow each node's measured latency: slow is not dead (issue 19).

A fixed deadline counts a node that is merely slow (a busy machine, a queue of merged batches)
as dead, and the answer then loses that node's contribution for no failure at all. Adaptive
failure detectors (phi-accrual in Cassandra and Akka; Petals' retry-then-blacklist) set the
suspicion level from each node's observed latency instead. Here:

    deadline_s = clamp(factor * quantile_q(the node's last `window` hop latencies), floor, ceiling)

with `RuntimeConfig.hop_deadline_s` the floor (a node with no history gets it), and
`hop_deadline_max_s` the ceiling (so a hung node is always given up on). Observed are the hops
that were answered and the supervisor's health checks answered inside their own deadline
(`health_deadline_s`): a missed deadline is not a latency (recording it would raise the deadline
of a hung node while it hangs), but the hops of a node slower than its deadline are exactly the
ones cut off, so without the health checks the deadline could never learn how slow it is. The router adds one rule on top (router.py,
`_wait_hop`): at the deadline, a node that answered something else since the last check (another
request's hop, a health check) is working through a queue, so its hop is waited for one more
deadline, up to the ceiling; a hung or dead node answers nothing and is routed around.

    d = HopDeadline(floor_s=0.5, ceiling_s=5.0, quantile=0.99, factor=3.0, window=200)
    d.observe(0.08); d.deadline_s()   # -> 0.5 (3 * 0.08 is under the floor)
"""
from __future__ import annotations

import collections

import numpy as np


class HopDeadline:
    def __init__(self, floor_s: float, ceiling_s: float, quantile: float, factor: float, window: int):
        self.floor_s, self.ceiling_s = floor_s, ceiling_s
        self.quantile, self.factor = quantile, factor
        self.latencies_s: collections.deque = collections.deque(maxlen=window)
        self._cached: float | None = None

    @classmethod
    def from_config(cls, cfg) -> "HopDeadline":
        """From a RuntimeConfig's hop_deadline_* fields."""
        return cls(cfg.hop_deadline_s, cfg.hop_deadline_max_s, cfg.hop_deadline_quantile, cfg.hop_deadline_factor,
                   cfg.hop_deadline_window)

    def observe(self, latency_s: float) -> None:
        """An answered hop took `latency_s` from its inputs being there to its answer."""
        self.latencies_s.append(latency_s)
        self._cached = None

    def deadline_s(self) -> float:
        if self._cached is None:
            if self.latencies_s:
                q = float(np.quantile(np.fromiter(self.latencies_s, float), self.quantile))
                self._cached = min(self.ceiling_s, max(self.floor_s, self.factor * q))
            else:
                self._cached = self.floor_s
        return self._cached
