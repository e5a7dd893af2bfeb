"""The sweep file (`binding sweep FILE`): named recipes of config overrides x seeds, in TOML.

    preset = "cpu"                                  # the base of every recipe
    seeds = [0, 1]
    overrides = ["train.hop_loss_weight=0"]         # applied to every recipe, before its own
    [recipes.plain]
    overrides = []
    [recipes.next-token]
    overrides = ["train.next_token_loss_weight=1"]

`load_sweep` checks it whole (keys, preset, seeds, names, every recipe's config) before anything
runs; run `r` of seed `s` lives in OUT/r/seed{s}. The dispatcher is sweep.py, the summary
sweep_report.py.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

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
