"""A local Ray cluster that listens on loopback only, and checks that it does (both studies use Ray).

Network safety: Ray is told to stay on 127.0.0.1 through two environment variables that must be
set before `ray` is imported (`loopback_env()`, run when this module is imported; a plain
`ray.init()`, even with `_node_ip_address="127.0.0.1"`, binds the machine's external address
without them). `listening_sockets()` lists every TCP socket the cluster's processes listen on,
so tests and commands can check that none is external, and `cluster_pids()` / `alive_pids()`
that none outlives `ray.shutdown()`.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from lab.errors import UserError

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def loopback_env() -> None:
    """Must run before `import ray` (it is read at import / start time)."""
    os.environ.update(LOOPBACK_ENV)


loopback_env()
import ray  # noqa: E402


def init_local(num_cpus: int, address: str | None = None, gpus_per_task: float = 0.0, **kwargs) -> bool:
    """Connect to the cluster at `address`, or start a one-machine cluster on loopback with
    `num_cpus` CPUs (kwargs go to `ray.init`: resources, _system_config, ...), and refuse one that
    cannot give a task `gpus_per_task` GPUs (check_cluster_gpus; a cluster this call started is
    shut down first). Returns whether this call started it (and so should shut it down); False
    when Ray was already running."""
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, log_to_driver=False)
    elif started:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, log_to_driver=False,
                 configure_logging=False, **kwargs)
    try:
        check_cluster_gpus(gpus_per_task)
    except UserError:
        if started:
            shutdown()
        raise
    return started


def check_gpu_share(device: str, gpus_per_task: float, what: str) -> None:
    """A run's `train.device` against the GPU share its Ray task asks. Ray pins a task that asks a
    share to one GPU (CUDA_VISIBLE_DEVICES) and counts it; a task that asks none sees every GPU of
    its node, so cuda runs would all land on the first one, uncounted. So a cuda run needs a share,
    and a cpu run must not hold one that a GPU run could use."""
    if device == "cuda" and gpus_per_task == 0:
        raise UserError(f"{what} trains on train.device=cuda: give each Ray task a GPU share with "
                        "--gpus-per-task (e.g. 0.25 puts four runs on a GPU)")
    if device == "cpu" and gpus_per_task > 0:
        raise UserError(f"--gpus-per-task {gpus_per_task:g} but {what} trains on train.device=cpu; "
                        "set train.device=cuda (or auto) or drop --gpus-per-task")


def check_cluster_gpus(gpus_per_task: float) -> None:
    """Refuse a GPU share that no live node of the connected cluster can give: its tasks would
    wait for ever."""
    if gpus_per_task <= 0:
        return
    most = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n["Alive"]), default=0.0)
    if most < gpus_per_task:
        raise UserError(f"--gpus-per-task {gpus_per_task:g}: no node of this Ray cluster has that many "
                        f"GPUs (the most on one node: {most:g})")


def shutdown() -> None:
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


def session_pids(driver_pid: int) -> list[int]:
    """The processes of the Ray cluster that the process `driver_pid` started: its descendants and
    every process whose command line names that driver's session directory (Ray names it
    session_<date>_<pid of the process that started it>), re-parented ones included. Other Ray
    clusters on the machine are not counted."""
    pids = set(descendants(driver_pid))
    mark = re.compile(rb"session_[0-9_-]+_%d(?![0-9])" % driver_pid)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if mark.search((d / "cmdline").read_bytes()):
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
