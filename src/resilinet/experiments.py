"""Experiments: lists of runs (preset + overrides + seed), launched by one command.

`reproduce`: vanilla, deepFogGuard, ResiliNet, ResiliNet+ on the embedded data, MLP chain on
flattened features plus one CNN, several seeds (spec section 5's tables).
`ablate`: the paper's ablations (spec section 6) on the MLP chain: hyperconnection weight schemes,
failout survival rates, every subset of skip hyperconnections, and the second partition.

Each run has its own run directory under OUT/runs/; a finished run (results.json present) is not
redone, an interrupted one resumes from its checkpoint, so re-running a command continues it.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lab.io import read_json

from .hyperconnections import METHODS
from .topology import HEALTH, skip_name


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


def _run_one(spec: RunSpec, run_dir: str) -> dict:
    """Worker: train (or resume) one run, single-threaded, quietly."""
    import torch

    from .config import make_config
    from .train import train

    torch.set_num_threads(1)
    cfg = make_config(spec.preset, list(spec.overrides) + ["train.threads=1"])
    t0 = time.time()
    results = train(cfg, run_dir, seed=spec.seed, progress=False)
    results["wall_s"] = time.time() - t0
    return results


def run_all(specs: list[RunSpec], out: Path, jobs: int = 1) -> dict[str, dict]:
    """Run every spec (skipping finished ones), `jobs` at a time; returns {name: results}."""
    runs = out / "runs"
    done: dict[str, dict] = {}
    todo, unique = [], list({s.name: s for s in specs}.values())  # equal names = the same run
    for s in unique:
        res = runs / s.name / "results.json"
        if res.exists():
            done[s.name] = read_json(res, "results")
        else:
            todo.append(s)
    bar = tqdm(total=len(unique), initial=len(done), desc="runs", unit="run")
    if jobs <= 1:
        for s in todo:
            bar.set_postfix_str(s.name)
            done[s.name] = _run_one(s, str(runs / s.name))
            bar.update()
    else:
        # spawn: fresh interpreters, no forked torch thread pools
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            pending = {pool.submit(_run_one, s, str(runs / s.name)): s for s in todo}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    s = pending.pop(f)
                    done[s.name] = f.result()
                    bar.set_postfix_str(s.name)
                    bar.update()
    bar.close()
    return done


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))
