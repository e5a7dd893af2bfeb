"""Where torch runs: the device a config names, and the CPU threads of this process."""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> str:
    """"cpu" | "cuda" | "auto" (cuda when available) -> the device to use."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available")
    return name


def set_threads(threads: int) -> None:
    """Torch's CPU threads for this process (0 leaves torch's default)."""
    if threads:
        torch.set_num_threads(threads)
