"""The runs a page explores, loaded from their folders, and the checks on what the user gave.

Every problem with the input (a missing folder, a folder that is not a trained run, an output
path that is a file, two runs of different tasks) is one `UserError` line, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError
from lab.io import read_json
from lab.rundir import MetricsLog

from ..config import BindingConfig
from ..model import Transformer
from ..run import CHECKPOINT, is_trained, load_trained

ANALYSIS_DIR = "mechanism"   # `binding analyze --run RUN --out RUN/mechanism`, as the README does it


@dataclass
class ExploredRun:
    """One trained run as the page sees it."""
    path: Path
    name: str
    model: Transformer
    cfg: BindingConfig
    seed: int
    results: dict | None          # results.json (the final evaluation), None if the run has none
    last_metrics: dict | None     # the last evaluation row of metrics.jsonl (plateau diagnostics)
    analysis_dir: Path            # where `binding analyze` wrote mechanism.json (it may not exist)


def check_out(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the page (index.html is written into it)")
    return out


def load_run(path: str | Path, analysis_dir: str | Path | None = None, flag: str = "--run") -> ExploredRun:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a run folder (from `binding train` or a curriculum stage)")
    if not is_trained(path):
        raise UserError(f"{flag} {path} is not a trained run (needs config.json and {CHECKPOINT}.safetensors/.json, "
                        "as `binding train` or `binding curriculum` write them)")
    model, cfg, seed = load_trained(path)
    results = read_json(path / "results.json", "results") if (path / "results.json").exists() else None
    return ExploredRun(path, _name(path), model, cfg, seed, results, _last_metrics(path),
                       Path(analysis_dir) if analysis_dir else path / ANALYSIS_DIR)


def check_same_task(runs: list[ExploredRun]) -> None:
    """Two runs are compared on the same examples, so they must share the task."""
    first = runs[0]
    for other in runs[1:]:
        if other.cfg.task != first.cfg.task:
            raise UserError(f"{first.path} and {other.path} are trained on different tasks "
                            f"({first.cfg.task} vs {other.cfg.task}); the page compares runs on the same examples")


def _name(path: Path) -> str:
    """A short label: the last two folder names (seed0/text, image/mix20, ...)."""
    parts = path.resolve().parts
    return "/".join(parts[-2:])


def _last_metrics(path: Path) -> dict | None:
    rows = [r for r in MetricsLog(path / "metrics.jsonl").rows() if "slot_accuracy" in r]
    return rows[-1] if rows else None
