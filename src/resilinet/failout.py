"""Failout (spec section 3): during training, a whole node's output is zeroed at random.

For each failure-prone node, one Bernoulli(survival rate) draw per mini-batch (default) or per
sample (option). A failed node's output is zeroed before any outgoing link: we express this as
the node's alive flag, so every consumer sees zeros and the ResiliNet multiplexer switches to the
skip input exactly as it would for a real failure. No rescaling (unlike dropout): at inference a
node is either there or not, so the expected activation must not be corrected for.
Training only: evaluation passes explicit alive patterns instead.

Survival rates: one number for every node ("0.9", the default), one per failure-prone node in
spec order ("0.95,0.9,0.7"), or "variable": each node's rate is its reliability in
`variable_setting` (the paper's ablation).
"""
from __future__ import annotations

import torch

from lab.errors import UserError

from .config import FailoutConfig
from .topology import AliveMask, Topology, alive_columns


def survival_rates(cfg: FailoutConfig, topology: Topology) -> tuple[float, ...]:
    """Per failure-prone node (spec order)."""
    rates = cfg.rates()
    if rates is None:
        return topology.reliabilities(cfg.variable_setting)
    n = len(topology.failure_prone)
    if len(rates) == 1:
        rates = rates * n
    if len(rates) != n:
        raise UserError(f"failout.survival: expected 1 or {n} rates (order {list(topology.failure_prone)}), "
                        f"got {len(rates)}")
    return rates


class Failout:
    """Draws alive masks {node: 0/1} for one training step."""

    def __init__(self, topology: Topology, rates: tuple[float, ...], granularity: str = "batch"):
        if granularity not in ("batch", "sample"):
            raise UserError(f"failout.granularity must be 'batch' or 'sample', got {granularity!r}")
        self.topology = topology
        self.rates = rates
        self.granularity = granularity

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, float | torch.Tensor]:
        """Per batch: {node: 0.0 or 1.0} (`AliveMask.floats`). Per sample: {failure-prone node:
        float tensor [batch_size] of 0/1} (`alive_columns`)."""
        n = 1 if self.granularity == "batch" else batch_size
        rates = torch.tensor(self.rates, dtype=torch.float32).unsqueeze(1).expand(-1, n)
        draws = (torch.rand(rates.shape, generator=generator) < rates).float()  # [nodes, n]
        if self.granularity == "batch":
            return AliveMask.from_pattern(self.topology, draws[:, 0].tolist()).floats()
        return alive_columns(self.topology, draws.T)
