"""`resilinet serve`: the HTTP endpoint in front of the router. uvicorn serves a Starlette app
(`http_app.py`) on one asyncio loop in a thread of this process; a request joins the router's
queue and the loop picks up its answer when the router's batcher resolves it, so no thread waits
per request. JSON bodies are parsed in worker threads, off the loop.

    POST /predict   {"inputs": [[f, f, ...], ...], "logits": false, "labels": [c, ...]}
                    (a batch, one example per row; labels are optional and only counted)
        -> {"predictions": [...], "alive": {"f1": true, ...}, "connected": true, "guessed": false,
            "dead_reason": {}, "latency_ms": 3.1}
    POST /predict?logits=true   Content-Type: application/octet-stream
                    the same batch as raw little-endian float32, examples back to back (the
                    batch size is the body length / (4 * values per example)); same answer.
                    Parsing 784 JSON numbers per example costs the (GIL-bound) server ~50x more.
    GET  /status    each node: state, pid, restarts, requests served, latency p50/p90/p99 (ms),
                    hop deadline, hops routed around it (deadline / dead / hung); the requests of
                    the last minute; the exact expected accuracy beside the measured one
    GET  /metrics   Prometheus text (metrics.py)      GET /   the live page     GET /openapi.json
Malformed requests get 400, a body over `max_body_bytes` or a batch over `max_batch` 413, an
unknown path 404, a wrong method 405, each with {"error": "..."} saying what was expected.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from lab.io import read_json

from ..config import RuntimeConfig
from ..run import load_trained
from .cluster import LOOPBACK, external_sockets, is_loopback, start_local_cluster, stop_cluster
from .http_app import HttpError, HttpThread, bind, build_app
from .metrics import ServiceMetrics
from .router import Router, ServiceUnavailable

RECENT_S = 60.0   # "the last minute" of /status


class Service:
    def __init__(self, router: Router, input_shape: tuple[int, ...], host: str = LOOPBACK, port: int = 0,
                 max_batch: int = 1024, max_body_bytes: int = 16 << 20, info: dict | None = None,
                 workers: int = 64, sock=None):
        """`sock`: a listening socket bound beforehand (`http_app.bind`); else host:port is bound now."""
        self.router, self.input_shape = router, tuple(input_shape)
        self.values_per_example = math.prod(self.input_shape)
        self.max_batch, self.max_body_bytes = max_batch, max_body_bytes
        self.info = info or {}
        self.started = time.time()
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()   # answers by HTTP status
        self.examples = 0
        self.labelled = self.correct = 0                            # examples that came with labels
        self.latencies_ms: collections.deque = collections.deque(maxlen=5000)
        self.patterns: collections.Counter = collections.Counter()  # "f1=1,f2=0,e=1" -> requests
        self.recent: collections.deque = collections.deque()        # (monotonic time, dead nodes) per request
        self.metrics = ServiceMetrics(self)
        # Threads that parse JSON bodies (and wait for the router when it does not merge requests).
        self.workers = ThreadPoolExecutor(workers, thread_name_prefix="resilinet-request")
        self.http = HttpThread(build_app(self), sock if sock is not None else bind(host, port))

    @property
    def address(self) -> tuple[str, int]:
        return self.http.sock.getsockname()[:2]

    def start(self) -> "Service":
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)

    def count_answer(self, status: int) -> None:
        with self.lock:
            self.counts[str(status)] += 1
        self.metrics.requests.labels(code=str(status)).inc()

    # -- endpoints -----------------------------------------------------------------------------
    def parse_predict(self, body: bytes) -> tuple[torch.Tensor, bool, np.ndarray | None]:
        try:
            req = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HttpError(400, f"body is not valid JSON ({e})") from None
        if not isinstance(req, dict) or "inputs" not in req:
            raise HttpError(400, 'expected a JSON object {"inputs": [[...], ...]} with one example per row')
        rows = req["inputs"]
        if not isinstance(rows, list) or not rows:
            raise HttpError(400, '"inputs" must be a non-empty list of examples')
        if len(rows) > self.max_batch:
            raise HttpError(413, f"batch of {len(rows)} examples exceeds the limit of {self.max_batch}")
        want = self.values_per_example
        try:
            x = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError):
            raise HttpError(400, f"every example must be a list of {want} numbers "
                                 f"(shape {list(self.input_shape)})") from None
        if x.ndim < 2 or x[0].size != want or x.shape[1:] not in ((want,), self.input_shape):
            raise HttpError(400, f"every example must have shape {list(self.input_shape)} or be {want} flat "
                                 f"numbers; got examples of shape {list(x.shape[1:])}")
        if not np.isfinite(x).all():
            raise HttpError(400, "inputs contain NaN or infinity")
        logits = req.get("logits", False)
        if not isinstance(logits, bool):
            raise HttpError(400, '"logits" must be true or false')
        return torch.from_numpy(x.reshape(len(rows), *self.input_shape)), logits, self._labels(req, len(rows))

    def _labels(self, req: dict, n: int) -> np.ndarray | None:
        labels = req.get("labels")
        if labels is None:
            return None
        if not (isinstance(labels, list) and len(labels) == n and all(type(c) is int for c in labels)):
            raise HttpError(400, f'"labels" must be a list of {n} integers (one class per example)')
        return np.asarray(labels)

    def parse_binary(self, body: bytes, query) -> tuple[torch.Tensor, bool, None]:
        """Raw little-endian float32 examples back to back; `logits=true|false` in the query."""
        want = self.values_per_example
        if not body or len(body) % (4 * want):
            raise HttpError(400, f"an application/octet-stream body must be float32 examples of {want} values "
                                 f"({4 * want} bytes each); got {len(body)} bytes")
        n = len(body) // (4 * want)
        if n > self.max_batch:
            raise HttpError(413, f"batch of {n} examples exceeds the limit of {self.max_batch}")
        x = np.frombuffer(body, dtype="<f4").reshape(n, *self.input_shape)
        if not np.isfinite(x).all():
            raise HttpError(400, "inputs contain NaN or infinity")
        flag = query.getlist("logits") or ["false"]
        if flag not in (["true"], ["false"]):
            raise HttpError(400, "query parameter logits must be true or false")
        return torch.from_numpy(x.astype(np.float32)), flag == ["true"], None

    async def predict(self, body: bytes, content_type: str, query) -> bytes:
        """One POST /predict body -> the JSON answer (raises HttpError for what is wrong with it)."""
        loop = asyncio.get_running_loop()
        if content_type.split(";")[0].strip() == "application/octet-stream":
            x, with_logits, labels = self.parse_binary(body, query)  # ~0.1 ms for 64 examples: on the loop
        else:  # JSON numbers: ~ms per example, so off the loop thread
            x, with_logits, labels = await loop.run_in_executor(self.workers, self.parse_predict, body)
        try:
            if self.router.batching:  # the batcher thread answers the future: no thread waits per request
                ans = await asyncio.wrap_future(self.router.submit(x))
            else:
                ans = await loop.run_in_executor(self.workers, self.router.predict, x)
        except ServiceUnavailable as e:
            raise HttpError(503, str(e)) from None
        self._record(ans, x.shape[0], labels)
        return json.dumps(ans.to_json(with_logits)).encode()

    def _record(self, ans, n: int, labels: np.ndarray | None) -> None:
        key = ",".join(f"{node}={int(a)}" for node, a in ans.alive.items())
        now = time.monotonic()
        with self.lock:
            self.examples += n
            self.latencies_ms.append(ans.latency_ms)
            self.patterns[key] += 1
            self.recent.append((now, tuple(node for node, a in ans.alive.items() if not a)))
            while self.recent and self.recent[0][0] < now - RECENT_S:
                self.recent.popleft()
            if labels is not None:
                self.labelled += n
                self.correct += int(np.sum(np.asarray(ans.predictions) == labels))
        self.metrics.observe(ans, n)

    def status(self) -> dict:
        with self.lock:
            lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
            now = time.monotonic()
            recent = [dead for t, dead in self.recent if t >= now - RECENT_S]
            around = collections.Counter(n for dead in recent for n in dead)
            return {"uptime_s": round(time.time() - self.started, 1), **self.info,
                    "method": self.info.get("method"),
                    "hop_deadline_s": self.router.cfg.hop_deadline_s,
                    "hop_deadline_max_s": self.router.cfg.hop_deadline_max_s,
                    "requests": dict(self.counts), "examples": self.examples,
                    "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
                    "alive_patterns": dict(self.patterns),
                    "last_minute": {"requests": len(recent), "all_alive": sum(not d for d in recent),
                                    "routed_around": dict(around)},
                    "measured_accuracy": {"examples": self.labelled,
                                          "accuracy": self.correct / self.labelled if self.labelled else None},
                    "nodes": self.router.supervisor.status()}


def host_warning(host: str) -> str | None:
    """The warning for a bind address other than loopback (the service has no authentication)."""
    if is_loopback(host):
        return None
    return (f"warning: --host {host} is not loopback: the service has no authentication and anyone who can "
            f"reach {host} can send it requests and read /status")


def start_service(run_dir: str, cfg: RuntimeConfig | None = None, max_batch: int = 1024) -> Service:
    """Bind `cfg.host:cfg.port` (a busy port is one error, before anything starts), load a trained
    run (checkpoint + sidecar: no dataset is read), start (or join, with `cfg.address`) the Ray
    cluster, one process per node and the HTTP endpoint. The caller stops it with `stop_service`;
    if starting fails or is interrupted, whatever was started is stopped again."""
    cfg = cfg or RuntimeConfig()
    if (warning := host_warning(cfg.host)) is not None:
        print(warning, file=sys.stderr, flush=True)
    sock = bind(cfg.host, cfg.port)
    router, started = None, False
    try:
        run = load_trained(run_dir)
        topology = run.model.topology
        started = start_local_cluster(topology, address=cfg.address)
        if cfg.address is None and external_sockets():
            raise RuntimeError(f"Ray listens on a non-loopback address: {external_sockets()}")
        # the cloud guesses from the training label prior when no path survives
        router = Router(run.model, run.class_prior, cfg, seed=run.seed).start()
        info = {"run": str(run_dir), "method": run.cfg.model.method, "arch": run.cfg.model.arch,
                "nodes_in_order": list(topology.chain), "failure_prone": list(topology.failure_prone),
                **_exact_accuracy(run_dir)}
        return Service(router, run.model.input_shape, max_batch=max_batch, info=info, sock=sock).start()
    except BaseException:
        sock.close()
        if router is not None:
            router.stop()
        if started:   # never a cluster this process was already running (e.g. the tests' own)
            stop_cluster()
        raise


def _exact_accuracy(run_dir) -> dict:
    """What the run's results.json says the model's accuracy is (exact, over every failure pattern
    at each reliability setting), for the status page; {} when the run has none."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return {}
    res = read_json(path, "results")
    return {"exact_accuracy": {"clean": res.get("clean_accuracy"), "expected": res.get("expected_accuracy", {}),
                               "reliability_settings": res.get("reliability_settings", {})}}


def stop_service(service: Service) -> None:
    service.stop()
    service.router.stop()
    stop_cluster()
