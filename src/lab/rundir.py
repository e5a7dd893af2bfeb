"""A run directory holds everything needed to understand and reproduce a run:

    config.json     resolved config, seed, git commit, command line, start time
    metrics.jsonl   one JSON object per evaluation (append-only; trimmed to the checkpoint on resume)
    checkpoint.*    latest checkpoint (safetensors + JSON sidecar)
    results.json    final metrics
    .lock           held (flock) by the one process writing the folder; names its pid
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_json, dumps


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "threads": torch.get_num_threads()}


def write_config(run_dir: Path, config: dict, seed: int, extra: dict | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", {
        "config": config, "seed": seed, "git_commit": git_commit(), "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **(extra or {}),
    })


class MetricsLog:
    """Append-only JSONL log of metrics rows, each with a `step`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
        return rows

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (they belong to work lost in a crash and will be redone)."""
        keep = [r for r in self.rows() if r.get("step", 0) <= step]
        atomic_write_bytes(self.path, "".join(dumps(r) + "\n" for r in keep).encode())


@contextmanager
def held(run_dir: str | os.PathLike):
    """Hold run_dir for this process while it writes there; a second writer is refused at once.

    An flock on run_dir/.lock: the kernel drops it when the holder exits, however it dies, so a
    lock left by a killed process is simply taken over (no stale-lock cleanup). The file keeps the
    holder's pid and host for the message."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise UserError(f"{run_dir} is being written by {holder}; wait for it to finish, stop it, "
                        f"or use another --out") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        yield
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [".lock"]:   # refused before writing: leave no trace
            (run_dir / ".lock").unlink()
            run_dir.rmdir()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
