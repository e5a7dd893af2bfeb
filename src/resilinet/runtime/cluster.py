"""Start the runtime's Ray cluster: loopback only, with one custom resource per node role.

Network safety and the process / socket checks are lab.ray_local's (shared with `binding sweep`),
re-exported here for the runtime and its tests: Ray is told to stay on 127.0.0.1 before it is
imported, and `listening_sockets()` lists every TCP socket the cluster's processes listen on, so
tests and `resilinet serve` can check that none is external.

Roles are Ray custom resources: each node actor asks for one unit of its role (`iot`, `edge`,
`fog`, `cloud`), so on a real cluster (`ray start --resources='{"fog": 2}'` on the fog machine)
each partition lands on the machine that plays its role. On one machine the local cluster is
started with every role's count (`role_resources`).
"""
from __future__ import annotations

import logging
import signal
import threading

from lab.ray_local import (LOOPBACK, LOOPBACK_ENV, alive_pids, cluster_pids, descendants,
                           external_sockets, init_local, is_loopback, listening_sockets, loopback_env, ray,
                           shutdown)

from ..topology import Topology

__all__ = ["LOOPBACK", "LOOPBACK_ENV", "SYSTEM_CONFIG", "alive_pids", "cluster_pids", "descendants",
           "external_sockets", "is_loopback", "listening_sockets", "loopback_env", "ray", "role_of",
           "role_resources", "start_local_cluster", "stop_cluster"]

# Activations up to this size travel inside Ray's task messages (through the caller's process)
# instead of the shared-memory object store: for batches of a few hundred MLP examples that costs
# less CPU per hop (plasma create/seal/fetch round trips dominate). Ray's default is 100 KiB; a
# merged batch of 1024 x 784 float32 inputs is 3.2 MB. On a multi-machine cluster pass it to
# `ray start --system-config='{"max_direct_call_object_size": 8388608}'`.
SYSTEM_CONFIG = {"max_direct_call_object_size": 8 << 20}


def role_of(node: str, topology: Topology) -> str:
    """Physical role -> Ray custom resource name."""
    if node == topology.iot:
        return "iot"
    if node == topology.cloud:
        return "cloud"
    return "edge" if node == "e" else "fog"


def role_resources(topology: Topology) -> dict[str, float]:
    """Custom resources a single machine needs to host every node of `topology`."""
    out: dict[str, float] = {}
    for n in topology.chain:
        r = role_of(n, topology)
        out[r] = out.get(r, 0.0) + 1.0
    return out


class _ExpectedDeaths(logging.Filter):
    """Ray logs an "Unhandled error ... ActorDiedError" dump (a dozen lines) for every result of a
    killed node that nobody read; the router reads only the ones it needs, by design, and the
    supervisor already logs each death as one line. Those dumps are dropped; any other unhandled
    error is kept, cut to its first line."""

    EXPECTED = ("ActorDiedError", "ActorUnavailableError", "TaskCancelledError", "RayActorError")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith("Unhandled error"):
            return True
        if any(name in msg for name in self.EXPECTED):
            return False
        record.msg, record.args = msg.splitlines()[0], ()
        return True


def quiet_expected_deaths() -> None:
    logger = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, _ExpectedDeaths) for f in logger.filters):
        logger.addFilter(_ExpectedDeaths())


def start_local_cluster(topology: Topology, num_cpus: int = 2, address: str | None = None,
                        copies: int = 1) -> bool:
    """Start a one-machine Ray cluster on loopback with one role resource per node (`copies`
    deployments' worth), or connect to an existing cluster at `address` ("127.0.0.1:6379") whose
    machines carry the roles. Returns whether this call started (or connected) Ray: False when
    this process already had it running."""
    quiet_expected_deaths()
    # ray.init installs a SIGTERM handler that dumps a C++ stack trace and exits at once; keep the
    # caller's (`resilinet serve` / `chaos` stop their node processes and the cluster on SIGTERM).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    started = init_local(num_cpus, address, resources={k: v * copies for k, v in role_resources(topology).items()},
                         _system_config=SYSTEM_CONFIG)
    if main and previous is not None:
        signal.signal(signal.SIGTERM, previous)
    return started


def stop_cluster() -> None:
    shutdown()
