"""Small deterministic models and data for the ResiliNet tests (no dataset files needed)."""
from __future__ import annotations

import torch

from resilinet.data import Splits
from resilinet.config import ModelConfig
from resilinet.models import build_model

torch.set_num_threads(1)


def toy_splits(n: int = 120, features: int = 12, classes: int = 4, seed: int = 0, image: bool = False) -> Splits:
    g = torch.Generator().manual_seed(seed)
    shape = (1, 8, 8) if image else (features,)

    def part(m: int):
        y = torch.randint(0, classes, (m,), generator=g)
        x = torch.randn(m, *shape, generator=g)
        x.view(m, -1)[:, :classes] += 2.0 * torch.nn.functional.one_hot(y, classes)  # learnable signal
        return x, y

    (xtr, ytr), (xva, yva), (xte, yte) = part(n), part(n // 4), part(n // 4)
    return Splits("toy", xtr, ytr, xva, yva, xte, yte, classes, shape, "generated")


def toy_model(arch: str = "mlp", method: str = "resilinet", seed: int = 0, **kw):
    torch.manual_seed(seed)
    shape = (12,) if arch == "mlp" else (1, 8, 8)
    defaults = {"hidden_units": 16} if arch == "mlp" else {"width": 0.125}
    model = build_model(ModelConfig(arch=arch, method=method, **{**defaults, **kw}), shape, 4, seed)
    # Perturb BN running stats so eval mode is not the identity (catches mode mix-ups).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


