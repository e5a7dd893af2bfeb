"""What both command lines refuse, flag by flag: the table below is the documentation.

Every row is a command line with one bad value; each must end with exit status 2 and exactly one
line on stderr, `error: ...`, naming the flag (or the problem), with no traceback and nothing
written. A test also checks that the table covers every flag of every subcommand, so a new flag
needs a row (or a line in FREE saying why nothing is refused).
"""
from __future__ import annotations

import argparse

import pytest

from binding.cli import _main as binding_main
from binding.cli import parser as binding_parser
from lab.errors import run_cli
from resilinet.cli import _main as resilinet_main
from resilinet.cli import build_parser as resilinet_parser

# Bad values by the kind of flag.
COUNT = ["0", "-1", "x", "1.5", "nan", ""]             # an integer >= 1
INDEX = ["-1", "x", "1.5", "inf", ""]                  # an integer >= 0 (seeds, --mistakes, --threads)
SECONDS = ["0", "-1", "nan", "inf", "x", ""]           # a finite number > 0
EVERY = ["-1", "nan", "inf", "x", ""]                  # a finite number >= 0 (0 = off)
OUT_DIR = ["{file}", "{file}/sub", ""]                 # a folder to write: a file is refused
OUT_FILE = ["{dir}", "{dir}/", "{file}/x.json", ""]    # a file to write: a folder is refused
IN_DIR = ["{missing}", "{file}", ""]                   # a folder to read
IN_FILE = ["{missing}", "{dir}", ""]
CHOICE = ["nope", ""]
N_RANGE = ["5", "6,2", "a,b", "0,3", ""]

