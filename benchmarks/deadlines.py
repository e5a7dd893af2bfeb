"""ResiliNet service, issue 19 "slow is not dead": how often load alone makes a node count as dead,
and how fast a killed or hung node is routed around, with the fixed per-hop deadline of before
(every node 0.5 s) and the adaptive per-node deadlines (runtime/deadlines.py), interleaved in one
run on one service (the mode is switched between rows; the adaptive history starts empty in each).

    .venv/bin/python benchmarks/deadlines.py --run runs/rt-mlp --clients 16,32 --seconds 10 --reps 2 --failovers 2

False deaths: nothing is killed or hung, so every answer that counts a node dead is wrong. C client
processes post batches of --batch (JSON, or raw float32 with --body binary) to the HTTP endpoint
back to back for --seconds (the load of the issue: 16 and 32 clients); the row gives the share of answers with a node counted dead
and the hops routed around each node for a missed deadline (a routed batch merges concurrent
requests). `--slow f2:0.7:0.3` makes f2 a slow node, not a dead one: its process is stopped for
0.7 s and runs for 0.3 s, over and over (SIGSTOP / SIGCONT), so it answers every hop within ~0.7 s
and every health check well inside its 1 s deadline, like a node that gets the CPU in bursts;
with a fixed 0.5 s deadline the hops that arrive early in a pause miss it. Failover: one client sends batch-1 requests through the router; e (edge) or f2 (fog)
is SIGKILLed or SIGSTOPped; the time from the signal to the first answer that routes around it,
beside the node's deadline at the signal (goal: within it + 100 ms).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import replace

import numpy as np

from lab.io import atomic_write_json
from lab.report import md_table
from runtime import bench_http, measure_failover


def set_mode(sup, base_cfg, mode: str) -> None:
    """fixed: every node's deadline is hop_deadline_s (ceiling = floor), as before issue 19."""
    from resilinet.runtime.deadlines import HopDeadline

    cfg = base_cfg if mode == "adaptive" else replace(base_cfg, hop_deadline_max_s=base_cfg.hop_deadline_s)
    with sup.lock:
        sup.cfg = cfg
        for s in sup.nodes.values():
            s.deadline = HopDeadline.from_config(cfg)


class SlowNode:
    """While in the block, the node's process is stopped for stop_s and runs for run_s, repeatedly."""

    def __init__(self, sup, spec: str | None):
        self.sup, self.spec = sup, spec
        self.stop = threading.Event()

    def __enter__(self) -> "SlowNode":
        if self.spec:
            node, stop_s, run_s = self.spec.split(":")
            self.thread = threading.Thread(target=self._cycle, args=(node, float(stop_s), float(run_s)), daemon=True)
            self.thread.start()
        return self

    def _cycle(self, node: str, stop_s: float, run_s: float) -> None:
        while not self.stop.is_set():
            pid = self.sup.nodes[node].pid
            os.kill(pid, signal.SIGSTOP)
            time.sleep(stop_s)
            os.kill(pid, signal.SIGCONT)
            self.stop.wait(run_s)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.spec:
            self.thread.join()


def false_deaths(service, x, args, base_cfg) -> list[dict]:
    sup, rows = service.router.supervisor, []
    for rep in range(args.reps):
        for c in map(int, args.clients.split(",")):
            for mode in (("fixed", "adaptive") if (rep + c) % 2 else ("adaptive", "fixed")):
                set_mode(sup, base_cfg, mode)
                before = {n: s["routed_around"]["deadline"] for n, s in sup.status().items()}
                with SlowNode(sup, args.slow):
                    r = bench_http(service.address, x, args.batch, c, args.seconds, binary=args.body == "binary")
                after = sup.status()
                rows.append({"mode": mode, "rep": rep, "clients": c, "batch": args.batch, "body": args.body,
                             "slow": args.slow, "restarts": {n: s["restarts"] for n, s in after.items()},
                             "answers": r["answers"], "answers_with_a_dead_node": r["answers_with_a_dead_node"],
                             "share_wrongly_dead": r["answers_with_a_dead_node"] / max(1, r["answers"]),
                             "deadline_misses": {n: after[n]["routed_around"]["deadline"] - before[n] for n in before},
                             "deadline_s_at_end": {n: s["deadline_s"] for n, s in after.items()},
                             "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "examples_per_s": r["examples_per_s"],
                             "load_average": os.getloadavg()[0]})
                print({k: rows[-1][k] for k in ("mode", "rep", "clients", "answers", "answers_with_a_dead_node",
                                                "deadline_misses", "p99_ms")}, flush=True)
    return rows


