"""`resilinet chaos`: steady load against the service while real node processes are killed
(SIGKILL by pid) and hung (SIGSTOP for `hang_s`, then SIGCONT), and a report.

Clients send batches of test examples drawn uniformly with replacement. Each answer names the
alive pattern it was computed under, so the empirical accuracy can be set beside the exact one:
for answered examples i with pattern p_i, E = mean_i acc(p_i), where acc(p) is the exact test
accuracy under pattern p (the guess accuracy sum_c p_c^2 when no path survived); the answers are
independent Bernoulli(acc(p_i)) draws, so the standard error is sqrt(sum_i acc(p_i)(1 - acc(p_i))) / N
and the run passes when |empirical - E| <= 3 SE, no request was lost or failed, and every node is
up again at the end. acc(p) is read from the run's results.json (written by `resilinet train`),
not recomputed; the test split is read only for the examples the clients send (with their labels,
so the service's live page shows the measured accuracy too). While it runs a progress bar counts
answered / lost requests and the page is at the URL printed first; the report gets a timeline
plot (chaos_timeline.py).
"""
from __future__ import annotations

import collections
import http.client
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.report import md_table

from ..config import RuntimeConfig
from ..data import load_splits
from ..run import load_trained
from ..topology import AliveMask
from .chaos_timeline import plot_timeline
from .service import start_service, stop_service


