"""The README's commands run as written in a fresh clone: the quick tour's commands parse, and
every input they read exists or is written by a tour command before them; the make targets exist."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from binding.cli import parser as binding_parser
from lab import cliargs
from resilinet.cli import build_parser as resilinet_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PLACEHOLDERS = {"DIR"}   # stands for the user's own folder (a Hugging Face model)


def _tour() -> list[list[str]]:
    block = README.split("## Quick tour", 1)[1].split("```", 2)[1]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _paths(sp: argparse.ArgumentParser, args: argparse.Namespace, kinds) -> list[str]:
    found = []
    for action in sp._actions:
        if action.type in kinds and getattr(args, action.dest, None) is not None:
            value = getattr(args, action.dest)
            found += value if isinstance(value, list) else [value]
    return found


def test_the_quick_tour_parses_and_reads_only_what_exists_or_an_earlier_command_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").symlink_to(ROOT / "docs")   # files of the repository, as in a clone
    for p in PLACEHOLDERS:
        (tmp_path / p).mkdir()
    tour = _tour()
    assert len(tour) >= 15
    for argv in tour:
        program = Path(argv[0]).name
        assert argv[0] == f".venv/bin/{program}" and program in ("binding", "resilinet"), argv
        parser = binding_parser() if program == "binding" else resilinet_parser()
        args = parser.parse_args(argv[1:])   # UserError (the one-line message) if it does not parse
        sp = _subparser(parser, argv[1])
        for out in _paths(sp, args, (cliargs.out_dir,)):   # what this command writes, for those after it
            Path(out).mkdir(parents=True, exist_ok=True)
        for out in _paths(sp, args, (cliargs.out_file,)):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).touch()


def test_the_inputs_of_the_tour_are_checked_against_a_fresh_clone(tmp_path, monkeypatch):
    # the check above is only as good as the types: a command reading a folder nothing writes fails
    monkeypatch.chdir(tmp_path)
    import pytest
    from lab.errors import UserError

    with pytest.raises(UserError, match="runs/more-seeds not found"):
        binding_parser().parse_args(["combine", "--out", "runs/all", "runs/more-seeds"])


def test_the_make_targets_the_readme_names_exist():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`?make ([a-z-]+)", README))
    assert named and named <= targets, named - targets
