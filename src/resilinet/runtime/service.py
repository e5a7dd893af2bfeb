"""`resilinet serve`: the HTTP endpoint in front of the router. One asyncio loop thread reads and
answers every connection (`httpserver.py`); a request joins the router's queue and the loop
picks up its answer when the router's batcher resolves it, so no thread waits per request (the
stdlib one-thread-per-connection server woke a thread several times per request; measured in
docs/results/resilinet-runtime.md, "The HTTP front end"). JSON bodies are parsed in worker threads, off the loop.

    POST /predict   {"inputs": [[f, f, ...], ...], "logits": false}   (a batch; one example per row)
        -> {"predictions": [...], "alive": {"f1": true, ...}, "connected": true, "guessed": false,
            "dead_reason": {}, "latency_ms": 3.1}
    POST /predict?logits=true   Content-Type: application/octet-stream
                    the same batch as raw little-endian float32, examples back to back (the
                    batch size is the body length / (4 * values per example)); same answer.
                    Parsing 784 JSON numbers per example costs the (GIL-bound) server ~50x more.
    GET  /status    each node: state, pid, restarts, requests served, latency p50/p90/p99 (ms)
    GET  /metrics   Prometheus text: request counters, latency quantiles, node states and restarts
Malformed requests get 400, a body over `max_body_bytes` or a batch over `max_batch` 413, an
unknown path 404, a wrong method 405, each with {"error": "..."} saying what was expected.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import numpy as np
import torch

from ..config import RuntimeConfig
from ..run import load_trained
from .cluster import LOOPBACK, external_sockets, start_local_cluster, stop_cluster
from .httpserver import HttpError, HttpServer, Request, Response
from .router import Router, ServiceUnavailable


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Service:
    def __init__(self, router: Router, input_shape: tuple[int, ...], host: str = LOOPBACK, port: int = 0,
                 max_batch: int = 1024, max_body_bytes: int = 16 << 20, info: dict | None = None,
                 workers: int = 64):
        self.router, self.input_shape = router, tuple(input_shape)
        self.max_batch, self.max_body_bytes = max_batch, max_body_bytes
        self.info = info or {}
        self.started = time.time()
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()   # requests by HTTP status
        self.examples = 0
        self.latencies_ms: collections.deque = collections.deque(maxlen=5000)
        self.patterns: collections.Counter = collections.Counter()  # "f1=1,f2=0,e=1" -> requests
        # Threads that parse JSON bodies (and wait for the router when it does not merge requests).
        self.workers = ThreadPoolExecutor(workers, thread_name_prefix="resilinet-request")
        self.http = HttpServer(self.handle, host, port, max_body_bytes)

    @property
    def address(self) -> tuple[str, int]:
        return self.http.address

    def start(self) -> "Service":
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)

    # -- endpoints -----------------------------------------------------------------------------
    def parse_predict(self, body: bytes) -> tuple[torch.Tensor, bool]:
        try:
            req = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"body is not valid JSON ({e})") from None
        if not isinstance(req, dict) or "inputs" not in req:
            raise BadRequest(400, 'expected a JSON object {"inputs": [[...], ...]} with one example per row')
        rows = req["inputs"]
        if not isinstance(rows, list) or not rows:
            raise BadRequest(400, '"inputs" must be a non-empty list of examples')
        if len(rows) > self.max_batch:
            raise BadRequest(413, f"batch of {len(rows)} examples exceeds the limit of {self.max_batch}")
        want = math.prod(self.input_shape)
        try:
            x = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError):
            raise BadRequest(400, f"every example must be a list of {want} numbers "
                                  f"(shape {list(self.input_shape)})") from None
        if x.ndim < 2 or x[0].size != want or x.shape[1:] not in ((want,), self.input_shape):
            raise BadRequest(400, f"every example must have shape {list(self.input_shape)} or be {want} flat "
                                  f"numbers; got examples of shape {list(x.shape[1:])}")
        if not np.isfinite(x).all():
            raise BadRequest(400, "inputs contain NaN or infinity")
        logits = req.get("logits", False)
        if not isinstance(logits, bool):
            raise BadRequest(400, '"logits" must be true or false')
        return torch.from_numpy(x.reshape(len(rows), *self.input_shape)), logits

    def parse_binary(self, body: bytes, query: str) -> tuple[torch.Tensor, bool]:
        """Raw little-endian float32 examples back to back; `logits=true|false` in the query."""
        want = math.prod(self.input_shape)
        if not body or len(body) % (4 * want):
            raise BadRequest(400, f"an application/octet-stream body must be float32 examples of {want} values "
                                  f"({4 * want} bytes each); got {len(body)} bytes")
        n = len(body) // (4 * want)
        if n > self.max_batch:
            raise BadRequest(413, f"batch of {n} examples exceeds the limit of {self.max_batch}")
        x = np.frombuffer(body, dtype="<f4").reshape(n, *self.input_shape)
        if not np.isfinite(x).all():
            raise BadRequest(400, "inputs contain NaN or infinity")
        flag = parse_qs(query).get("logits", ["false"])
        if flag not in (["true"], ["false"]):
            raise BadRequest(400, "query parameter logits must be true or false")
        return torch.from_numpy(x.astype(np.float32)), flag == ["true"]

    def status(self) -> dict:
        with self.lock:
            lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
            return {"uptime_s": round(time.time() - self.started, 1), **self.info,
                    "method": self.info.get("method"),
                    "hop_deadline_s": self.router.cfg.hop_deadline_s,
                    "requests": dict(self.counts), "examples": self.examples,
                    "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
                    "alive_patterns": dict(self.patterns),
                    "nodes": self.router.supervisor.status()}

    async def handle(self, req: Request) -> Response:
        """One HTTP request (on the loop thread) -> its answer; every answer is counted by status."""
        resp = await self._answer(req)
        with self.lock:
            self.counts[str(resp.status)] += 1
        return resp

    async def _answer(self, req: Request) -> Response:
        if req.method == "GET":
            if req.path == "/status" and not req.query:
                return Response.json(200, self.status())
            if req.path == "/metrics" and not req.query:
                return Response(200, self.metrics().encode(), "text/plain; version=0.0.4")
            if req.path == "/predict":
                return Response.json(405, {"error": "use POST /predict with a JSON body {\"inputs\": [...]}"})
            target = req.path + ("?" + req.query if req.query else "")
            return Response.json(404, {"error": f"no endpoint {target}; try POST /predict, GET /status, GET /metrics"})
        if req.method != "POST":
            return Response.json(405, {"error": "use POST /predict, GET /status or GET /metrics"})
        if req.path != "/predict":
            code = 405 if req.path in ("/status", "/metrics") else 404
            return Response.json(code, {"error": f"POST {req.path} is not an endpoint; use POST /predict"})
        try:
            return Response.json(200, await self.predict(req))
        except HttpError as e:
            return Response.json(e.status, {"error": str(e)}, close=e.close)
        except BadRequest as e:
            return Response.json(e.status, {"error": str(e)})
        except ServiceUnavailable as e:
            return Response.json(503, {"error": str(e)})

    async def predict(self, req: Request) -> dict:
        body = await req.body()
        loop = asyncio.get_running_loop()
        if req.headers.get("content-type", "").split(";")[0].strip() == "application/octet-stream":
            x, with_logits = self.parse_binary(body, req.query)  # ~0.1 ms for 64 examples: on the loop
        else:  # JSON numbers: ~ms per example, so off the loop thread
            x, with_logits = await loop.run_in_executor(self.workers, self.parse_predict, body)
        if self.router.batching:  # the batcher thread answers the future: no thread waits per request
            ans = await asyncio.wrap_future(self.router.submit(x))
        else:
            ans = await loop.run_in_executor(self.workers, self.router.predict, x)
        key = ",".join(f"{n}={int(a)}" for n, a in ans.alive.items())
        with self.lock:
            self.examples += x.shape[0]
            self.latencies_ms.append(ans.latency_ms)
            self.patterns[key] += 1
        return ans.to_json(with_logits)

    def metrics(self) -> str:
        st = self.status()
        lines = ["# TYPE resilinet_requests_total counter"]
        lines += [f'resilinet_requests_total{{code="{c}"}} {n}' for c, n in sorted(st["requests"].items())]
        lines += ["# TYPE resilinet_examples_total counter", f"resilinet_examples_total {st['examples']}",
                  "# TYPE resilinet_request_latency_ms summary"]
        lines += [f'resilinet_request_latency_ms{{quantile="{q}"}} {st["latency_ms"][k]:.3f}'
                  for q, k in (("0.5", "p50"), ("0.99", "p99"))]
        lines += ["# TYPE resilinet_node_up gauge", "# TYPE resilinet_node_restarts_total counter",
                  "# TYPE resilinet_node_requests_total counter"]
        for n, s in st["nodes"].items():
            lines.append(f'resilinet_node_up{{node="{n}"}} {int(s["state"] == "up")}')
            lines.append(f'resilinet_node_restarts_total{{node="{n}"}} {s["restarts"]}')
            lines.append(f'resilinet_node_requests_total{{node="{n}"}} {s["requests_served"]}')
        return "\n".join(lines) + "\n"


def start_service(run_dir: str, cfg: RuntimeConfig | None = None, max_batch: int = 1024) -> Service:
    """Load a trained run (checkpoint + sidecar: no dataset is read), start (or join, with
    `cfg.address`) the Ray cluster, start one process per node and the HTTP endpoint on
    `cfg.host:cfg.port`. The caller stops it with `stop_service`."""
    cfg = cfg or RuntimeConfig()
    run = load_trained(run_dir)
    topology = run.model.topology
    start_local_cluster(topology, address=cfg.address)
    if cfg.address is None and external_sockets():
        raise RuntimeError(f"Ray listens on a non-loopback address: {external_sockets()}")
    # the cloud guesses from the training label prior when no path survives
    router = Router(run.model, run.class_prior, cfg, seed=run.seed).start()
    info = {"run": str(run_dir), "method": run.cfg.model.method, "arch": run.cfg.model.arch,
            "nodes_in_order": list(topology.chain), "failure_prone": list(topology.failure_prone)}
    return Service(router, run.model.input_shape, cfg.host, cfg.port, max_batch=max_batch, info=info).start()


def stop_service(service: Service) -> None:
    service.stop()
    service.router.stop()
    stop_cluster()
