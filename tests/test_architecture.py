"""The shape of the code: which modules may import which (read from the source, not run).

Serving, chaos, analysis and reporting rebuild trained models from their run folders (`run.py`)
and never import training code, so a deployment or an analysis needs neither the trainer nor the
datasets it trained on; and no module imports itself back through a cycle.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
TRAINING = {"binding.train", "binding.curriculum", "binding.reproduce", "binding.longest", "binding.step_loop",
            "resilinet.train", "resilinet.experiments"}
NO_TRAINING = ["resilinet.runtime.service", "resilinet.runtime.chaos", "resilinet.runtime.router",
               "resilinet.runtime.supervisor", "resilinet.runtime.node", "resilinet.run", "resilinet.report",
               "binding.run", "binding.report", "binding.interp.analyze", "binding.interp.compare",
               "binding.interp.pretrained", "binding.explore.build", "binding.sweep_report", "lab.demo_report"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, top_level_only: bool) -> set[str]:
    """Project modules `name` imports (relative imports resolved); with top_level_only, only those
    run when the module itself is imported (not the ones inside functions)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path, name, top_level_only) if m in files} - {name}
            for name, path in files.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for m in graph[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


@pytest.mark.parametrize("module", NO_TRAINING)
def test_serving_analysis_and_reports_import_no_training_code(module):
    graph = _graph(top_level_only=False)     # lazy imports inside functions count too
    assert module in graph, f"{module} is not a module of src/"
    bad = _reachable(graph, module) & TRAINING
    assert not bad, f"{module} imports training code: {sorted(bad)}"


def test_no_module_imports_itself_through_a_cycle():
    graph = _graph(top_level_only=True)
    cycles = sorted(m for m in graph if m in _reachable(graph, m))
    assert not cycles, f"import cycles through: {cycles}"


def _readme_layout() -> dict[str, set[str]]:
    """{package folder: names the README's Layout block lists under it}."""
    text = (SRC.parent / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    package = None
    for line in block.splitlines():
        if line.startswith("src/"):
            package = line.split()[0].rstrip("/").removeprefix("src/")
            listed[package] = set()
        elif package and line.startswith("  "):
            listed[package] |= {w for w in line.split() if re.fullmatch(r"\w+(\.py|/)", w)}
    return listed


@pytest.mark.parametrize("package", ["binding", "resilinet"])
def test_the_readme_layout_names_every_module_and_only_real_ones(package):
    listed = _readme_layout()[package]
    here = SRC / package
    real = {p.name for p in here.glob("*.py") if p.name != "__init__.py"} | \
        {p.name + "/" for p in here.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert listed == real, f"README lists {sorted(listed - real)} that do not exist, misses {sorted(real - listed)}"
