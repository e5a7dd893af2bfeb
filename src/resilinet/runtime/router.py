"""Routing one request IoT -> ... -> cloud with real failures (spec section 7).

For each node in chain order the router plays the consumer's side of every incoming link: a
producer delivered if its call returned within `hop_deadline_s` of being made; it is dead for
this request if its call failed (process gone), missed the deadline (hung or too slow), or the
supervisor already knows it is not up (then no time is spent waiting on it). The consumer is then
called with the method's inputs: each alive producer's tensor, `None` + alive 0 for a dead one,
and `PhysicalNode` applies the rule -- ResiliNet's multiplexer takes the skip input, deepFogGuard /
ResiliNet+ drop the term -- exactly as in the simulation. Each hop has its own deadline, measured
from its own call, so a hung node early in the chain does not make every later hop miss too.

When no IoT -> cloud path survived (always the case for vanilla with any dead node) the cloud
guesses a class from the training label prior, as the exact evaluation assumes. The IoT and the
cloud never fail in the paper's model; if their process crashes anyway the request waits for the
supervisor to bring it back and is retried, so it is not lost.

Tensor refs flow from producer actor to consumer actor through Ray's object store; the router
only reads each call's small status, and the logits at the end.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..models import PartitionedModel
from .cluster import ray
from .supervisor import RuntimeConfig, Supervisor


class ServiceUnavailable(RuntimeError):
    """The IoT or the cloud stayed down longer than `endpoint_wait_s`."""


@dataclass
class Answer:
    logits: torch.Tensor | None        # [B, n_classes] computed by the cloud (None if the cloud was cut off... never: it always runs)
    predictions: list[int]             # argmax of logits, or the prior guess when no path survived
    alive: dict[str, bool]             # failure-prone node -> alive for this request
    connected: bool                    # did an IoT -> cloud path survive
    dead_reason: dict[str, str]        # failure-prone node -> why it counted as dead
    latency_ms: float
    attempts: int = 1

    def to_json(self, with_logits: bool = False) -> dict:
        out = {"predictions": self.predictions, "alive": self.alive, "connected": self.connected,
               "guessed": not self.connected, "dead_reason": self.dead_reason,
               "latency_ms": round(self.latency_ms, 3)}
        if with_logits and self.logits is not None:
            out["logits"] = self.logits.tolist()
        return out


class Router:
    def __init__(self, model: PartitionedModel, prior: torch.Tensor, cfg: RuntimeConfig | None = None,
                 seed: int = 0, supervisor: Supervisor | None = None, key: str = "model"):
        """`supervisor`: share node processes with other routers (their models under other keys);
        by default the router owns a supervisor hosting `model` alone."""
        self.key = key
        self.supervisor = supervisor or Supervisor({key: model}, cfg)
        self.cfg = self.supervisor.cfg
        self.topology = model.topology
        self.consumers = {n: model.nodes[n].consumers for n in self.topology.chain}
        self.producers = {n: model.nodes[n].producers for n in self.topology.chain}
        prior = np.asarray(torch.as_tensor(prior, dtype=torch.float64))
        self.prior = prior / prior.sum()
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def start(self) -> "Router":
        self.supervisor.start()
        return self

    def stop(self) -> None:
        self.supervisor.stop()

    # -- one request ---------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> Answer:
        """x [B, *input_shape] -> Answer. Retries while the IoT or cloud process is being restarted."""
        t0 = time.perf_counter()
        give_up = time.monotonic() + self.cfg.endpoint_wait_s
        attempt = 0
        while True:
            attempt += 1
            try:
                ans = self._route(x, t0)
                ans.attempts = attempt
                return ans
            except _EndpointDown as e:
                if time.monotonic() > give_up:
                    raise ServiceUnavailable(f"{e} for over {self.cfg.endpoint_wait_s:.0f} s") from None
                time.sleep(0.05)

    def _route(self, x: torch.Tensor, t0: float) -> Answer:
        topo, sup = self.topology, self.supervisor
        b = x.shape[0]
        delivered: dict[str, dict[str, object]] = {}  # producer -> {consumer: tensor ref}
        reason: dict[str, str] = {}
        logits_ref = None
        for name in topo.chain:
            if name == topo.iot:
                inputs, alive = [x], {"input": 1.0}
            else:
                inputs = [delivered.get(p, {}).get(name) for p in self.producers[name]]
                alive = {p: (1.0 if p in delivered else 0.0) for p in self.producers[name]}
            endpoint = name in (topo.iot, topo.cloud)
            target = sup.routable(name)
            if target is None:
                if endpoint:
                    raise _EndpointDown(f"{name} is {sup.nodes[name].state}")
                reason[name] = sup.nodes[name].state  # known down / hung / starting: skip at once
                continue
            handle, gen = target
            n_out = max(1, len(self.consumers[name]))
            t_call = time.perf_counter()
            refs = handle.forward.options(num_returns=1 + n_out).remote(self.key, alive, b, *inputs)
            try:
                ray.get(refs[0], timeout=self.cfg.hop_deadline_s)
            except ray.exceptions.GetTimeoutError:
                _cancel(refs[0])
                if endpoint:
                    raise _EndpointDown(f"{name} missed the {self.cfg.hop_deadline_s} s deadline")
                reason[name] = "deadline"
                continue
            except ray.exceptions.RayError as e:
                sup.report_failure(name, gen, f"call failed: {type(e).__name__}")
                if endpoint:
                    raise _EndpointDown(f"{name} failed ({type(e).__name__})")
                reason[name] = "failed"
                continue
            sup.record(name, 1e3 * (time.perf_counter() - t_call))
            if self.consumers[name]:
                delivered[name] = dict(zip(self.consumers[name], refs[1:]))
            else:
                logits_ref = refs[1]
        alive_mask = {n: n in delivered for n in topo.failure_prone}
        connected = topo.connected(alive_mask | {topo.iot: True, topo.cloud: True})
        try:
            logits = ray.get(logits_ref, timeout=self.cfg.hop_deadline_s)
        except ray.exceptions.RayError as e:
            raise _EndpointDown(f"cloud result lost ({type(e).__name__})") from None
        if connected:
            preds = logits.argmax(1).tolist()
        else:
            with self._rng_lock:
                preds = self._rng.choice(len(self.prior), size=b, p=self.prior).tolist()
        return Answer(logits, preds, alive_mask, connected, reason, 1e3 * (time.perf_counter() - t0))


class _EndpointDown(Exception):
    pass


def _cancel(ref) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # running actor tasks may refuse cancellation; the result is simply ignored
        pass
