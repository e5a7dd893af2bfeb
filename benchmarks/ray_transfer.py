"""What one Ray actor call costs in CPU, by the size of what it carries, on this machine's local
cluster; and what that means for the ResiliNet MLP chain (the floor under `benchmarks/runtime.py`).

    .venv/bin/python benchmarks/ray_transfer.py --run runs/rt-mlp      # ~1 min; table + runs/ray_transfer.json

An echo actor takes an array of S MB and returns one of S MB; many calls are in flight at once
(as in the service). Two transports, each on its own fresh loopback cluster:
  inline  objects up to 8 MiB travel inside the task messages (the service's setting, cluster.py)
  plasma  Ray's default: objects over 100 KiB go through the shared-memory object store
Each row gives the CPU per call spent by the caller, the actor and the other Ray processes
(raylet, object store), beside a plain numpy copy of the same bytes in this process. The fit
`CPU = fixed + per_MB * MB` (MB carried in + out) then prices the MLP chain: the bytes one merged
route of 1024 examples moves (the input to the IoT node, every node-to-node link, the logits
back), the calls it makes, and the partitions' own compute (in-process, batch 1024). Their sum,
CPU per 1000 examples, bounds the service's throughput on 2 cores:
`2 cores / (CPU per example)` against the in-process model's `1 core / (its CPU per example)`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from lab.io import atomic_write_json
from timing import best_of, cpu_seconds

SIZES_MB = (0.0, 0.25, 1.0, 4.0)


def measure(transport: str, calls: int) -> list[dict]:
    """Run in a child process: one fresh cluster with `transport`'s object settings."""
    from resilinet.runtime.cluster import LOOPBACK, SYSTEM_CONFIG, cluster_pids, ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address=LOOPBACK, log_to_driver=False,
             configure_logging=False, _system_config=SYSTEM_CONFIG if transport == "inline" else {})

    @ray.remote(num_cpus=0, max_concurrency=4)
    class Echo:
        def pid(self) -> int:
            return os.getpid()

        def call(self, x: np.ndarray, n: int):
            return 0, np.zeros(n, np.float32)   # a status and an array, as NodeProcess.forward returns

    actor = Echo.remote()
    actor_pid = ray.get(actor.pid.remote())
    rows = []
    try:
        for mb in SIZES_MB:
            n = int(mb * 2**20 / 4)
            x = np.ones(n, np.float32)
            for _ in range(5):
                ray.get(actor.call.options(num_returns=2).remote(x, n)[0])
            others = [p for p in cluster_pids() if p not in (os.getpid(), actor_pid)]
            c0 = (cpu_seconds([os.getpid()]), cpu_seconds([actor_pid]), cpu_seconds(others))
            t0 = time.perf_counter()
            refs = [actor.call.options(num_returns=2).remote(x, n) for _ in range(calls)]
            ray.get([r[1] for r in refs])
            wall = time.perf_counter() - t0
            c1 = (cpu_seconds([os.getpid()]), cpu_seconds([actor_pid]), cpu_seconds(others))
            caller, callee, other = (1e3 * (c1[i] - c0[i]) / calls for i in range(3))
            t0 = time.perf_counter()
            for _ in range(calls):
                x.copy()
                np.zeros(n, np.float32).copy()
            copy_ms = 1e3 * (time.perf_counter() - t0) / calls
            rows.append({"transport": transport, "mb_each_way": mb, "wall_ms_per_call": 1e3 * wall / calls,
                         "cpu_ms_caller": caller, "cpu_ms_actor": callee, "cpu_ms_ray_other": other,
                         "cpu_ms_total": caller + callee + other, "numpy_copy_ms": copy_ms})
    finally:
        ray.shutdown()
    return rows


def fit(rows: list[dict]) -> tuple[float, float]:
    """Least squares cpu_ms_total = fixed + per_mb * (MB in + out)."""
    mb = np.array([2 * r["mb_each_way"] for r in rows])
    cpu = np.array([r["cpu_ms_total"] for r in rows])
    per_mb, fixed = np.polyfit(mb, cpu, 1)
    return float(fixed), float(per_mb)


