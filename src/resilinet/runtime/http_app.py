"""The service's HTTP layer: a Starlette app served by uvicorn in one thread of the service's
process (issue 19: HTTP on a well-kept ASGI stack instead of a hand-written server).

    GET  /               the live status page (status_page.html; it polls GET /status)
    POST /predict        JSON or raw float32 batches (service.py says what each carries)
    GET  /status         nodes, deadlines, requests, accuracy (JSON)
    GET  /metrics        Prometheus text (metrics.py)
    GET  /openapi.json   an OpenAPI 3.1 description of /predict (written by hand below: Starlette
                         does not derive one, and a raw float32 body has no pydantic model)

Every error is {"error": "..."} with its status: 404 for an unknown path, 405 with an `Allow`
header for a wrong method (HEAD is allowed wherever GET is), 411 / 413 before the body is read
(the connection is then closed), and what the service raises (400, 413, 503); anything else it
raises is a 500 that names the exception (its trace goes to stderr). A request line or
headers that are not HTTP get uvicorn's 400. The socket is bound by the caller (`bind`), so a busy
port is found before anything else starts.
"""
from __future__ import annotations

import errno
import socket
import sys
import threading
import traceback
from importlib import resources

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from lab.errors import UserError

PAGE = resources.files("resilinet.runtime").joinpath("status_page.html")


class HttpError(Exception):
    """An error answer: {"error": message} with `status`; close=True closes the connection."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.close = status, close


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: any free one), or one clear error when the port is taken."""
    try:
        sock = socket.create_server((host, port), backlog=128)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use (another `resilinet serve`?); "
                            f"pick another with --port, or --port 0 for any free one") from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it uvicorn's two
    # writes per answer (headers, then body) wait on the client's delayed ACK: measured 44 ms per
    # request instead of 0.3 ms on loopback (uvicorn sets it only on sockets it binds itself).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) before it is read when its Content-Length is over `max_bytes`,
    or as soon as a chunked body grows past it."""
    length = request.headers.get("content-length")   # uvicorn has checked it is a number
    if length is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise HttpError(411, "a Content-Length header is required", close=True)
    too_big = f"body exceeds the limit of {max_bytes} bytes; send smaller batches"
    if length is not None and int(length) > max_bytes:
        raise HttpError(413, f"body of {int(length)} bytes exceeds the limit of {max_bytes} bytes; "
                             f"send smaller batches", close=True)
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(413, too_big, close=True)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)   # one chunk (the usual case): no copy


def error(status: int, message: str, close: bool = False, headers: dict | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if close:
        headers["Connection"] = "close"   # uvicorn closes the connection after this answer
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def build_app(service) -> Starlette:
    """The routes in front of `service` (a service.Service)."""
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text())

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.text(), media_type=service.metrics.content_type)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(service))

    async def predict(request: Request) -> Response:
        try:
            body = await read_body(request, service.max_body_bytes)
            out = await service.predict(body, request.headers.get("content-type", ""), request.query_params)
        except HttpError as e:
            return error(e.status, str(e), e.close)
        except Exception as e:   # a fault of ours, not of the request: one JSON line, the trace in the log
            traceback.print_exc(file=sys.stderr)
            return error(500, f"internal error while answering: {type(e).__name__}: {e}; the request may be retried")
        return Response(out, media_type="application/json")

    async def http_exception(request: Request, exc: HTTPException) -> Response:
        """Starlette's own 404 / 405, in the service's error format (405 keeps its Allow header)."""
        if exc.status_code == 404:
            return error(404, f"no endpoint {request.url.path}; try POST /predict, GET /status, GET /metrics, GET /")
        allow = (exc.headers or {}).get("Allow", "")
        return error(exc.status_code, f"{request.method} {request.url.path} is not allowed; use {allow or 'another method'}"
                     + (' with a JSON body {"inputs": [...]}' if request.url.path == "/predict" else ""),
                     headers=exc.headers)

    routes = [Route("/", page, methods=["GET"]), Route("/status", status, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"]), Route("/openapi.json", openapi, methods=["GET"]),
              Route("/predict", predict, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_exception})
    return CountAnswers(app, service.count_answer)


class CountAnswers:
    """ASGI middleware: counts every answer by status code (`count(status)`), 404s included."""

    def __init__(self, app, count):
        self.app, self.count = app, count

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message):
            if message["type"] == "http.response.start":
                self.count(message["status"])
            await send(message)
        await self.app(scope, receive, counted)


class HttpThread:
    """uvicorn serving `app` on an already bound socket, in a daemon thread (the caller's thread
    keeps running; uvicorn installs no signal handlers outside the main thread)."""

    def __init__(self, app, sock: socket.socket):
        self.sock = sock
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, server_header=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="resilinet-http",
                                       daemon=True)

    def start(self) -> "HttpThread":
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            self.thread.join(0.01)
        if not self.server.started:
            raise RuntimeError("the HTTP server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def openapi_document(service) -> dict:
    """OpenAPI 3.1 for POST /predict (and the GET endpoints), with this service's shapes and limits."""
    want = service.values_per_example
    answer = {"type": "object", "required": ["predictions", "alive", "connected", "guessed", "dead_reason", "latency_ms"],
              "properties": {
                  "predictions": {"type": "array", "items": {"type": "integer"}, "description": "one class per example"},
                  "alive": {"type": "object", "additionalProperties": {"type": "boolean"},
                            "description": "failure-prone node -> did it deliver for this request"},
                  "connected": {"type": "boolean", "description": "did an IoT -> cloud path survive"},
                  "guessed": {"type": "boolean", "description": "no path: predictions guessed from the label prior"},
                  "dead_reason": {"type": "object", "additionalProperties": {"type": "string"},
                                  "description": "dead node -> deadline | failed | down | hung | starting"},
                  "latency_ms": {"type": "number"},
                  "logits": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                             "description": "only with logits=true"}}}
    err = {"description": "what was wrong", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "ResiliNet service", "version": "1",
                     "description": "A partitioned DNN served one process per node; answers say which nodes were alive."},
            "paths": {"/predict": {"post": {
                "summary": "predict a batch",
                "parameters": [{"name": "logits", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["true", "false"]},
                                "description": "raw float32 bodies: also return the logits"}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {
                        "type": "object", "required": ["inputs"], "properties": {
                            "inputs": {"type": "array", "minItems": 1, "maxItems": service.max_batch,
                                       "items": {"type": "array", "items": {"type": "number"},
                                                 "description": f"{want} finite numbers (shape {list(service.input_shape)})"}},
                            "logits": {"type": "boolean", "default": False},
                            "labels": {"type": "array", "items": {"type": "integer"},
                                       "description": "optional true classes: counted in /status as measured accuracy"}}}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                                 "description": f"little-endian float32 examples back to back, "
                                                                f"{4 * want} bytes each, at most {service.max_batch}"}}},
                "responses": {"200": {"description": "the answer", "content": {"application/json": {"schema": answer}}},
                              "400": err, "411": err, "413": {**err, "description": f"body over {service.max_body_bytes} "
                                                                                  f"bytes or batch over {service.max_batch}"},
                              "503": {**err, "description": "the IoT or cloud process stayed down"}}}},
                "/status": {"get": {"summary": "nodes, deadlines, requests, accuracy", "responses": {"200": {"description": "JSON"}}}},
                "/metrics": {"get": {"summary": "Prometheus text format", "responses": {"200": {"description": "text"}}}},
                "/": {"get": {"summary": "the live status page", "responses": {"200": {"description": "HTML"}}}}}}
