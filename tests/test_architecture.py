"""The shape of the code: which modules may import which (read from the source, not run).

Serving, chaos, analysis and reporting rebuild trained models from their run folders (`run.py`)
and never import training code, so a deployment or an analysis needs neither the trainer nor the
datasets it trained on; and no module imports itself back through a cycle.
"""
from __future__ import annotations

import ast
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
