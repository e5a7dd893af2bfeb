"""ResiliNet runtime (spec section 7): latency and throughput of the Ray service against the
in-process model, in the same run on the same inputs, and failover time.

    .venv/bin/python benchmarks/runtime.py --run runs/rt-mlp --clients 1,8,32   # ~2.5 min; table + runs/runtime_bench.json

Rows: `in-process` calls `PartitionedModel` directly (one caller, torch threads as set);
`router` calls the runtime's Python API (Ray actors, no HTTP) from C threads (`router-relay`: the
same with `input_direct` off, the raw input relayed to the edge through the IoT process); `http` posts JSON
and `http-bin` raw float32 (application/octet-stream) from C client *processes* (bodies encoded
once, so client CPU stays small). Clients are started (processes forked and connected) before
the clock starts; a row counts the requests answered inside its `--seconds` window. Every row
reports examples/s, per-request p50/p99 latency and the CPU spent in the window per 1000
examples by the server process (router + HTTP), the node processes and the client processes.
`--paths` / `--batches` / `--clients` / `--failovers 0` pick the rows to run. Failover: a client sends batch-1 requests back to
back; a node process is SIGKILLed (or SIGSTOPped: a hang) and the time from the signal to the
first answer that reports the node dead is measured, several times.
Goals (issue): throughput with concurrency >= half of in-process for the MLP chain; failover
within the per-hop deadline + 100 ms.

Front ends A/B (issue 19): `--ab-baseline COMMIT` serves the same router (same node processes)
through the current front end (Starlette on uvicorn) and the one of COMMIT (its service.py and
the hand-written asyncio httpserver.py, read with `git show`; main before issue 19), and runs
`http-bin` rows for both, interleaved, `--ab-reps` times, in alternating order:

    .venv/bin/python benchmarks/runtime.py --run runs/rt-mlp --ab-baseline main --clients 1,8,32 --batches 64 \
        --ab-reps 3 --seconds 5 --out runs/frontend_ab.json On 2 shared cores the Ray actors, the router and the
clients all compete for the same CPUs; see docs/results/resilinet-runtime.md for the measured figures.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time

import numpy as np
import torch

from lab.io import atomic_write_json
from lab.report import md_table
from timing import cpu_seconds


class CpuWindow:
    """CPU ms per 1000 examples spent inside the timed window by this (server) process, the node
    actor processes, the other Ray processes and the client processes. A bench calls `mark()`
    when its clock starts and again when it stops."""

    def __init__(self, router):
        from resilinet.runtime.cluster import cluster_pids

        self.node_pids = [s.pid for s in router.supervisor.nodes.values()]
        self.other_pids = [p for p in cluster_pids() if p != os.getpid() and p not in self.node_pids]
        self.client_pids: list[int] = []
        self.marks: list[tuple] = []

    def mark(self) -> None:
        self.marks.append(tuple(cpu_seconds(p) for p in ([os.getpid()], self.node_pids, self.other_pids,
                                                          self.client_pids)))

    def per_1k(self, examples: float) -> dict:
        (a, b) = self.marks
        return {f"cpu_ms_per_1k_{k}": 1e6 * (b[i] - a[i]) / max(examples, 1e-9)
                for i, k in enumerate(("server", "nodes", "ray_other", "clients"))}


def _pcts(lat_ms: list[float]) -> dict:
    a = np.array(lat_ms) if lat_ms else np.zeros(1)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": len(lat_ms)}


def bench_inprocess(model, x, batch: int, seconds: float) -> dict:
    lat, n, t_end = [], 0, time.perf_counter() + seconds
    i = 0
    with torch.no_grad():
        while time.perf_counter() < t_end:
            xb = x[(i * batch) % (len(x) - batch):][:batch]
            t0 = time.perf_counter()
            model(xb).argmax(1).tolist()
            lat.append(1e3 * (time.perf_counter() - t0))
            n += batch
            i += 1
    return {"examples_per_s": n / seconds, **_pcts(lat)}


def bench_router(router, x, batch: int, clients: int, seconds: float, cpu: CpuWindow | None = None) -> dict:
    """`clients` threads calling the router back to back for `seconds`; only requests answered
    inside the window count."""
    lat, counts, lock = [], [0], threading.Lock()
    go = threading.Barrier(clients + 1)
    t_end = [0.0]

    def worker(k: int) -> None:
        i = k
        go.wait()
        while time.perf_counter() < t_end[0]:
            xb = x[(i * batch) % (len(x) - batch):][:batch]
            t0 = time.perf_counter()
            router.predict(xb)
            t1 = time.perf_counter()
            if t1 <= t_end[0]:
                with lock:
                    lat.append(1e3 * (t1 - t0))
                    counts[0] += batch
            i += clients

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    t_end[0] = time.perf_counter() + seconds
    go.wait()
    _window(cpu, t_end[0])
    for t in ts:
        t.join()
    return _result(counts[0], seconds, lat, cpu)


def _window(cpu: CpuWindow | None, t_end: float) -> None:
    if cpu is not None:
        cpu.mark()
        time.sleep(max(0.0, t_end - time.perf_counter()))
        cpu.mark()


def _result(examples: int, seconds: float, lat: list[float], cpu: CpuWindow | None) -> dict:
    return {"examples_per_s": examples / seconds, **_pcts(lat), **(cpu.per_1k(examples) if cpu else {})}


def _http_client(addr, bodies, ctype, ready, go, t_end, q) -> None:
    conn = http.client.HTTPConnection(*addr, timeout=60)
    conn.connect()
    lat, n, i, dead = [], 0, 0, 0
    ready.release()
    go.wait()
    while time.perf_counter() < t_end.value:
        body, b = bodies[i % len(bodies)]
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": ctype})
        r = conn.getresponse()
        data = r.read()
        t1 = time.perf_counter()
        if r.status == 200 and t1 <= t_end.value:
            lat.append(1e3 * (t1 - t0))
            n += b
            dead += not all(json.loads(data)["alive"].values())   # it counted a node dead
        i += 1
    q.put((n, lat, dead))


def bench_http(addr, x, batch: int, clients: int, seconds: float, binary: bool = False,
               cpu: CpuWindow | None = None) -> dict:
    """`clients` processes (forked and connected before the clock starts) posting back to back
    for `seconds`; only requests answered inside the window count (time.perf_counter is the
    system-wide monotonic clock, shared by the processes)."""
    xs = [x[j * batch:(j + 1) * batch] for j in range(8)]
    if binary:
        bodies = [(xb.numpy().astype("<f4").tobytes(), batch) for xb in xs]
    else:
        bodies = [(json.dumps({"inputs": xb.tolist()}).encode(), batch) for xb in xs]
    ctype = "application/octet-stream" if binary else "application/json"
    ctx = mp.get_context("fork")
    q, ready, go, t_end = ctx.Queue(), ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0)
    ps = [ctx.Process(target=_http_client, args=(addr, bodies, ctype, ready, go, t_end, q)) for _ in range(clients)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.acquire()
    if cpu is not None:
        cpu.client_pids = [p.pid for p in ps]
    t_end.value = time.perf_counter() + seconds
    go.set()
    _window(cpu, t_end.value)
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    lat = [v for _, ls, _ in res for v in ls]
    return {**_result(sum(n for n, _, _ in res), seconds, lat, cpu), "answers": len(lat),
            "answers_with_a_dead_node": sum(d for _, _, d in res)}


def measure_failover(router, x, node: str, how: str, timeout_s: float = 30.0) -> float:
    """Seconds from the signal to the first answer that routes around `node`."""
    sup = router.supervisor
    _wait_up(router)
    pid = sup.nodes[node].pid
    answers: list[tuple[float, bool]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            a = router.predict(x[:1])
            answers.append((time.perf_counter(), a.alive[node]))

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.3)
    t_sig = time.perf_counter()
    os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    try:
        while time.perf_counter() - t_sig < timeout_s:
            hit = [ts for ts, alive in list(answers) if ts > t_sig and not alive]
            if hit:
                return hit[0] - t_sig
            time.sleep(0.005)
        return float("nan")
    finally:
        stop.set()
        t.join()
        if how == "hang":
            os.kill(pid, signal.SIGCONT)
        _wait_up(router)


def _wait_up(router, timeout_s: float = 120.0) -> None:
    t0 = time.monotonic()
    while any(s.state != "up" for s in router.supervisor.nodes.values()):
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(router.supervisor.status())
        time.sleep(0.05)


def load_old_frontend(commit: str):
    """`Service` of `commit` (its service.py with its hand-written httpserver.py, from git), its
    relative imports resolved in today's resilinet.runtime (router, cluster, config)."""
    import importlib.util
    import subprocess
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="old-frontend-"))
    mods = {}
    for name, as_name in (("httpserver", "resilinet.runtime.httpserver"), ("service", "resilinet.runtime._old_service")):
        path = folder / f"{name}.py"
        path.write_text(subprocess.run(["git", "show", f"{commit}:src/resilinet/runtime/{name}.py"], check=True,
                                       capture_output=True, text=True).stdout)
        spec = importlib.util.spec_from_file_location(as_name, path)
        mods[name] = importlib.util.module_from_spec(spec)
        sys.modules[as_name] = mods[name]
        spec.loader.exec_module(mods[name])
    return mods["service"].Service


