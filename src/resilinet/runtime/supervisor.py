"""Node processes and their health: spawn one actor per physical node, health-check each with a
real forward pass, restart crashed or hung ones; the service keeps running throughout.

Settings: `RuntimeConfig` (config.py, `runtime.*`). Node states (what the router reads):
    starting    actor created, constructor / first health check not done yet
    up          last health check passed within `health_deadline_s`
    down        a call failed (the process is gone); a replacement is being started
    hung        a health check is overdue; routed around; killed and replaced after `hung_restart_s`
A "slow" node that misses one request's hop deadline is dead for THAT request only (the router
decides); only the health check moves it to `hung`, so slow and dead are not conflated. Each node's
deadline follows its own measured hop latency (`deadlines.py`), and each node counts the hops
routed around it by why: `deadline` (missed it), `dead` (its process was gone, or was being
restarted) and `hung` (its health check was overdue). Expected deaths are logged as one line each.
A routed request that a node answered within the last `health_interval_s` is itself a real
forward pass, so under load the check is skipped for that node (it costs an actor call each).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import RuntimeConfig
from ..models import PartitionedModel
from .cluster import ray, role_of
from .deadlines import HopDeadline
from .node import NodeProcess

log = logging.getLogger("resilinet.runtime")
# why a hop was routed around (the router's dead_reason) -> the counter it goes to
ROUTED_AROUND = {"deadline": "deadline", "failed": "dead", "down": "dead", "starting": "dead", "hung": "hung"}


@dataclass
class NodeState:
    name: str
    role: str
    failure_prone: bool
    state: str = "starting"
    handle: object = None
    generation: int = 0          # incremented on every (re)start; stale failure reports are ignored
    pid: int | None = None
    restarts: int = 0
    since: float = field(default_factory=time.monotonic)   # when `state` was entered
    pending: tuple | None = None  # (health ref, submitted at)
    served: int = 0               # requests this node answered (router's count, across restarts)
    last_ok: float = 0.0          # monotonic time of its last answered request (this generation)
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    deadline: HopDeadline | None = None
    answered_at: float = 0.0      # perf_counter time of its last answer (a routed hop or a health check)
    routed_around: collections.Counter = field(
        default_factory=lambda: collections.Counter({k: 0 for k in ("deadline", "dead", "hung")}))
    last_error: str = ""
    events: list = field(default_factory=list)  # (monotonic time, what) restarts, rejoins

    def summary(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else None
        return {"state": self.state, "role": self.role, "pid": self.pid, "restarts": self.restarts,
                "generation": self.generation, "requests_served": self.served,
                "state_for_s": round(time.monotonic() - self.since, 3),
                "latency_ms": ({"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                                "p99": float(np.percentile(lat, 99)), "n": int(lat.size)} if lat is not None else None),
                "deadline_s": round(self.deadline.deadline_s(), 4) if self.deadline else None,
                "routed_around": dict(self.routed_around), "last_error": self.last_error}


class Supervisor:
    def __init__(self, models: dict[str, PartitionedModel], cfg: RuntimeConfig | None = None):
        """`models`: deployment key -> model; all share one chain (one process per physical node
        hosts that node's partition of each)."""
        self.cfg = cfg or RuntimeConfig()
        self.topology = next(iter(models.values())).topology
        if any(m.topology.chain != self.topology.chain for m in models.values()):
            raise ValueError("models hosted together must share one chain of physical nodes")
        self.lock = threading.RLock()
        self.started = False
        # The trained modules go to the object store once; every (re)start reads them from there.
        self.modules = {n: ray.put({k: m.nodes[n].eval() for k, m in models.items()})
                        for n in self.topology.chain}
        self.nodes = {n: NodeState(n, role_of(n, self.topology), n in self.topology.failure_prone,
                                   deadline=HopDeadline.from_config(self.cfg)) for n in self.topology.chain}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, wait_s: float = 120.0) -> None:
        if self.started:
            return
        self.started = True
        for n, s in self.nodes.items():
            if s.handle is None:
                self._spawn(n)
        t0 = time.monotonic()
        while not all(s.state == "up" for s in self.nodes.values()):
            if time.monotonic() - t0 > wait_s:
                raise TimeoutError(f"node processes not healthy after {wait_s:.0f} s: "
                                   f"{ {n: s.state for n, s in self.nodes.items()} }")
            self.check_once()
            time.sleep(0.05)
        self._thread = threading.Thread(target=self._loop, name="resilinet-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for s in self.nodes.values():
            if s.handle is not None:
                try:
                    ray.kill(s.handle, no_restart=True)
                except Exception:  # already gone
                    pass

    def _spawn(self, name: str) -> None:
        s = self.nodes[name]
        s.handle = NodeProcess.options(resources={s.role: 1.0}).remote(self.modules[name], self.cfg.threads)
        s.generation += 1
        s.pending, s.pid = None, None
        self._set(s, "starting")

    def _set(self, s: NodeState, state: str) -> None:
        if s.state != state:
            s.events.append((time.monotonic(), state))
            del s.events[:-50]
        s.state, s.since = state, time.monotonic()

    def _replace(self, s: NodeState, why: str) -> None:
        with self.lock:
            s.last_error = why
            log.warning(f"resilinet: node {s.name} (pid {s.pid}) {why}; starting a new process")
            try:
                ray.kill(s.handle, no_restart=True)  # SIGKILLs a hung process; no-op for a dead one
            except Exception:
                pass
            s.restarts += 1
            self._spawn(s.name)

    # -- health --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.health_interval_s):
            try:
                self.check_once()
            except Exception as e:  # keep supervising whatever happens to one check
                print(f"resilinet supervisor: health check error: {e!r}")

    def check_once(self) -> None:
        now = time.monotonic()
        for s in self.nodes.values():
            if s.pending is None and not (s.state == "up" and now - s.last_ok < self.cfg.health_interval_s):
                s.pending = (s.handle.health.remote(), now, s.generation)
        refs = [s.pending[0] for s in self.nodes.values() if s.pending is not None]
        if not refs:
            return
        ray.wait(refs, num_returns=len(refs), timeout=min(self.cfg.health_interval_s, self.cfg.health_deadline_s))
        now = time.monotonic()
        for s in self.nodes.values():
            if s.pending is None:
                continue
            ref, sent_at, gen = s.pending
            if gen != s.generation:
                s.pending = None
                continue
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                s.pending = None
                try:
                    h = ray.get(ref)
                except Exception as e:  # the process died (RayActorError) or the forward raised
                    self._replace(s, f"health check failed: {type(e).__name__}")
                    continue
                with self.lock:
                    s.pid, s.answered_at = h["pid"], time.perf_counter()
                    # A check answered late but inside its own deadline is a slow node's latency
                    # the router cannot see: hops that slow were cut off at the hop deadline.
                    if h["ok"] and now - sent_at <= self.cfg.health_deadline_s:
                        s.deadline.observe(now - sent_at)
                    if not h["ok"]:
                        s.last_error = "health forward pass produced non-finite values"
                        self._set(s, "hung")
                    elif s.state != "up":
                        self._set(s, "up")
                continue
            age = now - sent_at
            if s.state in ("starting",):
                if age > self.cfg.start_timeout_s:
                    self._replace(s, f"not healthy {age:.0f} s after start")
            elif s.state in ("up", "down"):
                if age > self.cfg.health_deadline_s:
                    with self.lock:
                        s.last_error = f"health check overdue ({age:.2f} s)"
                        self._set(s, "hung")
            elif s.state == "hung" and now - s.since > self.cfg.hung_restart_s:
                self._replace(s, f"hung for {now - s.since:.1f} s")

    # -- what the router reports ---------------------------------------------------------------
    def report_failure(self, name: str, generation: int, why: str) -> None:
        """A call to `name` failed (its process is gone): route around it now; the next health
        check replaces it."""
        with self.lock:
            s = self.nodes[name]
            if s.generation == generation and s.state == "up":
                s.last_error = why
                self._set(s, "down")

    def routable(self, name: str) -> tuple[object, int] | None:
        """(actor handle, generation) when `name` is up, else None (route around it)."""
        with self.lock:
            s = self.nodes[name]
            return (s.handle, s.generation) if s.state == "up" else None

    def record(self, name: str, generation: int, latency_ms: float) -> None:
        """`name` (started as `generation`) answered a routed request in `latency_ms`."""
        with self.lock:
            s = self.nodes[name]
            s.served += 1
            s.latencies_ms.append(latency_ms)
            s.deadline.observe(latency_ms / 1e3)
            s.answered_at = time.perf_counter()
            if s.generation == generation:
                s.last_ok = time.monotonic()

    def deadline_s(self, name: str) -> float:
        """`name`'s hop deadline now (it follows the node's measured hop latency)."""
        with self.lock:
            return self.nodes[name].deadline.deadline_s()

    def answered_since(self, name: str, t: float) -> bool:
        """Did `name` answer anything (a routed hop, a health check) after perf_counter time `t`?"""
        return self.nodes[name].answered_at > t

    def count_routed_around(self, reasons: dict[str, str]) -> None:
        """One routed batch went around these nodes (node -> the router's dead_reason)."""
        with self.lock:
            for name, why in reasons.items():
                self.nodes[name].routed_around[ROUTED_AROUND.get(why, "dead")] += 1

    def status(self) -> dict:
        with self.lock:
            return {n: s.summary() for n, s in self.nodes.items()}

    def pids(self) -> dict[str, int | None]:
        with self.lock:
            return {n: (s.pid if s.state == "up" else None) for n, s in self.nodes.items()}
