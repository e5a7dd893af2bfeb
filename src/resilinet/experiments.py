"""Experiments: the runs of a study (`studies.py`), trained by one command, `jobs` at a time.

Each run has its own run directory under OUT/runs/; a finished run (results.json present) is not
redone, an interrupted one resumes from its checkpoint, so re-running a command continues it.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from lab.io import read_json

from .studies import RunSpec


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
