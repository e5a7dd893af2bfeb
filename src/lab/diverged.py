"""A run whose loss (or gradient) turns non-finite stops with one message, and its last
checkpoint is kept: nothing non-finite is checkpointed, logged or written as results."""
from __future__ import annotations

import math

from .errors import UserError


class Diverged(UserError):
    pass


def check_finite(loss: float, grad_norm: float, where: str, kept: str) -> None:
    """Raise Diverged when loss or grad_norm is nan/inf. where: "step 1234"; kept: what stays on
    disk, e.g. "the checkpoint of step 1000 is kept"."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    raise Diverged(f"training diverged at {where} (loss {loss}, gradient norm {grad_norm}); {kept}. "
                   f"Rerunning would diverge again at the same point: change the config (e.g. a lower "
                   f"learning rate) and use a new --out")
