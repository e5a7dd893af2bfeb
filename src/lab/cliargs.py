"""Command-line flags checked where they are parsed, for both console commands.

Every bad flag gets one line naming the subcommand, the flag and what it wants, e.g.

    error: binding sample: argument --n: expected an integer >= 1, got '-1' (see `binding sample --help`)

and exit status 2, before any work starts. argparse's own complaints (an unknown flag, a missing
--out, a bad choice) come out the same way, from the subcommand they were given to (plain argparse
reports an unknown flag with the top-level usage). The flag types below refuse what would be
silently wrong: a count of 0 or -1, nan/inf, an empty path, a file where a folder is wanted and
the reverse.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line UserErrors (printed by lab.errors.run_cli), and whose
    parse_args reports an unknown flag from the subcommand that was given it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)   # a chosen subcommand's parser overrides its parent's

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            parsed._parser.error(f"unrecognized arguments: {' '.join(extra)}")
        del parsed._parser
        return parsed


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A whole number within [lo, hi]."""
    want = " and ".join(s for s in (lo is not None and f">= {lo}", hi is not None and f"<= {hi}") if s)

    def parse_int(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer{' ' + want if want else ''}, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected an integer {want}, got {text!r}")
        return value

    parse_int.__name__ = "integer"   # argparse names the type in some messages
    return parse_int


def number(lo: float | None = None, *, above: float | None = None) -> Callable[[str], float]:
    """A finite number >= lo (or > above)."""
    want = f">= {lo:g}" if lo is not None else f"> {above:g}" if above is not None else ""

    def parse_float(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (lo is not None and value < lo) or (above is not None and value <= above):
            raise argparse.ArgumentTypeError(f"expected a finite number{' ' + want if want else ''}, got {text!r}")
        return value

    parse_float.__name__ = "number"
    return parse_float


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    path = Path(text)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{parent} is a file, so nothing can be written under it")
    return path


def out_dir(text: str) -> str:
    """A folder to write into: absent (it is created) or a folder, never a file."""
    path = _path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; a folder is wanted")
    return text


def out_file(text: str) -> str:
    """A file to write: absent or a file, never a folder (its folder is created)."""
    path = _path(text)
    if path.is_dir() or text.endswith(("/", "\\")):
        raise argparse.ArgumentTypeError(f"{text} is a folder; a file path is wanted")
    return text


def _existing(text: str, folder: bool) -> str:
    path = _path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} not found")
    if path.is_dir() != folder:
        raise argparse.ArgumentTypeError(f"{text} is a {'file' if folder else 'folder'}; a "
                                         f"{'folder' if folder else 'file'} is wanted")
    return text


def in_dir(text: str) -> str:
    """A folder that must exist (a run to read)."""
    return _existing(text, folder=True)


def in_file(text: str) -> str:
    """A file that must exist."""
    return _existing(text, folder=False)


def int_range(least: int = 1) -> Callable[[str], tuple[int, int]]:
    """LO,HI: two integers, least <= LO <= HI."""
    def parse_range(text: str) -> tuple[int, int]:
        try:
            lo, hi = (int(t) for t in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LO,HI (two integers), got {text!r}") from None
        if not least <= lo <= hi:
            raise argparse.ArgumentTypeError(f"expected {least} <= LO <= HI, got {text!r}")
        return lo, hi

    parse_range.__name__ = "int_range"
    return parse_range


def torch_device(text: str) -> str:
    """A torch device name: cpu, cuda, cuda:1, mps, ..."""
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    return text