def frontend_ab(router, input_shape, x, args) -> list[dict]:
    """http-bin rows through the current front end and the old one, same router, interleaved."""
    from resilinet.runtime.service import Service

    old = load_old_frontend(args.ab_baseline)
    fronts = {"new": Service(router, input_shape).start(), "old": old(router, input_shape).start()}
    rows = []
    try:
        for rep in range(args.ab_reps):
            for b in map(int, args.batches.split(",")):
                for c in map(int, args.clients.split(",")):
                    for name in (("new", "old") if (rep + c) % 2 else ("old", "new")):
                        cpu = CpuWindow(router)
                        r = bench_http(fronts[name].address, x, b, c, args.seconds, True, cpu)
                        rows.append({"front": name, "rep": rep, "batch": b, "clients": c, **r,
                                     "load_average": os.getloadavg()[0]})
                        print({k: rows[-1][k] for k in ("front", "rep", "batch", "clients", "examples_per_s",
                                                         "p50_ms", "p99_ms")}, flush=True)
    finally:
        for f in fronts.values():
            f.stop()
    return rows


def ab_summary(rows: list[dict]) -> list[dict]:
    """Per (batch, clients): median new/old ratios of throughput and p50/p99 over the reps, and
    their spread (min..max) -- each rep's pair ran back to back."""
    out = []
    for b, c in sorted({(r["batch"], r["clients"]) for r in rows}):
        pairs = {}
        for r in rows:
            if (r["batch"], r["clients"]) == (b, c):
                pairs.setdefault(r["rep"], {})[r["front"]] = r
        ratios = {k: [p["new"][k] / p["old"][k] for p in pairs.values() if len(p) == 2]
                  for k in ("examples_per_s", "p50_ms", "p99_ms", "cpu_ms_per_1k_server")}
        med = {k: (float(np.median(v)), min(v), max(v)) for k, v in ratios.items()}
        out.append({"batch": b, "clients": c, "reps": len(pairs), **{f"new_over_old_{k}": v for k, v in med.items()},
                    **{f"{f}_examples_per_s": float(np.median([p[f]["examples_per_s"] for p in pairs.values()]))
                       for f in ("new", "old")}})
    return out


