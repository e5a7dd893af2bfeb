"""The studies as lists of runs: each run a preset, overrides and a seed (spec sections 5-6).

`reproduce`: vanilla, deepFogGuard, ResiliNet, ResiliNet+ on the embedded data, MLP chain on
flattened features plus one CNN, several seeds (spec section 5's tables).
`ablate`: the paper's ablations (spec section 6) on the MLP chain: hyperconnection weight schemes,
failout survival rates, every subset of skip hyperconnections, and the second partition.

The lists are data: `experiments.run_all` trains them, `report.py` lays out their results, and
neither needs the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .hyperconnections import METHODS
from .topology import HEALTH, skip_name

ABLATION_GROUPS = ("weights", "failout", "skips", "partition 2")


@dataclass(frozen=True)
class RunSpec:
    name: str                      # run directory name under OUT/runs
    group: str                     # what the report groups it under ("mlp", "weights", ...)
    label: str                     # column label within the group ("ResiliNet", "scheme 2", ...)
    overrides: tuple[str, ...]
    seed: int
    preset: str = "cpu"
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def reproduce_specs(preset: str, seeds: list[int], cnn: str = "resnet18", extra: tuple[str, ...] = ()) -> list[RunSpec]:
    specs = []
    for arch in ("mlp", cnn):
        for method in METHODS:
            for s in seeds:
                specs.append(RunSpec(f"{arch}-{method}-s{s}", arch, method,
                                     (f"model.arch={arch}", f"model.method={method}", *extra), s, preset))
    return specs


def ablation_specs(preset: str, seeds: list[int], extra: tuple[str, ...] = ()) -> list[RunSpec]:
    """All on the Health topology MLP chain; ResiliNet unless the ablation is about methods."""
    specs = []
    base = ("model.arch=mlp", *extra)
    for s in seeds:
        # The default ResiliNet (scheme 1, survival 0.9, all skips) appears in three groups; it
        # shares one run directory and is trained once.
        default = f"resilinet-default-s{s}"
        for scheme in (1, 2, 3, 4):
            specs.append(RunSpec(default if scheme == 1 else f"weights{scheme}-s{s}", "weights", f"scheme {scheme}",
                                 (*base, "model.method=resilinet", f"model.weight_scheme={scheme}"), s, preset))
        for rate in ("0.95", "0.9", "0.7", "0.5", "variable"):
            specs.append(RunSpec(default if rate == "0.9" else f"failout{rate}-s{s}", "failout", f"survival {rate}",
                                 (*base, "model.method=resilinet", f"failout.survival={rate}"), s, preset))
        for k in range(2 ** len(HEALTH.all_skips)):
            subset = [l for i, l in enumerate(HEALTH.all_skips) if k >> i & 1]
            text = ",".join(skip_name(l) for l in subset) or "none"
            full = len(subset) == len(HEALTH.all_skips)
            name = default if full else f"skips-{text.replace(',', '+')}-s{s}"
            specs.append(RunSpec(name, "skips", text,
                                 (*base, "model.method=resilinet", f"model.skips={'all' if full else text}"), s, preset))
        for method in METHODS:
            specs.append(RunSpec(f"partition2-{method}-s{s}", "partition 2", method,
                                 (*base, f"model.method={method}", "model.partition=2"), s, preset))
    return specs