# (command, flag): (bad values, the command line around it); "{v}" is the bad value.
B, R = "binding", "resilinet"
TABLE: dict[tuple[str, str, str], tuple[list[str], str]] = {
    (B, "config", "--preset"): (CHOICE, "--preset {v}"),
    (B, "sample", "--preset"): (CHOICE, "--preset {v}"),
    (B, "sample", "--n"): (COUNT, "--n {v}"),
    (B, "sample", "--count"): (COUNT, "--count {v}"),
    (B, "sample", "--seed"): (INDEX, "--seed {v}"),
    (B, "train", "--preset"): (CHOICE, "--preset {v}"),
    (B, "train", "--out"): (OUT_DIR, "--out {v}"),
    (B, "train", "--seed"): (INDEX, "--seed {v}"),
    (B, "evaluate", "--run"): (IN_DIR, "--run {v}"),
    (B, "evaluate", "--out"): (OUT_FILE, "--out {v}"),
    (B, "evaluate", "--samples"): (COUNT, "--samples {v}"),
    (B, "evaluate", "--seed"): (INDEX, "--seed {v}"),
    (B, "evaluate", "--mistakes"): (INDEX, "--mistakes {v}"),
    (B, "render-samples", "--out"): (OUT_FILE, "--out {v}"),
    (B, "render-samples", "--count"): (COUNT, "--count {v}"),
    (B, "render-samples", "--n-min"): (COUNT + ["9"], "--out {tmp}/g.png --n-max 8 --n-min {v}"),
    (B, "render-samples", "--n-max"): (COUNT + ["500"], "--out {tmp}/g.png --n-max {v}"),
    (B, "render-samples", "--seed"): (INDEX, "--seed {v}"),
    (B, "pretrain-encoder", "--kind"): (CHOICE, "--kind {v}"),
    (B, "pretrain-encoder", "--out"): (OUT_DIR, "--out {v}"),
    (B, "pretrain-encoder", "--steps"): (COUNT, "--steps {v}"),
    (B, "pretrain-encoder", "--seed"): (INDEX, "--seed {v}"),
    (B, "curriculum", "--preset"): (CHOICE, "--preset {v}"),
    (B, "curriculum", "--regime"): (["nope", "image-text+nope"], "--preset smoke --out {tmp}/c --regime {v}"),
    (B, "curriculum", "--out"): (OUT_DIR, "--out {v}"),
    (B, "curriculum", "--seed"): (INDEX, "--seed {v}"),
    (B, "reproduce", "--preset"): (CHOICE, "--preset {v}"),
    (B, "reproduce", "--out"): (OUT_DIR, "--out {v}"),
    (B, "reproduce", "--seeds"): (COUNT, "--seeds {v}"),
    (B, "reproduce", "--first-seed"): (INDEX, "--first-seed {v}"),
    (B, "reproduce", "--workers"): (COUNT, "--workers {v}"),
    (B, "reproduce", "--gpus-per-task"): (EVERY, "--gpus-per-task {v}"),
    (B, "combine", "--out"): (OUT_DIR, "--out {v}"),
    (B, "combine", "folders"): (IN_DIR, "--out {tmp}/c {v}"),
    (B, "sweep", "file"): (IN_FILE, "{v}"),
    (B, "sweep", "--out"): (OUT_DIR, "--out {v}"),
    (B, "sweep", "--workers"): (INDEX, "--workers {v}"),
    (B, "sweep", "--gpus-per-task"): (EVERY, "--gpus-per-task {v}"),
    (B, "analyze", "--run"): (IN_DIR, "--run {v}"),
    (B, "analyze", "--out"): (OUT_DIR, "--out {v}"),
    (B, "analyze", "--pairs"): (COUNT, "--pairs {v}"),
    (B, "analyze", "--seed"): (INDEX, "--seed {v}"),
    (B, "analyze", "--n-range"): (N_RANGE, "--n-range {v}"),
    (B, "analyze", "--point"): (CHOICE, "--point {v}"),
    (B, "analyze", "--position"): (CHOICE, "--position {v}"),
    (B, "analyze", "--probe-samples"): (COUNT, "--probe-samples {v}"),
    (B, "analyze", "--threads"): (INDEX, "--threads {v}"),
    (B, "compare-pretrained", "--llm"): (IN_DIR, "--llm {v}"),
    (B, "compare-pretrained", "--vlm"): (IN_DIR, "--vlm {v}"),
    (B, "compare-pretrained", "--out"): (OUT_DIR, "--out {v}"),
    (B, "compare-pretrained", "--pairs"): (COUNT, "--pairs {v}"),
    (B, "compare-pretrained", "--seed"): (INDEX, "--seed {v}"),
    (B, "compare-pretrained", "--n-range"): (N_RANGE + ["2,6"], "--n-range {v}"),
    (B, "compare-pretrained", "--words"): (COUNT + ["33"], "--words {v}"),
    (B, "compare-pretrained", "--batch-size"): (COUNT, "--batch-size {v}"),
    (B, "compare-pretrained", "--device"): (["nope", ""], "--device {v}"),
    (B, "compare-pretrained", "--dtype"): (CHOICE, "--dtype {v}"),
    (B, "explore", "--run"): (IN_DIR, "--run {v}"),
    (B, "explore", "--run2"): (IN_DIR, "--run2 {v}"),
    (B, "explore", "--out"): (OUT_DIR, "--out {v}"),
    (B, "explore", "--analysis"): (IN_DIR, "--analysis {v}"),
    (B, "explore", "--analysis2"): (IN_DIR, "--analysis2 {v}"),
    (B, "explore", "--per-n"): (COUNT, "--per-n {v}"),
    (B, "explore", "--pool"): (COUNT, "--pool {v}"),
    (B, "explore", "--seed"): (INDEX, "--seed {v}"),
    (B, "explore", "--threads"): (INDEX, "--threads {v}"),
    (R, "train", "--preset"): (CHOICE, "--preset {v}"),
    (R, "train", "--out"): (OUT_DIR, "--out {v}"),
    (R, "train", "--seed"): (INDEX, "--seed {v}"),
    (R, "evaluate", "--run"): (IN_DIR, "--run {v}"),
    (R, "evaluate", "--out"): (OUT_FILE, "--out {v}"),
    (R, "evaluate", "--split"): (CHOICE, "--split {v}"),
    (R, "evaluate", "--mc-draws"): (INDEX, "--mc-draws {v}"),
    (R, "evaluate", "--mc-seed"): (INDEX, "--mc-seed {v}"),
    **{(R, cmd, flag): spec for cmd in ("reproduce", "ablate") for flag, spec in {
        "--preset": (CHOICE, "--preset {v}"),
        "--out": (OUT_DIR, "--out {v}"),
        "--seeds": (["-1", "x", "0,-2", "", ","], "--seeds {v}"),
        "--jobs": (COUNT, "--jobs {v}"),
    }.items()},
    (R, "reproduce", "--cnn"): (CHOICE + ["none"], "--cnn {v}"),   # reproduce needs a CNN; ablate may skip it
    (R, "ablate", "--cnn"): (CHOICE, "--cnn {v}"),
    (R, "ablate", "--only"): (["nope", "failout,nope"], "--out {tmp}/a --only {v}"),
    **{(R, cmd, flag): spec for cmd in ("serve", "chaos") for flag, spec in {
        "--run": (IN_DIR, "--run {v}"),
        "--port": (["-1", "65536", "x", ""], "--port {v}"),
        "--hop-deadline-s": (SECONDS, "--hop-deadline-s {v}"),
    }.items()},
    (R, "chaos", "--out"): (OUT_DIR, "--out {v}"),
    (R, "chaos", "--duration"): (SECONDS, "--duration {v}"),
    (R, "chaos", "--kill-every"): (EVERY, "--kill-every {v}"),
    (R, "chaos", "--hang-every"): (EVERY, "--hang-every {v}"),
    (R, "chaos", "--hang-s"): (SECONDS, "--hang-s {v}"),
    (R, "chaos", "--clients"): (COUNT, "--clients {v}"),
    (R, "chaos", "--batch"): (COUNT, "--batch {v}"),
    (R, "chaos", "--seed"): (INDEX, "--seed {v}"),
    (R, "config", "--preset"): (CHOICE, "--preset {v}"),
}
# Flags that refuse nothing at parse time, and why.
FREE = {
    "--address": "a Ray cluster address; Ray reports one it cannot reach",
    "--host": "a bind address; the service reports one it cannot bind",
}
# Config overrides (every command that takes them): one line naming the field.
OVERRIDES = ["train.lr=nan", "train.lr=inf", "train.lr=1e400", "train.nope=1", "train=1", "train.lr", "model.n_layers=x"]


