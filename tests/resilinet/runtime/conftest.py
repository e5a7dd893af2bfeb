"""One loopback Ray cluster for the runtime tests, hosting one deployment per method (toy MLP
chains), started once and shut down at the end; a final check that no process is left behind."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from resilinet.hyperconnections import METHODS  # noqa: E402
from resilinet.runtime.cluster import alive_pids, cluster_pids, start_local_cluster, stop_cluster  # noqa: E402
from resilinet.runtime.router import Router  # noqa: E402
from resilinet.runtime.supervisor import Supervisor  # noqa: E402
from resilinet_toys import toy_model  # noqa: E402
from rt_helpers import runtime_test_config  # noqa: E402


@pytest.fixture(scope="session")
def deployments():
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