@dataclass(frozen=True)
class ChaosPlan:
    duration_s: float = 120.0
    kill_every_s: float = 10.0   # 0: no kills
    hang_every_s: float = 15.0   # 0: no hangs
    hang_s: float = 3.0
    clients: int = 4
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise UserError(f"--duration must be > 0, got {self.duration_s}")
        for name in ("kill_every_s", "hang_every_s", "hang_s"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name[:-2].replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.clients < 1 or self.batch < 1:
            raise UserError(f"--clients and --batch must be >= 1, got {self.clients}, {self.batch}")


class _Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = self.answered = self.failed = self.lost = 0
        self.errors: collections.Counter = collections.Counter()
        self.by_pattern: dict[tuple, list[int]] = {}  # alive tuple -> [requests, examples, correct]
        self.latency_ms: list[float] = []
        self.t0 = time.monotonic()                   # the load's start: every time below is after it
        self.timeline: list[tuple[float, float, int]] = []  # (answered at s, latency ms, dead nodes)


def _client(addr, x, y, plan: ChaosPlan, k: int, stop: threading.Event, tally: _Tally, topology) -> None:
    rng = np.random.default_rng([plan.seed, 100 + k])
    conn = http.client.HTTPConnection(*addr, timeout=60)
    while not stop.is_set():
        idx = rng.integers(0, len(y), plan.batch)
        body = json.dumps({"inputs": x[idx].reshape(plan.batch, -1).tolist(), "labels": y[idx].tolist()}).encode()
        with tally.lock:
            tally.sent += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            with tally.lock:
                tally.lost += 1
                tally.errors[f"lost: {type(e).__name__}"] += 1
            conn.close()
            conn = http.client.HTTPConnection(*addr, timeout=60)
            continue
        ms = 1e3 * (time.perf_counter() - t0)
        if r.status != 200:
            with tally.lock:
                tally.failed += 1
                tally.errors[f"{r.status}: {data[:200].decode(errors='replace')}"] += 1
            continue
        out = json.loads(data)
        pattern = AliveMask.from_nodes(topology, [n for n, a in out["alive"].items() if a]).pattern
        correct = int(np.sum(np.asarray(out["predictions"]) == y[idx]))
        with tally.lock:
            tally.answered += 1
            tally.latency_ms.append(ms)
            tally.timeline.append((time.monotonic() - tally.t0, ms, sum(not a for a in out["alive"].values())))
            row = tally.by_pattern.setdefault(pattern, [0, 0, 0])
            row[0] += 1
            row[1] += plan.batch
            row[2] += correct
    conn.close()


def _saboteur(service, plan: ChaosPlan, stop: threading.Event, events: list, stopped: set, t0: float) -> None:
    """Kills every kill_every_s and hangs every hang_every_s, each time a random up failure-prone
    node (never one that is already stopped)."""
    sup = service.router.supervisor
    nodes = list(sup.topology.failure_prone)
    rng = np.random.default_rng([plan.seed, 7])
    next_kill = plan.kill_every_s if plan.kill_every_s else math.inf
    next_hang = plan.hang_every_s if plan.hang_every_s else math.inf
    resume: list[tuple[float, int, str]] = []
    while not stop.wait(0.02):
        now = time.monotonic() - t0
        for when, pid, node in list(resume):
            if now >= when:
                resume.remove((when, pid, node))
                _signal(pid, signal.SIGCONT)
                stopped.discard(pid)
                events.append({"t_s": round(now, 3), "event": "resume", "node": node, "pid": pid})
        for kind in ("kill", "hang"):
            due = next_kill if kind == "kill" else next_hang
            if now < due:
                continue
            pids = sup.pids()
            up = [n for n in nodes if pids[n] and pids[n] not in stopped]
            if up:
                node = str(rng.choice(up))
                pid = pids[node]
                if kind == "kill":
                    _signal(pid, signal.SIGKILL)
                else:
                    _signal(pid, signal.SIGSTOP)
                    stopped.add(pid)
                    resume.append((now + plan.hang_s, pid, node))
                events.append({"t_s": round(now, 3), "event": kind, "node": node, "pid": pid})
            if kind == "kill":
                next_kill += plan.kill_every_s
            else:
                next_hang += plan.hang_every_s
    for _, pid, node in resume:
        _signal(pid, signal.SIGCONT)
        stopped.discard(pid)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # already replaced by the supervisor
        pass


def run_chaos(run_dir: str | Path, out: str | Path, plan: ChaosPlan, cfg: RuntimeConfig | None = None,
              progress: bool = False) -> dict:
    """Serve the run, load it and sabotage it for `plan.duration_s`, then write OUT/chaos.json,
    OUT/chaos.md and OUT/timeline.png; returns the report (with its markdown)."""
    out = Path(out)
    run = load_trained(run_dir)
    exact = _exact_accuracies(Path(run_dir))
    splits = load_splits(run.cfg, run.seed)   # the test examples the clients send
    x, y = splits.x_test.numpy(), splits.y_test.numpy()
    nodes = list(run.model.topology.failure_prone)

    t_start = time.time()
    service = start_service(str(run_dir), cfg)
    startup_s = time.time() - t_start
    if progress:
        host, port = service.address
        print(f"live page: http://{host}:{port}/", flush=True)
    tally = _Tally()
    try:
        events = _load_and_sabotage(service, plan, x, y, tally, progress)
        after = _recovery(service.router.supervisor)
    finally:
        stop_service(service)

    report = {"run": str(run_dir), "method": run.cfg.model.method, "plan": asdict(plan),
              "hop_deadline_s": service.router.cfg.hop_deadline_s, "startup_s": round(startup_s, 1),
              **_accuracy_section(tally, exact, nodes, plan), "events": events,
              "kills": sum(e["event"] == "kill" for e in events), "hangs": sum(e["event"] == "hang" for e in events),
              **after}
    all_up = after["all_nodes_up_at_end"]
    report["verdict"] = {"no_request_lost": tally.lost == 0 and tally.failed == 0 and tally.sent == tally.answered,
                         "nodes_came_back": all_up, "accuracy_within_3_se": abs(report["accuracy"]["z"]) <= 3}
    report["verdict"]["ok"] = all(report["verdict"].values())
    out.mkdir(parents=True, exist_ok=True)
    plot_timeline(tally.timeline, events, plan, out / "timeline.png")
    report["markdown"] = _markdown(report, nodes)
    atomic_write_json(out / "chaos.json", {k: v for k, v in report.items() if k != "markdown"})
    (out / "chaos.md").write_text(report["markdown"])
    return report


def _exact_accuracies(run_dir: Path) -> dict[tuple[int, ...], dict]:
    """{alive pattern: {"accuracy", "connected"}}: the exact test accuracy under each pattern, as
    `resilinet train` wrote it to results.json."""
    path = run_dir / "results.json"
    if not path.exists():
        raise UserError(f"{run_dir} has no results.json (the exact accuracies chaos compares with); "
                        f"finish training it first")
    return {tuple(p["alive"]): p for p in read_json(path, "results")["patterns"]}


def _load_and_sabotage(service, plan: ChaosPlan, x: np.ndarray, y: np.ndarray, tally: _Tally,
                       progress: bool = False) -> list[dict]:
    """Clients and the saboteur for `plan.duration_s`; returns the saboteur's events."""
    events, stopped, stop = [], set(), threading.Event()
    topology = service.router.topology
    tally.t0 = time.monotonic()
    threads = [threading.Thread(target=_client, args=(service.address, x, y, plan, k, stop, tally, topology),
                                daemon=True) for k in range(plan.clients)]
    threads.append(threading.Thread(target=_saboteur, args=(service, plan, stop, events, stopped, tally.t0),
                                    daemon=True))
    for t in threads:
        t.start()
    try:
        _show_progress(plan, tally, events, progress)
    finally:
        stop.set()
    for t in threads:
        t.join(timeout=120)
    for pid in list(stopped):
        _signal(pid, signal.SIGCONT)
    return events


class _AboveTheBar(logging.Handler):
    """The supervisor's one-line messages (a node died, restarted), printed above the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def _show_progress(plan: ChaosPlan, tally: _Tally, events: list, progress: bool) -> None:
    """Wait out `plan.duration_s`, with a progress bar of answered / lost requests when asked."""
    end = tally.t0 + plan.duration_s
    log, handler = logging.getLogger("resilinet.runtime"), _AboveTheBar()
    if progress:
        log.addHandler(handler)
        log.propagate = False
    try:
        with tqdm(total=round(plan.duration_s), disable=not progress, bar_format="chaos {n_fmt}/{total_fmt} s {bar} {desc}",
                  file=sys.stderr) as bar:
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(0.5, left))
                bar.n = round(min(plan.duration_s, time.monotonic() - tally.t0))
                with tally.lock:
                    counts = f"answered {tally.answered}, lost {tally.lost}, failed {tally.failed}"
                kinds = collections.Counter(e["event"] for e in list(events))
                bar.set_description_str(f"{counts}; kills {kinds['kill']}, hangs {kinds['hang']}")
    finally:
        log.removeHandler(handler)
        log.propagate = True


def _recovery(sup) -> dict:
    """Wait (up to 60 s) for every node to be up again; the nodes' part of the report."""
    t_wait = time.monotonic()
    while any(s.state != "up" for s in sup.nodes.values()) and time.monotonic() - t_wait < 60:
        time.sleep(0.1)
    recovered_s = time.monotonic() - t_wait
    status = sup.status()
    rejoins = {n: sum(1 for _, st in s.events if st == "up") - 1 for n, s in sup.nodes.items()}
    return {"nodes": {n: {"state": s["state"], "restarts": s["restarts"], "rejoined": rejoins[n],
                          "requests_served": s["requests_served"], "latency_ms": s["latency_ms"],
                          "deadline_s": s["deadline_s"], "routed_around": s["routed_around"]}
                      for n, s in status.items()},
            "all_nodes_up_at_end": all(s["state"] == "up" for s in status.values()),
            "seconds_to_all_up_after_load": round(recovered_s, 2)}


def _accuracy_section(tally: _Tally, exact: dict, nodes: list[str], plan: ChaosPlan) -> dict:
    """Requests, latency, and the empirical accuracy beside the exact expectation for the
    patterns the answers were computed under."""
    n_ex = sum(r[1] for r in tally.by_pattern.values())
    correct = sum(r[2] for r in tally.by_pattern.values())
    rows, expect, var = [], 0.0, 0.0
    for pat, (reqs, exs, cor) in sorted(tally.by_pattern.items(), reverse=True):
        acc = exact[pat]["accuracy"]
        expect += exs * acc
        var += exs * acc * (1 - acc)
        rows.append({"alive": list(pat), "dead": [n for n, a in zip(nodes, pat) if not a],
                     "connected": exact[pat]["connected"], "requests": reqs, "examples": exs,
                     "empirical_accuracy": cor / exs, "exact_accuracy": acc})
    empirical = correct / n_ex if n_ex else float("nan")
    expected = expect / n_ex if n_ex else float("nan")
    se = math.sqrt(var) / n_ex if n_ex else float("nan")
    lat = np.array(tally.latency_ms) if tally.latency_ms else np.zeros(1)
    return {"requests": {"sent": tally.sent, "answered": tally.answered, "failed": tally.failed, "lost": tally.lost},
            "errors": dict(tally.errors), "examples": n_ex, "throughput_examples_per_s": n_ex / plan.duration_s,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                           "max": float(lat.max())},
            "accuracy": {"empirical": empirical, "expected_for_observed_patterns": expected,
                         "standard_error": se, "z": (empirical - expected) / se if se else 0.0},
            "patterns": rows}


