"""`binding sweep FILE --out DIR`: named recipes (config overrides) x seeds, each a normal resumable
`binding train` run, dispatched as Ray tasks.

FILE is TOML (sweep_file.py):

    preset = "cpu"                                  # the base of every recipe
    seeds = [0, 1]
    overrides = ["train.hop_loss_weight=0"]         # applied to every recipe, before its own
    [recipes.plain]
    overrides = []
    [recipes.next-token]
    overrides = ["train.next_token_loss_weight=1"]

Run `r` of seed `s` lives in DIR/r/seed{s} and is exactly a `binding train` run folder, so
`binding evaluate`, `binding analyze` and `binding curriculum --init` read it. Every config is
built (and so validated) and every existing folder checked before anything starts; rerunning the
same command resumes what is unfinished and skips what is done. A recipe's file entry may change
only in ways that leave its runs' configs equal (a changed config is refused by the run folder).

Dispatch: a local Ray cluster on loopback with `workers` CPUs (default: this machine's cores), or
the cluster at `--address`; each run is one task asking one CPU, so Ray runs one per core it is
given (the cpu preset trains on one thread). On GPUs (`train.device=cuda` in the file's
overrides) each task also asks `--gpus-per-task` of a GPU (0.25: four runs share one), and Ray
pins it to one GPU, so the runs spread over the cluster's GPUs. The summary (sweep_report.py) is written at the end,
and by `--report-only` at any time, also while the sweep runs.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from lab.errors import UserError

from .config import make_config
from .sweep_file import Recipe, SweepSpec


def _check_runs(spec: SweepSpec, out: Path, gpus_per_task: float) -> list[tuple[Recipe, int, Path]]:
    """Refuse a device without its GPU share (or a share for a cpu run) and folders holding
    another run; returns the runs still to do."""
    from lab.ray_local import check_gpu_share

    from .train import Stage, check_folder, plan_stage

    todo = []
    for recipe, seed, folder in spec.runs(out):
        cfg = spec.config(recipe)
        check_gpu_share(cfg.train.device, gpus_per_task, f"recipe {recipe.name!r}")
        try:
            check_folder(folder, cfg, plan_stage(cfg, Stage("text")), seed)
        except UserError as e:
            raise UserError(f"recipe {recipe.name!r} seed {seed}: {e}") from None
        if not (folder / "results.json").exists():
            todo.append((recipe, seed, folder))
    return todo


def _train_one(preset: str, overrides: list[str], folder: str, seed: int) -> dict:
    """One run, in a Ray worker (the config is rebuilt there from strings: nothing pickled but those)."""
    from .train import train

    return train(make_config(preset, overrides), folder, seed, quiet=True)


def run_sweep(spec: SweepSpec, out: str | Path, workers: int = 0, address: str | None = None,
              sweep_file: Path | None = None, quiet: bool = False, gpus_per_task: float = 0.0) -> Path:
    """Train every unfinished run of the sweep; returns the summary's path (see sweep_report)."""
    from lab import ray_local

    from .sweep_report import write_summary

    out = Path(out)
    todo = _check_runs(spec, out, gpus_per_task)
    out.mkdir(parents=True, exist_ok=True)
    if sweep_file is not None and Path(sweep_file).resolve() != (out / "sweep.toml").resolve():
        shutil.copyfile(sweep_file, out / "sweep.toml")
    if todo:
        started = ray_local.init_local(num_cpus=workers or os.cpu_count() or 1, address=address,
                                       gpus_per_task=gpus_per_task)
        try:
            _dispatch(spec, todo, quiet, gpus_per_task)
        finally:
            if started:
                ray_local.shutdown()
    return write_summary(spec, out)


def _dispatch(spec: SweepSpec, todo: list[tuple[Recipe, int, Path]], quiet: bool, gpus_per_task: float) -> None:
    import ray

    task = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=0)(_train_one)
    pending = {task.remote(spec.preset, [*spec.overrides, *r.overrides], str(folder), seed): (r, seed)
               for r, seed, folder in todo}
    failed = []
    with tqdm(total=len(pending), disable=quiet, unit="run", desc="sweep", dynamic_ncols=True) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)   # short: Ctrl-C gets through
            if not done:
                continue
            recipe, seed = pending.pop(done[0])
            try:
                res = ray.get(done[0])
                bar.set_postfix_str(f"{recipe.name} seed {seed}: ID {res['id_accuracy']:.3f}")
            except ray.exceptions.RayTaskError as e:
                failed.append(f"{recipe.name} seed {seed}: {str(e.cause).strip().splitlines()[-1]}")
            except ray.exceptions.RayError as e:   # the worker itself died (killed, out of memory)
                failed.append(f"{recipe.name} seed {seed}: {type(e).__name__}; its folder keeps the last "
                              f"checkpoint, rerun the sweep to resume it")
            bar.update(1)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} runs failed (above); the others are kept")