def print_ab(summary: list[dict]) -> None:
    def fmt(t):
        return f"{t[0]:.2f} ({t[1]:.2f}-{t[2]:.2f})"
    print(md_table(["batch", "clients", "reps", "old ex/s", "new ex/s", "new/old ex/s", "new/old p50", "new/old p99",
                    "new/old server CPU"],
                   [[s["batch"], s["clients"], s["reps"], f"{s['old_examples_per_s']:.0f}", f"{s['new_examples_per_s']:.0f}",
                     fmt(s["new_over_old_examples_per_s"]), fmt(s["new_over_old_p50_ms"]), fmt(s["new_over_old_p99_ms"]),
                     fmt(s["new_over_old_cpu_ms_per_1k_server"])] for s in summary]))
    print("(median over reps; in brackets the min-max of the per-rep ratios)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/rt-mlp", help="a trained MLP run directory")
    ap.add_argument("--out", default="runs/runtime_bench.json")
    ap.add_argument("--seconds", type=float, default=6.0, help="per throughput row")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--failovers", type=int, default=5, help="repeats per failover kind")
    ap.add_argument("--paths", default="router,http,http-bin",
                    help="service rows to run: router, router-relay, http, http-bin (in-process always runs)")
    ap.add_argument("--hop-deadline-s", type=float, default=0.5)
    ap.add_argument("--routes-in-flight", type=int, default=None,
                    help="merged batches on the chain at once (default: RuntimeConfig's)")
    ap.add_argument("--ab-baseline", default=None, metavar="COMMIT",
                    help="only the front-end A/B: current front end vs COMMIT's (e.g. main), interleaved")
    ap.add_argument("--ab-reps", type=int, default=3, help="A/B repetitions (default 3)")
    args = ap.parse_args(argv)
    unknown = set(args.paths.split(",")) - {"router", "router-relay", "http", "http-bin"}
    if unknown:
        ap.error(f"--paths: unknown {sorted(unknown)}; choose from router, router-relay, http, http-bin")

    from resilinet.config import RuntimeConfig
    from resilinet.data import load_splits
    from resilinet.run import load_run
    from resilinet.runtime.service import start_service, stop_service

    torch.set_num_threads(1)
    cfg, model, seed = load_run(args.run)
    x = load_splits(cfg, seed).x_test
    rt_cfg = RuntimeConfig(hop_deadline_s=args.hop_deadline_s, port=0,
                           **({} if args.routes_in_flight is None else {"routes_in_flight": args.routes_in_flight}))
    service = start_service(args.run, rt_cfg)
    router = service.router
    if args.ab_baseline:
        try:
            rows = frontend_ab(router, model.input_shape, x, args)
        finally:
            stop_service(service)
        summary = ab_summary(rows)
        atomic_write_json(args.out, {"run": args.run, "baseline": args.ab_baseline, "cpus": os.cpu_count(),
                                     "rows": rows, "summary": summary})
        print_ab(summary)
        print(f"written to {args.out}")
        return 0
    rows = []
    try:
        for b in map(int, args.batches.split(",")):
            rows.append({"path": "in-process", "batch": b, "clients": 1,
                         **bench_inprocess(model, x, b, args.seconds)})
            for c in map(int, args.clients.split(",")):
                for path in args.paths.split(","):
                    cpu = CpuWindow(router)
                    if path == "router":
                        r = bench_router(router, x, b, c, args.seconds, cpu)
                    elif path == "router-relay":  # RuntimeConfig(input_direct=False): the IoT relays the input
                        direct, router.direct = router.direct, ()
                        try:
                            r = bench_router(router, x, b, c, args.seconds, cpu)
                        finally:
                            router.direct = direct
                    else:
                        r = bench_http(service.address, x, b, c, args.seconds, path == "http-bin", cpu)
                    rows.append({"path": path, "batch": b, "clients": c, **r})
                    print(rows[-1], flush=True)
        fo = {"kill": [], "hang": []}
        for how in ("kill", "hang"):
            for k in range(args.failovers):
                node = ("e", "f2", "f1")[k % 3]
                fo[how].append(measure_failover(router, x, node, how))
                print(how, node, fo[how][-1], flush=True)
    finally:
        stop_service(service)
    inproc = {r["batch"]: r["examples_per_s"] for r in rows if r["path"] == "in-process"}
    for r in rows:
        r["vs_in_process"] = r["examples_per_s"] / inproc[r["batch"]]
    out = {"run": args.run, "hop_deadline_s": args.hop_deadline_s, "routes_in_flight": rt_cfg.routes_in_flight,
           "batch_examples": rt_cfg.batch_examples, "cpus": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows,
           "failover_s": fo, "failover_goal_s": args.hop_deadline_s + 0.1,
           "failover_max_s": {k: max(v, default=None) for k, v in fo.items()},
           "torch_threads_in_process": torch.get_num_threads()}
    atomic_write_json(args.out, out)
    print(md_table(["path", "batch", "clients", "examples/s", "x in-process", "p50 ms", "p99 ms",
                    "CPU ms / 1k ex: server", "nodes", "clients"],
                   [[r["path"], r["batch"], r["clients"], f"{r['examples_per_s']:.0f}", f"{r['vs_in_process']:.2f}",
                     f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
                    + [f"{r.get('cpu_ms_per_1k_' + k, float('nan')):.0f}" for k in ("server", "nodes", "clients")]
                    for r in rows]))
    for how, v in fo.items():
        if not v:
            continue
        print(f"failover ({how}): " + ", ".join(f"{1e3 * s:.0f} ms" for s in v)
              + f"  (goal <= {1e3 * (args.hop_deadline_s + 0.1):.0f} ms)")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
