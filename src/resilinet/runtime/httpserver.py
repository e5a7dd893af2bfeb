"""A small HTTP/1.1 server: every connection on one asyncio event loop in one thread.

Why not the stdlib `ThreadingHTTPServer` (one thread per connection): in the service's process
the router's threads and Ray's callbacks also need the GIL, and every request woke its
connection thread several times (request line and headers, body, the router's answer, the
reply), each wake-up a wait for the GIL. One loop thread reads and answers every connection
between its own waits. Measured with 32 clients posting raw float32 batches: see
docs/results/resilinet-runtime.md, "The HTTP front end". Why not aiohttp or
uvicorn: for four endpoints on loopback this is short, keeps the runtime's dependencies to Ray,
torch and numpy, and the tests cover all it speaks (tests/resilinet/runtime/test_service.py).

    server = HttpServer(app, host="127.0.0.1", port=0, max_body_bytes=16 << 20).start()
    server.address          # (host, port) actually bound
    server.stop()
    # app: async def app(req: Request) -> Response; it reads the body with `await req.body()`

What it speaks: persistent connections (HTTP/1.1 by default, HTTP/1.0 with
`Connection: keep-alive`), bodies with a Content-Length (no chunked uploads),
`Expect: 100-continue`, one answer per request in order. A request line or headers it cannot
read get 400 and the connection is closed.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 64 << 10


class HttpError(Exception):
    """Raised by `Request.body()` (411, 413); the app answers it like any other error."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.close = status, close


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False  # close the connection after this answer

    @classmethod
    def json(cls, status: int, obj, close: bool = False) -> "Response":
        return cls(status, json.dumps(obj).encode(), close=close)


@dataclass
class Request:
    method: str
    path: str                    # without the query
    query: str                   # after "?", "" if none
    version: str                 # "HTTP/1.1"
    headers: dict[str, str]      # lower-case names
    _reader: asyncio.StreamReader = field(repr=False)
    _writer: asyncio.StreamWriter = field(repr=False)
    _max_body_bytes: int = field(repr=False)
    _body: bytes | None = field(default=None, repr=False)

    async def body(self) -> bytes:
        """The body (Content-Length required; over the limit: 413, the body is not read)."""
        if self._body is None:
            length = self.headers.get("content-length")
            if length is None or not length.isdigit():
                raise HttpError(411, "a Content-Length header is required", close=True)
            if int(length) > self._max_body_bytes:
                raise HttpError(413, f"body of {int(length)} bytes exceeds the limit of {self._max_body_bytes} "
                                     f"bytes; send smaller batches", close=True)
            if self.headers.get("expect", "").lower() == "100-continue":
                self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._body = await self._reader.readexactly(int(length))
        return self._body


class HttpServer:
    def __init__(self, app, host: str, port: int, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes
        # Bound now, so the address (port 0 -> the one chosen) is known before start().
        self.sock = socket.create_server((host, port), backlog=128)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self._run, name="resilinet-http", daemon=True)
        self._thread.start()
        self._started.wait()
        return self

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        self.sock.close()

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self.sock, limit=MAX_HEAD_BYTES)
        self._started.set()
        async with server:
            await self._stop.wait()
            server.close()
            connections = asyncio.all_tasks() - {asyncio.current_task()}
            for task in connections:
                task.cancel()
            # let each one close its socket before the loop goes away
            await asyncio.gather(*connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed the connection
                except asyncio.LimitOverrunError:
                    writer.write(_encode(Response.json(400, {"error": "request headers too long"}, close=True)))
                    return
                req = _parse_head(head, reader, writer, self.max_body_bytes)
                if req is None:
                    writer.write(_encode(Response.json(400, {"error": "malformed HTTP request"}, close=True)))
                    return
                resp = await self.app(req)
                keep = _keep_alive(req) and not resp.close
                if keep and req._body is None and req.headers.get("content-length", "0") != "0":
                    try:  # an answer given without reading the body: skip it to reach the next request
                        await req.body()
                    except HttpError:
                        keep = False
                if not keep:
                    resp.close = True
                writer.write(_encode(resp))
                if not keep:
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # the server is stopping. Return normally: on Python 3.11 asyncio's stream callback
            # logs a cancelled connection task as an error ("Exception in callback ...").
            pass
        finally:
            try:
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()


def _parse_head(head: bytes, reader, writer, max_body_bytes: int) -> Request | None:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        if not version.startswith("HTTP/1."):
            return None
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
    except ValueError:
        return None
    path, _, query = target.partition("?")
    return Request(method, path, query, version, headers, reader, writer, max_body_bytes)


def _keep_alive(req: Request) -> bool:
    conn = req.headers.get("connection", "").lower()
    return conn != "close" if req.version == "HTTP/1.1" else conn == "keep-alive"


def _encode(resp: Response) -> bytes:
    """Status line, headers and body in one write (two writes would wait on the client's
    delayed ACK when Nagle's algorithm is on; asyncio turns it off anyway)."""
    reason = HTTPStatus(resp.status).phrase
    head = (f"HTTP/1.1 {resp.status} {reason}\r\nContent-Type: {resp.content_type}\r\n"
            f"Content-Length: {len(resp.body)}\r\n" + ("Connection: close\r\n" if resp.close else "") + "\r\n")
    return head.encode("latin-1") + resp.body
