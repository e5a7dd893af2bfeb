"""A multi-node Ray cluster on this machine: two raylets on loopback (Ray's own multi-node test
harness, `ray.cluster_utils.Cluster`), each carrying different role resources (head: iot + cloud;
second: edge + fogs). Node processes must land where their role is, answer like the simulation,
and route around a killed fog; every listening socket is on loopback; nothing is left behind.
The cluster runs in a child process so it cannot meet the session cluster of the other tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilinet.runtime.cluster import LOOPBACK_ENV, alive_pids

pytestmark = pytest.mark.slow

DRIVER = r'''
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from resilinet.runtime.cluster import (cluster_pids, descendants, external_sockets, listening_sockets, ray,
                                       start_local_cluster, stop_cluster)
from ray.cluster_utils import Cluster
import torch
from resilinet.config import RuntimeConfig
from resilinet.runtime.router import Router
from resilinet_toys import toy_model

cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 1, "resources": {"iot": 1, "cloud": 1}, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
cluster.add_node(num_cpus=1, resources={"edge": 1, "fog": 2}, node_ip_address="127.0.0.1")
out = {}
try:
    model = toy_model("mlp", "resilinet", seed=3)
    start_local_cluster(model.topology, address=cluster.address)
    router = Router(model, torch.full((4,), 0.25), RuntimeConfig(hop_deadline_s=1.0)).start()
    sup = router.supervisor
    out["where"] = {n: ray.get(s.handle.placement.remote()) for n, s in sup.nodes.items()}
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(0))
    clean = router.predict(x)
    os.kill(sup.nodes["f2"].pid, signal.SIGKILL)
    routed = router.predict(x)
    out.update({"clean_ok": bool(torch.allclose(clean.logits, model(x), atol=1e-5, rtol=0)),
                "clean_alive": clean.alive, "routed_alive": routed.alive,
                "routed_ok": bool(torch.allclose(routed.logits, model(x, {"f2": 0.0}), atol=1e-5, rtol=0)),
                "sockets": listening_sockets(), "external": external_sockets(),
                "pids": [p for p in cluster_pids() if p != os.getpid()]})
    router.stop()
finally:
    stop_cluster()
    cluster.shutdown()
print("RESULT " + json.dumps(out), flush=True)
'''


def test_two_raylets_on_loopback_place_each_node_by_role():
    env = {**os.environ, **LOOPBACK_ENV}
    toys = str(Path(__file__).resolve().parents[1])
    drv = subprocess.run([sys.executable, "-c", DRIVER, toys], env=env, capture_output=True, text=True,
                         timeout=300)
    line = [l for l in drv.stdout.splitlines() if l.startswith("RESULT ")]
    assert line, drv.stdout[-2000:] + drv.stderr[-4000:]
    out = json.loads(line[0][len("RESULT "):])
    deadline = time.monotonic() + 20
    while alive_pids(out["pids"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive_pids(out["pids"]), "processes left behind by the two-raylet cluster"
    assert len({s[2] for s in out["sockets"] if s[0].endswith("127.0.0.1")}) >= 3  # gcs + 2 raylets + ...
    assert out["external"] == [], out["external"]
    head, second = out["where"]["iot"]["ray_node_id"], out["where"]["e"]["ray_node_id"]
    assert head != second
    assert out["where"]["cloud"]["ray_node_id"] == head
    assert out["where"]["f1"]["ray_node_id"] == out["where"]["f2"]["ray_node_id"] == second
    assert all(w["ip"] == "127.0.0.1" for w in out["where"].values())
    assert out["clean_ok"] and all(out["clean_alive"].values())
    assert out["routed_ok"] and out["routed_alive"] == {"f1": True, "f2": False, "e": True}
