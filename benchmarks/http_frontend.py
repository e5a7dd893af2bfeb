"""The HTTP front-end of the ResiliNet service alone: `Service` in front of a stub router that
answers every queued request at once after 2 ms (no Ray, no model), so what is measured is the
server's own cost: requests/s and server CPU per request for raw float32 batches.

    .venv/bin/python benchmarks/http_frontend.py --clients 8,32 --reps 2       # ~1 min
    # against the hand-written asyncio server of before issue 19 (service.py + httpserver.py of main):
    .venv/bin/python benchmarks/http_frontend.py --baseline main

With `--baseline COMMIT` both front-ends serve the same stub router and their rows are interleaved
(the old one is read from git: runtime.load_old_frontend).
"""
from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
import types
from concurrent.futures import Future

import torch

from resilinet.runtime.router import Answer
from resilinet.runtime.service import Service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtime import bench_http, load_old_frontend  # noqa: E402


class StubRouter:
    """The router's interface (submit / predict / batching), answering from one batcher thread:
    every request queued when it wakes is answered after `route_s`, like one merged batch."""
    batching = True

    def __init__(self, route_s: float = 0.002):
        self.route_s = route_s
        self.cfg = types.SimpleNamespace(hop_deadline_s=0.5, hop_deadline_max_s=0.5)
        self.supervisor = types.SimpleNamespace(status=dict)
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            items = [self.queue.get()]
            while not self.queue.empty():
                items.append(self.queue.get())
            time.sleep(self.route_s)
            for x, fut, t_in in items:
                fut.set_result(Answer(None, [0] * x.shape[0], {"e": True, "f1": True, "f2": True}, True, {},
                                      1e3 * (time.perf_counter() - t_in)))

    def submit(self, x) -> Future:
        fut: Future = Future()
        self.queue.put((x, fut, time.perf_counter()))
        return fut

    def predict(self, x) -> Answer:
        return self.submit(x).result()


class ServerCpu:
    """The `cpu` hook of `bench_http`: this process's CPU seconds at the window's start and end."""

    def __init__(self):
        self.client_pids: list[int] = []
        self.marks: list[float] = []

    def mark(self) -> None:
        self.marks.append(time.process_time())

    def per_1k(self, examples: float) -> dict:
        return {"server_cpu_s": self.marks[1] - self.marks[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="8,32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--baseline", default=None, metavar="COMMIT", help="the front end of COMMIT to compare against")
    args = ap.parse_args(argv)

    x = torch.randn(8 * args.batch, 784)
    router = StubRouter()
    fronts = {"current": Service(router, (784,)).start()}
    if args.baseline:
        fronts["baseline"] = load_old_frontend(args.baseline)(router, (784,)).start()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    try:
        for rep in range(args.reps):
            for c in map(int, args.clients.split(",")):
                names = list(fronts) if rep % 2 == 0 else list(reversed(fronts))
                for name in names:
                    cpu = ServerCpu()
                    r = bench_http(fronts[name].address, x, args.batch, c, args.seconds, True, cpu)
                    requests = r["examples_per_s"] * args.seconds / args.batch
                    print(f"rep {rep} {name:8s} clients {c:2d}: {requests / args.seconds:6.0f} requests/s, "
                          f"p50 {r['p50_ms']:5.1f} ms, server CPU {1e3 * r['server_cpu_s'] / requests:.2f} ms/request, "
                          f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for f in fronts.values():
            f.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