def _markdown(r: dict, nodes: list[str]) -> str:
    p, q, a = r["plan"], r["requests"], r["accuracy"]
    lines = [f"# ResiliNet chaos run ({r['method']})", "",
             f"`{r['run']}`: {p['duration_s']:.0f} s of load, {p['clients']} clients x batch {p['batch']}; "
             f"SIGKILL every {p['kill_every_s']} s ({r['kills']} kills), SIGSTOP for {p['hang_s']} s every "
             f"{p['hang_every_s']} s ({r['hangs']} hangs); per-hop deadline {r['hop_deadline_s']} s.", "",
             f"- requests: sent {q['sent']}, answered {q['answered']}, failed {q['failed']}, lost {q['lost']}",
             f"- examples answered: {r['examples']} ({r['throughput_examples_per_s']:.0f}/s); request latency "
             f"p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms, max {r['latency_ms']['max']:.0f} ms",
             f"- accuracy: empirical {100 * a['empirical']:.2f}% vs exact expectation for the observed patterns "
             f"{100 * a['expected_for_observed_patterns']:.2f}% (SE {100 * a['standard_error']:.2f} pts, z = {a['z']:+.2f})",
             f"- nodes up at the end: {r['all_nodes_up_at_end']}; verdict: "
             + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["verdict"].items() if k != "ok"), "",
             "## Observed alive patterns", ""]
    lines.append(md_table(["dead nodes", "path", "requests", "examples", "empirical acc", "exact acc"],
                          [[", ".join(row["dead"]) or "none", "yes" if row["connected"] else "no (guess)",
                            row["requests"], row["examples"], f"{100 * row['empirical_accuracy']:.2f}%",
                            f"{100 * row['exact_accuracy']:.2f}%"] for row in r["patterns"]]))
    lines += ["", "## Timeline", "", "![kills and hangs against latency and answers](timeline.png)",
              "", "## Node processes", ""]
    lines.append(md_table(["node", "state", "restarts", "requests served", "hop p50 ms", "hop p99 ms",
                           "deadline ms", "routed around: deadline", "dead", "hung"],
                          [[n, s["state"], s["restarts"], s["requests_served"],
                            f"{s['latency_ms']['p50']:.1f}" if s["latency_ms"] else "-",
                            f"{s['latency_ms']['p99']:.1f}" if s["latency_ms"] else "-",
                            f"{1e3 * s['deadline_s']:.0f}"] + [s["routed_around"][k] for k in ("deadline", "dead", "hung")]
                           for n, s in r["nodes"].items()]))
    lines += ["", "Routed around counts routed batches (concurrent requests merged into one), not requests."]
    if r["errors"]:
        lines += ["", "Errors: " + "; ".join(f"{k} x{v}" for k, v in r["errors"].items())]
    return "\n".join(lines) + "\n"
