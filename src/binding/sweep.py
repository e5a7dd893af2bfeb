"""`binding sweep FILE --out DIR`: named recipes (config overrides) x seeds, each a normal resumable
`binding train` run, dispatched as Ray tasks.

FILE is TOML:

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
given (the cpu preset trains on one thread). The summary (sweep_report.py) is written at the end,
and by `--report-only` at any time, also while the sweep runs.
"""
from __future__ import annotations

import os
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lab.errors import UserError

from .config import BindingConfig, PRESETS, make_config

SPEC_KEYS = {"preset", "seeds", "overrides", "recipes"}


@dataclass(frozen=True)
class Recipe:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class SweepSpec:
    preset: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    recipes: tuple[Recipe, ...]

    def config(self, recipe: Recipe) -> BindingConfig:
        try:
            return make_config(self.preset, [*self.overrides, *recipe.overrides])
        except UserError as e:
            raise UserError(f"recipe {recipe.name!r}: {e}") from None

    def runs(self, out: Path) -> list[tuple[Recipe, int, Path]]:
        """Seed-major: every recipe's first seed is dispatched before any second seed."""
        return [(r, s, run_dir(out, r.name, s)) for s in self.seeds for r in self.recipes]


def run_dir(out: Path, recipe: str, seed: int) -> Path:
    return Path(out) / recipe / f"seed{seed}"


def _strings(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where} must be a list of 'section.field=value' strings")
    return tuple(value)


def load_sweep(path: str | Path) -> SweepSpec:
    """The sweep file, checked: keys, preset, seeds, recipe names, and every recipe's config."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"sweep file {path} is not valid TOML ({e})") from None
    if unknown := set(raw) - SPEC_KEYS:
        raise UserError(f"sweep file {path}: unknown keys {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    preset = raw.get("preset", "cpu")
    if preset not in PRESETS:
        raise UserError(f"sweep file {path}: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise UserError(f"sweep file {path}: seeds must be a non-empty list of distinct integers >= 0")
    recipes_raw = raw.get("recipes")
    if not isinstance(recipes_raw, dict) or not recipes_raw:
        raise UserError(f"sweep file {path}: no [recipes.NAME] tables")
    recipes = []
    for name, body in recipes_raw.items():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"sweep file {path}: recipe name {name!r} must be letters, digits, - and _ "
                            "(it names a folder)")
        if not isinstance(body, dict) or set(body) - {"overrides"}:
            raise UserError(f"sweep file {path}: [recipes.{name}] may only hold `overrides`")
        recipes.append(Recipe(name, _strings(body.get("overrides", []), f"recipes.{name}.overrides")))
    spec = SweepSpec(preset, tuple(seeds), _strings(raw.get("overrides", []), "overrides"), tuple(recipes))
    for recipe in spec.recipes:
        spec.config(recipe)
    return spec


def _check_folders(spec: SweepSpec, out: Path) -> list[tuple[Recipe, int, Path]]:
    """Refuse folders holding another run; returns the runs still to do."""
    from .train import Stage, check_folder, plan_stage

    todo = []
    for recipe, seed, folder in spec.runs(out):
        cfg = spec.config(recipe)
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
              sweep_file: Path | None = None, quiet: bool = False) -> Path:
    """Train every unfinished run of the sweep; returns the summary's path (see sweep_report)."""
    from lab import ray_local

    from .sweep_report import write_summary

    out = Path(out)
    todo = _check_folders(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    if sweep_file is not None and Path(sweep_file).resolve() != (out / "sweep.toml").resolve():
        shutil.copyfile(sweep_file, out / "sweep.toml")
    if todo:
        started = ray_local.init_local(num_cpus=workers or os.cpu_count() or 1, address=address)
        try:
            _dispatch(spec, todo, quiet)
        finally:
            if started:
                ray_local.shutdown()
    return write_summary(spec, out)


def _dispatch(spec: SweepSpec, todo: list[tuple[Recipe, int, Path]], quiet: bool) -> None:
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(_train_one)
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
            bar.update(1)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} runs failed (above); the others are kept")
