"""Seeds are set in one place."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, step, stream): data for step t is the same whether
    the run was interrupted or not, so resuming needs no saved data-RNG state."""
    return np.random.default_rng([seed, stream, step])
