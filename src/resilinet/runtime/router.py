"""Routing one request IoT -> ... -> cloud with real failures (spec section 7).

The router submits every hop's actor call at once, passing each producer's output ref as the
consumer's argument: Ray hands each input over when it is ready, node to node, so the hops of
one request follow each other without a round trip through the router, and the hops of
concurrent requests overlap. The router then confirms the hops in chain order, playing the
consumer's side of every incoming link: a producer delivered if its call finished within its
deadline (from its inputs being there; each node's deadline follows its own measured latency,
deadlines.py, and is extended while the node is seen answering other work: slow is not dead); it
is dead for this request if its call failed (process gone) or missed the deadline (hung), and
then every later hop is cancelled and submitted again with that producer's input `None` + alive
0, so `PhysicalNode` applies the
method's rule -- ResiliNet's multiplexer takes the skip input, deepFogGuard / ResiliNet+ drop the
term -- exactly as in the simulation. A node the supervisor already knows is not up is left out
of the graph from the start (no time is spent waiting on it). Each hop has its own deadline, so a
hung node early in the chain does not make every later hop miss too.

When no IoT -> cloud path survived (always the case for vanilla with any dead node) the cloud
guesses a class from the training label prior, as the exact evaluation assumes. The IoT and the
cloud never fail in the paper's model; if their process crashes anyway the request waits for the
supervisor to bring it back and is retried, so it is not lost.

The raw input goes straight to every node that needs it. The MLP's IoT node has no layers, so its
link to the edge carries the request's input unchanged; relayed, that tensor would travel router ->
IoT -> router -> edge (Ray returns an actor's result to its caller, which passes it on), so the
router, which holds the input, sends it to the edge itself: one input-sized transfer less per
request (3 of the 21 MB a batch of 1024 examples moved). The edge then no longer waits for the
IoT; the IoT never fails in the paper's model, and if its process does, the request is retried
as before. `RuntimeConfig.input_direct=False` restores the relay through the IoT process.

Cross-request batching: every hop costs an actor call (ms), whatever the batch, so concurrent
requests are merged: requests that arrive while `routes_in_flight` merged batches are on their
way are concatenated (up to `batch_examples` examples) into the next one, and each gets its rows
back with the alive pattern its batch was computed under.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import RuntimeConfig
from ..models import PartitionedModel
from ..topology import LOGITS, AliveMask, producer_flags
from .cluster import ray
from .supervisor import Supervisor


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
        self._owns_supervisor = supervisor is None
        self.supervisor = supervisor or Supervisor({key: model}, cfg)
        self.topology = model.topology
        self.consumers = {n: model.nodes[n].consumers for n in self.topology.chain}
        self.producers = {n: model.nodes[n].producers for n in self.topology.chain}
        iot = model.nodes[self.topology.iot]
        # the IoT's consumers that the router sends the raw input itself (empty: the IoT relays it)
        self.direct = tuple(c for c in iot.consumers if iot.passes_input_to(c)) if self.cfg.input_direct else ()
        prior = np.asarray(torch.as_tensor(prior, dtype=torch.float64))
        self.prior = prior / prior.sum()
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(max(1, self.cfg.routes_in_flight))
        self._pool: ThreadPoolExecutor | None = None
        self._batcher: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def cfg(self) -> RuntimeConfig:
        """The settings of the node processes this router routes through (the supervisor's)."""
        return self.supervisor.cfg

    def start(self) -> "Router":
        self.supervisor.start()
        if self.cfg.batch_examples > 0 and self._batcher is None:
            self._pool = ThreadPoolExecutor(max(1, self.cfg.routes_in_flight), thread_name_prefix="resilinet-route")
            self._batcher = threading.Thread(target=self._batch_loop, name="resilinet-batcher", daemon=True)
            self._batcher.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._batcher is not None:
            self._batcher.join(timeout=5)
            self._pool.shutdown(wait=True)
            self._batcher = None
        if self._owns_supervisor:
            self.supervisor.stop()

    # -- one request ---------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> Answer:
        """x [B, *input_shape] -> Answer (merged with concurrent requests when batching is on)."""
        if self._batcher is None:
            return self.predict_now(x)
        return self.submit(x).result()

    @property
    def batching(self) -> bool:
        return self._batcher is not None

    def submit(self, x: torch.Tensor) -> Future:
        """Like `predict` without waiting: a Future of the Answer (for an event loop, which must
        not block). Only with batching on: the batcher thread routes it."""
        if self._batcher is None:
            raise RuntimeError("Router.submit needs a started router with batching on (batch_examples > 0)")
        fut: Future = Future()
        self._queue.put((x, fut, time.perf_counter()))
        return fut

    def _batch_loop(self) -> None:
        while not self._stopping.is_set():
            self._slots.acquire()  # wait for a free route; requests pile up in the queue meanwhile
            try:
                items = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                self._slots.release()
                continue
            n = items[0][0].shape[0]
            while n < self.cfg.batch_examples:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                n += item[0].shape[0]
            self._pool.submit(self._run_merged, items)

    def _run_merged(self, items: list) -> None:
        try:
            x = items[0][0] if len(items) == 1 else torch.cat([it[0] for it in items])
            ans = self.predict_now(x)
            lo = 0
            for xi, fut, t_in in items:
                hi = lo + xi.shape[0]
                fut.set_result(replace(ans, logits=None if ans.logits is None else ans.logits[lo:hi],
                                       predictions=ans.predictions[lo:hi],
                                       latency_ms=1e3 * (time.perf_counter() - t_in)))
                lo = hi
        except BaseException as e:  # every waiting request learns what happened
            for _, fut, _ in items:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self._slots.release()

    def predict_now(self, x: torch.Tensor) -> Answer:
        """Route x [B, *input_shape] now (no merging). Retries while the IoT or cloud process is
        being restarted."""
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
        topo, b = self.topology, x.shape[0]
        x_np = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        reason: dict[str, str] = {}                  # failure-prone node -> why it is dead for this request
        calls = self._submit_graph(x_np, reason)
        self._confirm_hops(calls, x_np, reason)
        self.supervisor.count_routed_around(reason)
        alive = AliveMask.from_nodes(topo, calls)   # the nodes that delivered
        try:
            logits = torch.from_numpy(np.array(ray.get(calls[topo.cloud].refs[1],
                                                       timeout=self.supervisor.deadline_s(topo.cloud))))
        except ray.exceptions.RayError as e:
            raise _EndpointDown(f"cloud result lost ({type(e).__name__})") from None
        if alive.connected:
            preds = logits.argmax(1).tolist()
        else:
            with self._rng_lock:
                preds = self._rng.choice(len(self.prior), size=b, p=self.prior).tolist()
        return Answer(logits, preds, alive.failure_prone(), alive.connected, reason, 1e3 * (time.perf_counter() - t0))

    def _submit_graph(self, x_np: np.ndarray, reason: dict[str, str]) -> dict[str, "_Call"]:
        """1. The whole graph at once, every node the supervisor reports up assumed to deliver."""
        topo, sup = self.topology, self.supervisor
        calls: dict[str, _Call] = {}
        for name in topo.chain:
            target = sup.routable(name)
            if target is None:
                if name in (topo.iot, topo.cloud):
                    raise _EndpointDown(f"{name} is {sup.nodes[name].state}")
                reason[name] = sup.nodes[name].state  # known down / hung / starting: skip at once
                continue
            calls[name] = self._submit(name, *target, calls, x_np, x_np.shape[0])
        return calls

    def _confirm_hops(self, calls: dict[str, "_Call"], x_np: np.ndarray, reason: dict[str, str]) -> None:
        """2. Confirm hop by hop in chain order. A hop's deadline runs from the moment its inputs were
        there (the previous hop confirmed, or the call made); a hop that fails or misses it is dead
        for this request (dropped from `calls`), and every later hop is submitted again without it."""
        topo, sup = self.topology, self.supervisor
        inputs_at = time.perf_counter()
        for i, name in enumerate(topo.chain):
            call = calls.get(name)
            if call is None:
                continue
            why = self._wait_hop(name, call, inputs_at)
            if why is None:
                now = time.perf_counter()
                sup.record(name, call.generation, 1e3 * (now - inputs_at))
                inputs_at = now
                continue
            if name in (topo.iot, topo.cloud):
                raise _EndpointDown(f"{name} {'missed the deadline' if why == 'deadline' else 'failed'}")
            reason[name] = why
            del calls[name]
            for later in topo.chain[i + 1:]:
                if later in calls:
                    _cancel(calls[later].refs[0])
                    calls[later] = self._submit(later, calls[later].handle, calls[later].generation, calls, x_np,
                                                x_np.shape[0])
            _cancel(call.refs[0])
            inputs_at = time.perf_counter()

    def _wait_hop(self, name: str, call: "_Call", inputs_at: float) -> str | None:
        """Wait for `name`'s answer: None when it came, "failed" when its process is gone,
        "deadline" when it missed its deadline without answering anything else meanwhile. A node
        that answered other work (another request's hop, a health check) since the last check is
        slow, not dead: it gets one more deadline, up to `hop_deadline_max_s` after its inputs."""
        sup = self.supervisor
        ceiling = inputs_at + self.cfg.hop_deadline_max_s
        checked, until = inputs_at, inputs_at + sup.deadline_s(name)
        while True:
            try:
                ray.get(call.refs[0], timeout=max(0.0, until - time.perf_counter()))
                return None
            except ray.exceptions.GetTimeoutError:
                now = time.perf_counter()
                if now >= ceiling or not sup.answered_since(name, checked):
                    return "deadline"
                checked, until = now, min(ceiling, now + sup.deadline_s(name))
            except ray.exceptions.RayError as e:
                sup.report_failure(name, call.generation, f"call failed: {type(e).__name__}")
                return "failed"

    def _submit(self, name: str, handle, generation: int, calls: dict, x_np: np.ndarray, b: int) -> "_Call":
        """Call `name` with its producers' output refs as arguments (Ray hands them over when
        they are ready, actor to actor); a producer not in `calls` is dead: None, alive 0."""
        iot, omit = self.topology.iot, ()
        if name == iot:
            inputs, omit = [x_np], self.direct
        else:
            def arg(p: str):
                if p == iot and name in self.direct:
                    return x_np                # the raw input, from the router instead of through the IoT
                return calls[p].sent[name] if p in calls else None
            inputs = [arg(p) for p in self.producers[name]]
        alive = producer_flags(self.producers[name], calls)
        consumers = tuple(c for c in self.consumers[name] or (LOGITS,) if c not in omit)
        refs = handle.forward.options(num_returns=1 + len(consumers)).remote(self.key, alive, b, omit, *inputs)
        refs = refs if consumers else [refs]   # one return (vanilla's IoT, its only link omitted): a bare ref
        return _Call(handle, generation, refs, dict(zip(consumers, refs[1:])))


@dataclass
class _Call:
    handle: object
    generation: int
    refs: list                      # [status ref, one ref per consumer]
    sent: dict                      # consumer (or LOGITS) -> ref of what this node sends it


class _EndpointDown(Exception):
    pass


def _cancel(ref) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # running actor tasks may refuse cancellation; the result is simply ignored
        pass
