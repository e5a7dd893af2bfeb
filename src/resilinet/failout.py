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

from dataclasses import dataclass, field
from typing import Literal

import torch

from lab.errors import UserError

from .topology import Topology


@dataclass
class FailoutConfig:
    enabled: Literal["auto", "on", "off"] = field(
        default="auto", metadata={"help": "auto: on for resilinet and resilinet+, off otherwise"})
    survival: str = field(default="0.9", metadata={
        "help": "survival rate: one for all nodes, a comma list in spec order, or 'variable'"})
    variable_setting: str = field(default="poor", metadata={
        "help": "reliability setting whose rates 'variable' uses"})
    granularity: Literal["batch", "sample"] = field(
        default="batch", metadata={"help": "one draw per node per mini-batch (paper) or per sample"})


def survival_rates(cfg: FailoutConfig, topology: Topology) -> tuple[float, ...]:
    """Per failure-prone node (spec order)."""
    n = len(topology.failure_prone)
    text = cfg.survival.strip()
    if text == "variable":
        return topology.reliabilities(cfg.variable_setting)
    try:
        rates = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise UserError(f"failout.survival: {text!r} is not a rate, a comma list of {n} rates, "
                        f"or 'variable'") from None
    if len(rates) == 1:
        rates = rates * n
    if len(rates) != n:
        raise UserError(f"failout.survival: expected 1 or {n} rates (order {list(topology.failure_prone)}), "
                        f"got {len(rates)}")
    if not all(0.0 <= r <= 1.0 for r in rates):
        raise UserError(f"failout.survival: rates must lie in [0, 1], got {rates}")
    return rates


class Failout:
    """Draws alive masks {node: 0/1} for one training step."""

    def __init__(self, topology: Topology, rates: tuple[float, ...], granularity: str = "batch"):
        if granularity not in ("batch", "sample"):
            raise UserError(f"failout.granularity must be 'batch' or 'sample', got {granularity!r}")
        self.nodes = topology.failure_prone
        self.rates = rates
        self.granularity = granularity

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, float | torch.Tensor]:
        """Per batch: {node: 0.0 or 1.0}. Per sample: {node: float tensor [batch_size] of 0/1}."""
        n = 1 if self.granularity == "batch" else batch_size
        rates = torch.tensor(self.rates, dtype=torch.float32).unsqueeze(1).expand(-1, n)
        draws = (torch.rand(rates.shape, generator=generator) < rates).float()  # [nodes, n]
        if self.granularity == "batch":
            return {node: float(draws[i, 0]) for i, node in enumerate(self.nodes)}
        return {node: draws[i] for i, node in enumerate(self.nodes)}