def chain_traffic(run: str, batch: int = 1024) -> dict:
    """Bytes one route of `batch` examples moves, its actor calls, and the in-process compute."""
    import torch

    from resilinet.run import load_run
    from resilinet.topology import INPUT, LOGITS

    torch.set_num_threads(1)
    model = load_run(run)[1]
    x = torch.zeros(batch, *model.input_shape)
    links_mb, sent = {}, {INPUT: {model.topology.iot: x}}
    with torch.no_grad():
        for name in model.topology.chain:
            node = model.nodes[name]
            sent[name] = node({p: sent[p][name] for p in node.producers}, {})
            for consumer, t in sent[name].items():
                # the raw input the MLP's IoT would relay goes from the router (RuntimeConfig.input_direct)
                src = "router" if node.passes_input_to(consumer) else name
                links_mb[f"{src}->{consumer if consumer != LOGITS else 'router'}"] = t.numel() * 4 / 2**20
    with torch.no_grad():
        compute_ms_per_1k = {b: 1e6 * best_of(lambda: model(torch.zeros(b, *model.input_shape)), 20, warmup=True) / b
                             for b in (64, batch)}
    links_mb = {f"router->{model.topology.iot}": x.numel() * 4 / 2**20, **links_mb}
    return {"batch": batch, "calls": len(model.topology.chain), "links_mb": links_mb,
            "compute_ms_per_1k_in_process": compute_ms_per_1k}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/rt-mlp", help="a trained MLP run directory (for the chain's traffic)")
    ap.add_argument("--calls", type=int, default=100, help="calls per size")
    ap.add_argument("--out", default="runs/ray_transfer.json")
    ap.add_argument("--child", choices=("inline", "plasma"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.calls)))
        return 0

    rows = []
    for transport in ("inline", "plasma"):   # a fresh cluster each: the setting is per cluster
        out = subprocess.run([sys.executable, __file__, "--child", transport, "--calls", str(args.calls)],
                             capture_output=True, text=True, check=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    fits = {t: fit([r for r in rows if r["transport"] == t]) for t in ("inline", "plasma")}
    chain = chain_traffic(args.run) if args.run and os.path.isdir(args.run) else None

    print("| transport | MB each way | wall ms / call | CPU ms / call: caller | actor | Ray other | total | numpy copy ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['transport']} | {r['mb_each_way']:.2f} | {r['wall_ms_per_call']:.2f} | {r['cpu_ms_caller']:.2f} "
              f"| {r['cpu_ms_actor']:.2f} | {r['cpu_ms_ray_other']:.2f} | {r['cpu_ms_total']:.2f} | {r['numpy_copy_ms']:.2f} |")
    for t, (fixed, per_mb) in fits.items():
        print(f"{t}: CPU per call ~ {fixed:.2f} ms + {per_mb:.2f} ms per MB carried")
    result = {"rows": rows, "fit": {t: {"fixed_ms": f, "per_mb_ms": p} for t, (f, p) in fits.items()},
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if chain:
        # Inline objects go producer -> router -> consumer: every link is carried twice (in, then
        # out of the router); the input and the logits once. In plasma a link is written once.
        total_mb = sum(chain["links_mb"].values())
        per_1k = 1000 / chain["batch"]
        to_or_from_router = sum(v for k, v in chain["links_mb"].items() if "router" in k)
        chain["inline_mb_carried"] = 2 * total_mb - to_or_from_router
        chain["plasma_mb_carried"] = total_mb
        est = {}
        for t, (fixed, per_mb) in fits.items():
            ray_ms = chain["calls"] * fixed + per_mb * chain[f"{t}_mb_carried"]
            compute = chain["compute_ms_per_1k_in_process"]
            cluster = per_1k * ray_ms + compute[chain["batch"]]   # the nodes compute on merged batches
            est[t] = {"ray_cpu_ms_per_1k": per_1k * ray_ms, "cluster_cpu_ms_per_1k": cluster,
                      "compute_ms_per_1k": compute[chain["batch"]],
                      "ceiling_vs_in_process_2_cores": {b: 2 * c / cluster for b, c in compute.items()}}
        chain["estimate"] = est
        result["chain"] = chain
        print(f"\nMLP chain, one route of {chain['batch']} examples: {chain['calls']} actor calls, "
              f"links (MB): " + ", ".join(f"{k} {v:.2f}" for k, v in chain["links_mb"].items()))
        for t, e in est.items():
            print(f"  {t}: Ray {e['ray_cpu_ms_per_1k']:.0f} + compute {e['compute_ms_per_1k']:.0f} = "
                  f"{e['cluster_cpu_ms_per_1k']:.0f} CPU ms per 1000 examples; ceiling on 2 cores: "
                  + ", ".join(f"{r:.2f}x the in-process model at batch {b}"
                              for b, r in e["ceiling_vs_in_process_2_cores"].items()))
    atomic_write_json(args.out, result)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