def _flags(cli: str):
    p = binding_parser() if cli == B else resilinet_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for cmd, sp in sub.choices.items():
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction) or a.nargs == 0 or a.dest == "overrides":
                continue
            yield cmd, a.option_strings[0] if a.option_strings else a.dest


def test_the_table_covers_every_flag_of_both_commands():
    missing = [(cli, cmd, flag) for cli in (B, R) for cmd, flag in _flags(cli)
               if (cli, cmd, flag) not in TABLE and flag not in FREE]
    assert not missing, f"flags without a row in TABLE (or a reason in FREE): {missing}"


def _cases():
    for (cli, cmd, flag), (values, template) in TABLE.items():
        for v in values:
            yield pytest.param(cli, cmd, flag, template, v, id=f"{cli}-{cmd}-{flag}={v or 'empty'}")


def _run(cli: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    rc = run_cli(binding_main if cli == B else resilinet_main, argv)
    err = capsys.readouterr().err
    return rc, err.strip().splitlines()


def _fill(text: str, tmp_path) -> str:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir(exist_ok=True)
    return text.format(file=tmp_path / "a-file", dir=tmp_path / "a-dir", missing=tmp_path / "missing",
                       tmp=tmp_path)


@pytest.mark.parametrize("cli,cmd,flag,template,value", list(_cases()))
def test_a_bad_value_is_one_line_naming_the_flag(cli, cmd, flag, template, value, tmp_path, capsys):
    value = _fill(value, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [cmd] + [value if t == "{v}" else _fill(t, tmp_path) for t in template.split()]
    rc, lines = _run(cli, argv, capsys)
    assert rc == 2, (argv, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
    assert "Traceback" not in lines[0]
    assert flag.lstrip("-") in lines[0] or flag.upper().rstrip("S") in lines[0], lines   # FOLDERS: "argument FOLDER"
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a refused command wrote something"


@pytest.mark.parametrize("cli,cmd", [(B, "train"), (B, "config"), (B, "curriculum"), (R, "train"), (R, "config")])
@pytest.mark.parametrize("override", OVERRIDES)
def test_a_bad_override_is_one_line_naming_the_field(cli, cmd, override, tmp_path, capsys):
    argv = [cmd, *(["--out", str(tmp_path / "o")] if cmd != "config" else []), *( ["--regime", "text-only"]
            if cmd == "curriculum" else []), override]
    rc, lines = _run(cli, argv, capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
    assert override.split("=")[0].split(".")[-1] in lines[0] or "section" in lines[0], lines
    assert not (tmp_path / "o").exists()


# What each subcommand requires, so that parsing reaches the unknown flag.
REQUIRED = {
    (B, "train"): "--out {tmp}/o", (B, "evaluate"): "--run {dir}", (B, "render-samples"): "--out {tmp}/g.png",
    (B, "pretrain-encoder"): "--out {tmp}/o", (B, "curriculum"): "--out {tmp}/o", (B, "reproduce"): "--out {tmp}/o",
    (B, "combine"): "--out {tmp}/o {dir}", (B, "sweep"): "{file} --out {tmp}/o", (B, "analyze"): "--run {dir} --out {tmp}/o",
    (B, "compare-pretrained"): "--llm {dir} --out {tmp}/o", (B, "explore"): "--run {dir} --out {tmp}/o",
    (R, "train"): "--out {tmp}/o", (R, "evaluate"): "--run {dir} --out {tmp}/e.json", (R, "reproduce"): "--out {tmp}/o",
    (R, "ablate"): "--out {tmp}/o", (R, "serve"): "--run {dir}", (R, "chaos"): "--run {dir}",
}


def _commands(cli: str) -> list[str]:
    return list(dict.fromkeys(cmd for cmd, _ in _flags(cli)))


@pytest.mark.parametrize("cli,cmd", [(B, c) for c in _commands(B)] + [(R, c) for c in _commands(R)])
def test_an_unknown_flag_is_reported_by_its_subcommand(cli, cmd, tmp_path, capsys):
    argv = [cmd, *_fill(REQUIRED.get((cli, cmd), ""), tmp_path).split(), "--no-such-flag"]
    rc, lines = _run(cli, argv, capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert f"{cli} {cmd}: unrecognized arguments: --no-such-flag" in lines[0], lines
    assert f"`{cli} {cmd} --help`" in lines[0]