def failovers(service, x, args, base_cfg) -> list[dict]:
    sup, rows = service.router.supervisor, []
    for k in range(args.failovers):
        for node in ("e", "f2"):
            for how in ("kill", "hang"):
                for mode in (("fixed", "adaptive") if k % 2 else ("adaptive", "fixed")):
                    set_mode(sup, base_cfg, mode)
                    for _ in range(20):   # a history for the adaptive deadline to follow
                        service.router.predict(x[:1])
                    deadline_s = sup.deadline_s(node)
                    took = measure_failover(service.router, x, node, how)
                    rows.append({"mode": mode, "node": node, "how": how, "rep": k, "seconds": took,
                                 "deadline_s": deadline_s, "within_deadline_plus_100ms": took <= deadline_s + 0.1})
                    print(rows[-1], flush=True)
    return rows


def summary_tables(fd: list[dict], fo: list[dict]) -> str:
    out = []
    keys = sorted({(r["clients"], r["mode"]) for r in fd})
    out.append(md_table(["clients", "deadlines", "answers", "with a node counted dead", "share", "deadline misses (e / f2 / f1)",
                         "p99 ms"],
                        [[c, m, sum(r["answers"] for r in sel), sum(r["answers_with_a_dead_node"] for r in sel),
                          f"{sum(r['answers_with_a_dead_node'] for r in sel) / max(1, sum(r['answers'] for r in sel)):.1%}",
                          " / ".join(str(sum(r["deadline_misses"][n] for r in sel)) for n in ("e", "f2", "f1")),
                          f"{np.median([r['p99_ms'] for r in sel]):.0f}"]
                         for c, m in keys for sel in [[r for r in fd if (r["clients"], r["mode"]) == (c, m)]]]))
    keys = sorted({(r["node"], r["how"], r["mode"]) for r in fo})
    out.append(md_table(["node", "signal", "deadlines", "failover ms (each)", "node deadline ms", "within deadline + 100 ms"],
                        [[n, h, m, ", ".join(f"{1e3 * r['seconds']:.0f}" for r in sel),
                          ", ".join(f"{1e3 * r['deadline_s']:.0f}" for r in sel),
                          f"{sum(r['within_deadline_plus_100ms'] for r in sel)}/{len(sel)}"]
                         for n, h, m in keys for sel in [[r for r in fo if (r["node"], r["how"], r["mode"]) == (n, h, m)]]]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/rt-mlp", help="a trained MLP run directory")
    ap.add_argument("--out", default="runs/deadlines_bench.json")
    ap.add_argument("--clients", default="16,32")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--body", choices=("json", "binary"), default="json",
                    help="request bodies: JSON numbers (as a new user sends them; parsing them loads the service "
                         "process) or raw float32")
    ap.add_argument("--seconds", type=float, default=10.0, help="per false-death row")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--slow", default=None, metavar="NODE:STOP_S:RUN_S",
                    help="make NODE slow during the false-death rows (e.g. f2:0.7:0.3)")
    ap.add_argument("--failovers", type=int, default=2, help="repeats per node x signal x mode")
    args = ap.parse_args(argv)

    import torch

    from resilinet.config import RuntimeConfig
    from resilinet.data import load_splits
    from resilinet.run import load_run
    from resilinet.runtime.service import start_service, stop_service

    torch.set_num_threads(1)
    cfg, _, seed = load_run(args.run)
    x = load_splits(cfg, seed).x_test
    base_cfg = RuntimeConfig(port=0)
    service = start_service(args.run, base_cfg)
    try:
        fd = false_deaths(service, x, args, base_cfg)
        fo = failovers(service, x, args, base_cfg) if args.failovers else []
    finally:
        stop_service(service)
    atomic_write_json(args.out, {"run": args.run, "runtime": {k: getattr(base_cfg, k) for k in (
        "hop_deadline_s", "hop_deadline_max_s", "hop_deadline_quantile", "hop_deadline_factor", "hop_deadline_window",
        "health_deadline_s")}, "cpus": os.cpu_count(), "false_deaths": fd, "failovers": fo})
    print(summary_tables(fd, fo))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
