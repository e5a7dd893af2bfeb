"""Start (and check) a Ray cluster that listens on loopback only.

Network safety: Ray is told to stay on 127.0.0.1 through two environment variables that must be
set before `ray` is imported (`loopback_env()`); `listening_sockets()` lists every TCP socket the
cluster's processes listen on, so tests and `resilinet serve` can check that none is external.

Roles are Ray custom resources: each node actor asks for one unit of its role (`iot`, `edge`,
`fog`, `cloud`), so on a real cluster (`ray start --resources='{"fog": 2}'` on the fog machine)
each partition lands on the machine that plays its role. On one machine the local cluster is
started with every role's count (`role_resources`).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..topology import Topology

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


# Activations up to this size travel inside Ray's task messages (through the caller's process)
# instead of the shared-memory object store: for batches of a few hundred MLP examples that costs
# less CPU per hop (plasma create/seal/fetch round trips dominate). Ray's default is 100 KiB; a
# merged batch of 1024 x 784 float32 inputs is 3.2 MB. On a multi-machine cluster pass it to
# `ray start --system-config='{"max_direct_call_object_size": 8388608}'`.
SYSTEM_CONFIG = {"max_direct_call_object_size": 8 << 20}


def loopback_env() -> None:
    """Must run before `import ray` (it is read at import / start time)."""
    os.environ.update(LOOPBACK_ENV)


loopback_env()
import ray  # noqa: E402


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


def start_local_cluster(topology: Topology, num_cpus: int = 2, address: str | None = None,
                        copies: int = 1) -> None:
    """Start a one-machine Ray cluster on loopback with one role resource per node (`copies`
    deployments' worth), or connect to an existing cluster at `address` ("127.0.0.1:6379") whose
    machines carry the roles."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(num_cpus=num_cpus, resources={k: v * copies for k, v in role_resources(topology).items()}, include_dashboard=False,
             _node_ip_address=LOOPBACK, log_to_driver=False, configure_logging=False, _system_config=SYSTEM_CONFIG)


def stop_cluster() -> None:
    if ray.is_initialized():
        ray.shutdown()


def descendants(pid: int) -> list[int]:
    """pid and every process below it (via /proc), e.g. the driver's gcs_server, raylet, workers."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def cluster_pids() -> list[int]:
    """This process, its descendants, and any process whose command line names this Ray
    session's directory (processes Ray may have re-parented)."""
    pids = set(descendants(os.getpid()))
    try:
        session = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:
        session = None
    if session:
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if session.encode() in (d / "cmdline").read_bytes():
                        pids.add(int(d.name))
                except OSError:
                    pass
    return sorted(pids)


def alive_pids(pids: list[int]) -> list[int]:
    """Those of `pids` still running (zombies count as gone)."""
    out = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.append(p)
    return out


def listening_sockets(pids: list[int] | None = None) -> list[tuple[str, int, int]]:
    """[(local address, port, pid)] of listening TCP sockets owned by `pids` (default: this
    process and its descendants), from `ss -ltnpH`."""
    pids = set(cluster_pids() if pids is None else pids)
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        addr, _, port = parts[3].rpartition(":")
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                found.append((addr.strip("[]"), int(port), pid))
    return found


def is_loopback(addr: str) -> bool:
    return addr in (LOOPBACK, "::ffff:127.0.0.1", "::1", "localhost")


def external_sockets(pids: list[int] | None = None) -> list[tuple[str, int, int]]:
    """Listening sockets of the cluster that are NOT on loopback (should be empty)."""
    return [s for s in listening_sockets(pids) if not is_loopback(s[0])]
