"""One Ray actor per physical node: it holds the node's partition and runs it on request.

    actor = NodeProcess.options(resources={"fog": 1}).remote({"model": module}, threads=1)
    status_ref, *sent_refs = actor.forward.options(num_returns=1 + len(consumers)).remote(
        "model", alive, batch_size, omit, *inputs)
    # inputs: one per producer (priority order): a float32 numpy array [B, ...], an ObjectRef to
    #         one (Ray resolves it before the call runs), or None (dead for this request)
    # alive:  {producer: 1.0 / 0.0}
    # status: {"node", "pid", "compute_ms"}  (tiny; the router reads it to learn the call succeeded)
    # sent:   one numpy array per consumer (topology.consumers order); the cloud sends logits [B, C]
    #         (none for the consumers in `omit`, e.g. ("e",): the router sends them the input itself)

A process may host this node's partition of several deployments (e.g. one per method, keyed by
name): the tests serve all four methods from one set of five processes. The module is the trained
`PhysicalNode` itself (weights from the run's checkpoint, shipped by
the service through Ray's object store, so a remote machine needs no copy of the run directory).
The refs go straight to the consumers' actors: data moves node to node, the router only reads the
small status.

Activations travel as numpy arrays, not torch tensors: Ray stores numpy arrays in its shared-memory
object store and reads them back zero-copy, while a torch tensor is pickled and copied (measured on
this machine: a [512, 784] float32 batch through an actor call takes ~11 ms as numpy, ~58 ms as a
tensor). The node wraps them with `torch.from_numpy` (no copy) and never writes into them.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch

from ..topology import INPUT, LOGITS, producer_flags
from .cluster import ray


# Several threads: Ray then runs calls in the order their inputs are ready, not the order they
# were made, so a call waiting on a hung producer's output never holds up the calls behind it.
@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=4)
class NodeProcess:
    def __init__(self, modules: dict, threads: int = 1):
        torch.set_num_threads(threads)
        # Arrays read from the object store are read-only views; the node only reads its inputs.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.modules = {k: m.eval() for k, m in modules.items()}  # deployment key -> PhysicalNode
        self.name = next(iter(self.modules.values())).name
        self.served = 0  # requests (batches) this process answered

    @torch.no_grad()
    def forward(self, key: str, alive: dict[str, float], batch_size: int, omit: tuple[str, ...], *inputs):
        """omit: consumers the caller sends this node's output itself (a link that carries the
        request's input unchanged); nothing is returned for them. (Positional: Ray methods take
        no keyword-only arguments.)"""
        t0 = time.perf_counter()
        node = self.modules[key]
        tensors = [None if a is None else torch.from_numpy(np.asarray(a)) for a in inputs]
        sent = node(dict(zip(node.producers, tensors)), alive, batch_size=batch_size)
        outs = tuple(sent[c].numpy() for c in (node.consumers or (LOGITS,)) if c not in omit)
        self.served += 1
        status = {"node": self.name, "pid": os.getpid(),
                  "compute_ms": 1e3 * (time.perf_counter() - t0)}
        return (status, *outs)

    @torch.no_grad()
    def health(self) -> dict:
        """A real forward pass on a zero batch of one, every producer alive (catches a process
        that answers pings but cannot compute)."""
        t0 = time.perf_counter()
        ok = True
        for node in self.modules.values():
            if node.producers == (INPUT,):
                inputs = {INPUT: torch.zeros(1, *node.in_shape)}
            else:
                inputs = {p: None for p in node.producers}
            out = node(inputs, producer_flags(node.producers, node.producers), batch_size=1)
            ok = ok and all(bool(torch.isfinite(t).all()) for t in out.values())
        return {"node": self.name, "pid": os.getpid(), "ok": ok, "served": self.served,
                "compute_ms": 1e3 * (time.perf_counter() - t0)}

    def pid(self) -> int:
        return os.getpid()

    def placement(self) -> dict:
        """Where this process runs: the Ray node (machine / raylet) and its address."""
        ctx = ray.get_runtime_context()
        return {"node": self.name, "pid": os.getpid(), "ray_node_id": ctx.get_node_id(),
                "ip": ray.util.get_node_ip_address()}
