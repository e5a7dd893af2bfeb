"""The HTTP endpoint: answers, status, metrics, and a clear 4xx for every malformed request."""
from __future__ import annotations

import http.client
import json

import pytest
import torch

from resilinet.runtime.service import Service


@pytest.fixture(scope="module")
def service(deployments):
    model, router = deployments["resilinet"]
    svc = Service(router, model.input_shape, port=0, max_batch=8, max_body_bytes=20_000,
                  info={"method": "resilinet"}).start()
    yield svc
    svc.stop()


def call(service, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection(*service.address, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    ctype = r.getheader("Content-Type", "")
    return r.status, (json.loads(data) if ctype.startswith("application/json") else data.decode())


def test_service_binds_loopback(service):
    assert service.address[0] == "127.0.0.1"


def test_predict_answers_a_batch_with_the_alive_nodes(service, deployments):
    model, _ = deployments["resilinet"]
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(5))
    status, out = call(service, "POST", "/predict", json.dumps({"inputs": x.tolist(), "logits": True}).encode())
    assert status == 200, out
    assert out["alive"] == {"f1": True, "f2": True, "e": True} and out["guessed"] is False
    assert out["predictions"] == model(x).argmax(1).tolist()
    assert torch.allclose(torch.tensor(out["logits"]), model(x), atol=1e-5)


@pytest.mark.parametrize("body, code, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, '"inputs"'),
    (json.dumps({"inputs": []}).encode(), 400, "non-empty"),
    (json.dumps({"inputs": [[0.0] * 11]}).encode(), 400, "shape [12]"),
    (json.dumps({"inputs": [[0.0] * 12, [0.0] * 5]}).encode(), 400, "12 numbers"),
    (json.dumps({"inputs": [["a"] * 12]}).encode(), 400, "12 numbers"),
    (b'{"inputs": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}', 400, "NaN"),
    (json.dumps({"inputs": [[0.0] * 12], "logits": "yes"}).encode(), 400, '"logits"'),
    (json.dumps({"inputs": [[0.0] * 12] * 9}).encode(), 413, "limit of 8"),
    (json.dumps({"inputs": [[0.0] * 12] * 500}).encode(), 413, "bytes"),
])
def test_malformed_requests_get_a_clear_4xx(service, body, code, words):
    status, out = call(service, "POST", "/predict", body, {"Content-Type": "application/json"})
    assert status == code, out
    assert words in out["error"], out


def test_wrong_paths_and_methods(service):
    assert call(service, "GET", "/nope")[0] == 404
    assert call(service, "GET", "/predict")[0] == 405
    assert call(service, "POST", "/status", b"{}")[0] == 405
    assert call(service, "DELETE", "/predict")[0] == 405


def test_status_and_metrics_report_every_node(service, deployments):
    call(service, "POST", "/predict", json.dumps({"inputs": [[0.0] * 12]}).encode())
    status, st = call(service, "GET", "/status")
    assert status == 200
    assert set(st["nodes"]) == {"iot", "e", "f2", "f1", "cloud"}
    for node in st["nodes"].values():
        assert {"state", "pid", "restarts", "requests_served", "latency_ms"} <= set(node)
    assert st["requests"]["200"] >= 1 and st["examples"] >= 1
    status, text = call(service, "GET", "/metrics")
    assert status == 200 and 'resilinet_node_up{node="f1"} 1' in text
    assert 'resilinet_requests_total{code="200"}' in text


def test_predict_accepts_raw_float32_batches(service, deployments):
    model, _ = deployments["resilinet"]
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(6))
    status, out = call(service, "POST", "/predict?logits=true", x.numpy().astype("<f4").tobytes(),
                       {"Content-Type": "application/octet-stream"})
    assert status == 200, out
    assert out["predictions"] == model(x).argmax(1).tolist() and out["alive"] == {"f1": True, "f2": True, "e": True}
    assert torch.allclose(torch.tensor(out["logits"]), model(x), atol=1e-5)


@pytest.mark.parametrize("body, query, code, words", [
    (b"", "", 400, "float32 examples of 12 values"),
    (b"\0" * 47, "", 400, "got 47 bytes"),
    (torch.full((1, 12), float("nan")).numpy().tobytes(), "", 400, "NaN"),
    (b"\0" * 48 * 9, "", 413, "limit of 8"),
    (b"\0" * 48, "?logits=yes", 400, "logits must be true or false"),
])
def test_malformed_binary_requests_get_a_clear_4xx(service, body, query, code, words):
    status, out = call(service, "POST", "/predict" + query, body, {"Content-Type": "application/octet-stream"})
    assert status == code, out
    assert words in out["error"], out


@pytest.fixture(scope="module")
def batching_service(deployments):
    """The service in front of a router that merges concurrent requests (as `resilinet serve` runs)."""
    from resilinet.runtime.router import Router

    model, router = deployments["resilinet"]
    merging = Router(model, torch.full((4,), 0.25), supervisor=router.supervisor, key="resilinet").start()
    svc = Service(merging, model.input_shape, port=0).start()
    yield svc
    svc.stop()
    merging.stop()


def test_concurrent_requests_through_a_merging_router_get_their_own_rows(batching_service, deployments):
    from concurrent.futures import ThreadPoolExecutor

    model, _ = deployments["resilinet"]
    assert batching_service.router.batching
    xs = [torch.randn(k + 1, 12, generator=torch.Generator().manual_seed(k)) for k in range(8)]

    def post(x):
        return call(batching_service, "POST", "/predict", x.numpy().astype("<f4").tobytes(),
                    {"Content-Type": "application/octet-stream"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, xs))
    for x, (status, out) in zip(xs, answers):
        assert status == 200, out
        assert out["predictions"] == model(x).argmax(1).tolist()


def test_one_connection_carries_many_requests(service):
    conn = http.client.HTTPConnection(*service.address, timeout=30)
    try:
        for _ in range(3):
            conn.request("POST", "/predict", json.dumps({"inputs": [[0.0] * 12]}).encode())
            r = conn.getresponse()
            assert r.status == 200 and len(json.loads(r.read())["predictions"]) == 1
        conn.request("GET", "/nope")  # an error answer keeps the connection open too
        r = conn.getresponse()
        assert r.status == 404 and "no endpoint" in json.loads(r.read())["error"]
        conn.request("GET", "/status")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def raw(service, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    import socket

    with socket.create_connection(service.address, timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_expect_100_continue_and_http_1_0(service):
    body = json.dumps({"inputs": [[0.0] * 12]}).encode()
    out = raw(service, b"POST /predict HTTP/1.0\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
              + body)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), out[:200]
    assert len(json.loads(out.split(b"\r\n\r\n", 2)[2])["predictions"]) == 1  # and HTTP/1.0: closed after it


def test_missing_length_and_malformed_request_line_get_4xx_and_close(service):
    out = raw(service, b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411 ") and b"Content-Length header is required" in out
    assert b"connection: close" in out.lower()
    assert raw(service, b"NOT-HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")
