"""The asyncio HTTP front-end on its own (no Ray): shutting down with connections still open."""
import logging
import socket

from resilinet.runtime.httpserver import HttpServer, Response


async def echo_length(req):
    return Response.json(200, {"bytes": len(await req.body())})


def test_stopping_closes_idle_keep_alive_connections_and_logs_no_error(caplog):
    server = HttpServer(echo_length, "127.0.0.1", 0, max_body_bytes=1 << 20).start()
    idle = []
    for _ in range(3):   # connections that sent one request and wait for the next (keep-alive)
        s = socket.create_connection(server.address, timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert b'{"bytes": 3}' in s.recv(4096)
        idle.append(s)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        server.stop()
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    for s in idle:   # each connection was closed by the server
        assert s.recv(4096) == b""
        s.close()
