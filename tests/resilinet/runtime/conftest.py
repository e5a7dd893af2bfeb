"""One loopback Ray cluster for the runtime tests, hosting one deployment per method (toy MLP
chains), started once and shut down at the end; a final check that no process is left behind."""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

if importlib.util.find_spec("ray") is None:  # the runtime is optional: without ray, skip its tests
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def deployments():
    from resilinet.hyperconnections import METHODS
    from resilinet.runtime.cluster import alive_pids, cluster_pids, start_local_cluster, stop_cluster
    from resilinet.runtime.router import Router
    from resilinet.runtime.supervisor import Supervisor
    from resilinet_toys import toy_model
    from rt_helpers import runtime_test_config

    models = {m: toy_model("mlp", m, seed=1) for m in METHODS}
    start_local_cluster(models["resilinet"].topology)
    sup = Supervisor(models, runtime_test_config())  # five processes host all four methods
    routers = {m: Router(model, torch.full((4,), 0.25), seed=0, supervisor=sup, key=m)
               for m, model in models.items()}
    pids: list[int] = []
    try:
        sup.start()
        pids = [p for p in cluster_pids() if p != os.getpid()]
        yield {m: (models[m], routers[m]) for m in models}
    finally:
        sup.stop()
        stop_cluster()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive_pids(pids):
            time.sleep(0.2)
        left = alive_pids(pids)
        assert not left, f"processes left behind by the Ray cluster: {left}"


