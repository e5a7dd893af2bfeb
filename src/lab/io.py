"""Atomic file writes: a reader (or a `kill -9`) never sees a half-written file; strict JSON.

JSON has no NaN or Infinity (Python's json writes them anyway, and strict readers such as
JavaScript's JSON.parse or jq refuse the file), so every JSON the project writes goes through
`dumps`: a non-finite float becomes null, "no value". Files keep the usual mode (umask applied),
not mkstemp's 0600.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()   # what open() would give a new file


def strict(obj: Any) -> Any:
    """obj with every non-finite float (nan, inf) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """json.dumps that writes strict JSON (see above)."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    from .errors import UserError

    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON ({e})") from None
