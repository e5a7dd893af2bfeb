"""Shared by the runtime tests: the test RuntimeConfig and small waits."""
from __future__ import annotations

import time

from resilinet.config import RuntimeConfig
from resilinet.runtime.router import Router

HOP_DEADLINE_S = 0.3



def runtime_test_config() -> RuntimeConfig:
    # Hung nodes are not replaced during a test unless the test asks for it (hung_restart_s).
    return RuntimeConfig(hop_deadline_s=HOP_DEADLINE_S, health_interval_s=0.1, health_deadline_s=0.6,
                         hung_restart_s=600.0)


def wait_all_up(router: Router, timeout_s: float = 60.0) -> None:
    t0 = time.monotonic()
    while any(s.state != "up" for s in router.supervisor.nodes.values()):
        assert time.monotonic() - t0 < timeout_s, router.supervisor.status()
        time.sleep(0.05)
