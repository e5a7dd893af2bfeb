"""The studies as lists of runs: each run a preset, overrides and a seed (spec sections 5-6).

`reproduce`: vanilla, deepFogGuard, ResiliNet, ResiliNet+ on the MLP chain and one CNN, several
seeds (spec section 5's tables; the official *_average_accuracy.py scripts).
`ablate`: the paper's ablations (spec section 6; the official *_hyperconnection_weight.py,
*_failout_rate.py and *_skiphyperconnection_sensitivity.py scripts) on the MLP chain and one CNN:
hyperconnection weight schemes, failout survival rates, every subset of skip hyperconnections,
and the second partition for every method.

The official protocol, followed here: weight schemes 2 and 3 depend on reliability, so one model
is trained per reliability setting with that setting's weights and is reported at that setting
only (`RunSpec.setting`); likewise "variable" failout trains one model per setting whose survival
rates are that setting's reliabilities (the official code stores 0 for "no failure", where the
rates would all be 1: that cell is left empty). Schemes 1 and 4 and fixed failout rates: one
model, reported at every setting. Our earlier protocol (one model trained with the `normal`
weights, or the `poor` rates, reported everywhere) is an extra row; it is the same run as the
per-setting one trained for that setting, so it costs nothing.

Run names are made from the overrides, so two groups asking for the same model (the default
ResiliNet is scheme 1, survival 0.9 and all skips) share one run directory, trained once.
The lists are data: `experiments.run_all` trains them, `report.py` lays out their results.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .hyperconnections import METHODS
from .topology import RELIABILITY_SETTINGS, skip_name, topology_for

ABLATION_GROUPS = ("weights", "failout", "skips", "partition 2")
SETTINGS = tuple(RELIABILITY_SETTINGS["health"])   # no failure, normal, poor, hazardous (same names for CNNs)
OFFICIAL_RUNS = {"mlp": 10, "mobilenet": 1, "resnet18": 1}   # num_iterations, common_MLP_health.py / common_CNN_cifar.py
CPU_SEEDS = (0, 1, 2)
FIXED_SURVIVAL = ("0.95", "0.9", "0.7", "0.5")


@dataclass(frozen=True)
class RunSpec:
    name: str                      # run directory name under OUT/runs
    group: str                     # what the report groups it under ("mlp", "weights", ...)
    label: str                     # row label within the group ("ResiliNet", "scheme 2", ...)
    overrides: tuple[str, ...]
    seed: int
    preset: str = "cpu"
    arch: str = "mlp"
    setting: str | None = None     # per-setting protocol: the one reliability setting it is reported at
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def default_seeds(preset: str, arch: str) -> list[int]:
    """The official number of runs under `paper` (10 Health, 1 CIFAR); 3 seeds under `cpu`."""
    return list(range(OFFICIAL_RUNS[arch])) if preset == "paper" else list(CPU_SEEDS)


def reproduce_specs(preset: str, seeds: list[int] | None, cnn: str = "resnet18",
                    extra: tuple[str, ...] = ()) -> list[RunSpec]:
    specs = []
    for arch in ("mlp", cnn):
        for method in METHODS:
            for s in seeds if seeds is not None else default_seeds(preset, arch):
                specs.append(RunSpec(f"{arch}-{method}-s{s}", arch, method,
                                     (f"model.arch={arch}", f"model.method={method}", *extra), s, preset, arch))
    return specs


def _spec(arch: str, group: str, label: str, opts: dict[str, str], seed: int, preset: str,
          extra: tuple[str, ...], setting: str | None = None) -> RunSpec:
    """One run; `opts` {field: value} beyond the arch also make its name."""
    items = sorted(opts.items())
    slug = "-".join(f"{k.split('.')[-1]}={v}" for k, v in items).replace(" ", "_").replace(",", "+")
    overrides = (f"model.arch={arch}", *(f"{k}={v}" for k, v in items), *extra)
    return RunSpec(f"{arch}-{slug}-s{seed}", group, label, overrides, seed, preset, arch, setting)


def _resilinet(arch: str, group: str) -> dict[str, str]:
    """The ResiliNet every ablation varies. The official ResNet-18 weight and skip ablations train
    it with failout survival 0.95 (cifar_resnet_hyperconnection_weight.py:122,
    cifar_resnet_skiphyperconnection_sensitivity.py:165); everything else with the default 0.9."""
    opts = {"model.method": "resilinet"}
    if arch == "resnet18" and group in ("weights", "skips"):
        opts["failout.survival"] = "0.95"
    return opts


def _weight_specs(arch: str, seed: int, preset: str, extra: tuple[str, ...]) -> list[RunSpec]:
    base = _resilinet(arch, "weights")
    specs = [_spec(arch, "weights", "scheme 1", base, seed, preset, extra)]
    for scheme in (2, 3):
        for setting in SETTINGS:
            opts = {**base, "model.weight_scheme": str(scheme), "model.weight_setting": setting}
            specs.append(_spec(arch, "weights", f"scheme {scheme}", opts, seed, preset, extra, setting))
    specs.append(_spec(arch, "weights", "scheme 4", {**base, "model.weight_scheme": "4"}, seed, preset, extra))
    for scheme in (2, 3):   # ours before issue 17: one model with the `normal` weights, reported everywhere
        opts = {**base, "model.weight_scheme": str(scheme), "model.weight_setting": "normal"}
        specs.append(_spec(arch, "weights", f"scheme {scheme}, one model (normal weights)", opts, seed, preset, extra))
    return specs


def _failout_specs(arch: str, seed: int, preset: str, extra: tuple[str, ...]) -> list[RunSpec]:
    base = _resilinet(arch, "failout")
    specs = []
    for rate in FIXED_SURVIVAL:
        opts = base if rate == "0.9" else {**base, "failout.survival": rate}
        specs.append(_spec(arch, "failout", f"survival {rate}", opts, seed, preset, extra))
    for setting in SETTINGS[1:]:   # "no failure" would mean rates of 1: no failout (official: stored as 0)
        opts = {**base, "failout.survival": "variable", "failout.variable_setting": setting}
        specs.append(_spec(arch, "failout", "variable", opts, seed, preset, extra, setting))
    opts = {**base, "failout.survival": "variable", "failout.variable_setting": "poor"}
    specs.append(_spec(arch, "failout", "variable, one model (poor rates)", opts, seed, preset, extra))
    return specs


def _skip_specs(arch: str, seed: int, preset: str, extra: tuple[str, ...]) -> list[RunSpec]:
    base, all_skips = _resilinet(arch, "skips"), topology_for(arch).all_skips
    specs = []
    for k in range(len(all_skips) + 1):
        for subset in itertools.combinations(all_skips, k):
            text = ",".join(skip_name(l) for l in subset) or "none"
            opts = base if k == len(all_skips) else {**base, "model.skips": text}
            specs.append(_spec(arch, "skips", text, opts, seed, preset, extra))
    return specs


def ablation_specs(preset: str, seeds: list[int] | None, extra: tuple[str, ...] = (),
                   arch: str = "mlp") -> list[RunSpec]:
    """Every ablation on `arch` (ResiliNet unless the ablation is about methods)."""
    specs = []
    for s in seeds if seeds is not None else default_seeds(preset, arch):
        specs += _weight_specs(arch, s, preset, extra) + _failout_specs(arch, s, preset, extra)
        specs += _skip_specs(arch, s, preset, extra)
        specs += [_spec(arch, "partition 2", method, {"model.method": method, "model.partition": "2"}, s, preset, extra)
                  for method in METHODS]
    return specs
