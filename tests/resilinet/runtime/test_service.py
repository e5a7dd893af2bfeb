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


def test_a_wrong_method_names_the_allowed_ones_and_head_works_where_get_does(service):
    conn = http.client.HTTPConnection(*service.address, timeout=30)
    try:
        conn.request("GET", "/predict")
        r = conn.getresponse()
        assert r.status == 405 and r.getheader("Allow") == "POST" and "POST" in json.loads(r.read())["error"]
        conn.request("HEAD", "/status")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
    finally:
        conn.close()


def test_a_negative_content_length_is_a_bad_request(service):
    assert raw(service, b"POST /predict HTTP/1.1\r\nContent-Length: -5\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_metrics_are_valid_prometheus_text_with_one_block_per_family(service):
    from prometheus_client.parser import text_string_to_metric_families

    call(service, "POST", "/predict", json.dumps({"inputs": [[0.0] * 12]}).encode())
    status, text = call(service, "GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"resilinet_requests", "resilinet_node_up", "resilinet_node_routed_around",
            "resilinet_node_deadline_seconds", "resilinet_request_latency_seconds"} <= set(families)
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names)), "a family's samples are split over several blocks"
    around = {(s.labels["node"], s.labels["reason"]) for s in families["resilinet_node_routed_around"].samples}
    assert {("f2", "deadline"), ("f2", "dead"), ("f2", "hung")} <= around


def test_two_services_count_their_own_requests(service, deployments):
    model, router = deployments["resilinet"]
    other = Service(router, model.input_shape, port=0).start()
    try:
        before = call(service, "GET", "/status")[1]["requests"].get("200", 0)
        call(other, "POST", "/predict", json.dumps({"inputs": [[0.0] * 12]}).encode())
        assert call(other, "GET", "/status")[1]["requests"] == {"200": 1}
        # the predict and the GET /status (an answer is counted once it has been computed)
        assert 'resilinet_requests_total{code="200"} 2.0' in call(other, "GET", "/metrics")[1]
        assert call(service, "GET", "/status")[1]["requests"].get("200", 0) == before + 1  # this GET's own
    finally:
        other.stop()


def test_labelled_requests_are_counted_as_measured_accuracy(service, deployments):
    model, _ = deployments["resilinet"]
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(9))
    truth = model(x).argmax(1).tolist()
    before = call(service, "GET", "/status")[1]["measured_accuracy"]
    wrong = [(c + 1) % 4 for c in truth[:2]]
    status, _ = call(service, "POST", "/predict", json.dumps({"inputs": x.tolist(), "labels": truth[2:] + wrong}).encode())
    assert status == 200
    after = call(service, "GET", "/status")[1]["measured_accuracy"]
    assert after["examples"] == before["examples"] + 4
    correct_before = round((before["accuracy"] or 0) * before["examples"])
    assert round(after["accuracy"] * after["examples"]) == correct_before + sum(
        p == c for p, c in zip(truth, truth[2:] + wrong))
    status, out = call(service, "POST", "/predict", json.dumps({"inputs": x.tolist(), "labels": [0]}).encode())
    assert status == 400 and '"labels" must be a list of 4 integers' in out["error"]


def test_status_counts_the_last_minute_and_what_was_routed_around(service):
    call(service, "POST", "/predict", json.dumps({"inputs": [[0.0] * 12]}).encode())
    st = call(service, "GET", "/status")[1]
    assert st["last_minute"]["requests"] >= 1 and st["last_minute"]["all_alive"] >= 1
    for node in st["nodes"].values():
        assert set(node["routed_around"]) == {"deadline", "dead", "hung"}
        assert node["deadline_s"] >= st["hop_deadline_s"]


def test_openapi_describes_predict_with_both_body_types_and_the_limits(service):
    status, doc = call(service, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    post = doc["paths"]["/predict"]["post"]
    body = post["requestBody"]["content"]
    assert set(body) == {"application/json", "application/octet-stream"}
    assert body["application/json"]["schema"]["properties"]["inputs"]["maxItems"] == 8
    assert {"200", "400", "413"} <= set(post["responses"])


def test_the_live_page_is_served_at_the_root(service):
    status, html = call(service, "GET", "/")
    assert status == 200 and "<title>ResiliNet service</title>" in html and 'fetch("/status"' in html


def test_a_non_loopback_host_gets_a_warning_and_loopback_none():
    from resilinet.runtime.service import host_warning

    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert "no authentication" in host_warning("0.0.0.0")


def test_stopping_closes_idle_keep_alive_connections_and_logs_no_error(deployments, caplog):
    import logging

    model, router = deployments["resilinet"]
    svc = Service(router, model.input_shape, port=0).start()
    idle = []
    for _ in range(3):   # connections that got one answer and wait for the next request (keep-alive)
        conn = http.client.HTTPConnection(*svc.address, timeout=5)
        conn.request("GET", "/status")
        r = conn.getresponse()
        assert r.status == 200 and r.read()
        idle.append(conn)
    with caplog.at_level(logging.ERROR):
        svc.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    for conn in idle:   # each connection was closed by the server
        assert conn.sock.recv(4096) == b""
        conn.close()


def test_a_fault_inside_the_service_is_a_json_500_and_the_server_keeps_answering(capfd):
    """Anything the service raises that is not an HttpError (a bug, a Ray error nobody mapped) is
    answered with a 500 naming it, never a bare traceback page, and the next request is served."""
    from resilinet.runtime.http_app import HttpThread, bind, build_app

    class Faulty:
        max_body_bytes, codes = 1 << 10, []

        def count_answer(self, status):
            self.codes.append(status)

        async def predict(self, body, content_type, query):
            if body == b"boom":
                raise KeyError("no actor named 'f9'")
            return b'{"predictions": []}'

    fake = Faulty()
    server = HttpThread(build_app(fake), bind("127.0.0.1", 0)).start()
    try:
        answers = []
        for body in (b"boom", b"{}"):
            conn = http.client.HTTPConnection("127.0.0.1", server.sock.getsockname()[1], timeout=10)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            answers.append((r.status, json.loads(r.read())))
            conn.close()
    finally:
        server.stop()
    assert answers[0] == (500, {"error": "internal error while answering: KeyError: \"no actor named 'f9'\"; "
                                         "the request may be retried"})
    assert answers[1] == (200, {"predictions": []}) and fake.codes == [500, 200]
    assert "KeyError" in capfd.readouterr().err
