"""The code's layout shows the flow (issue 23, item 7): ``obsx/`` holds a package per stage —
intake, warehouse, indicators, publication — and no two modules import each other, directly or
round a longer loop, even from inside a function."""

import ast
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

OBSX = Path(__file__).resolve().parents[1] / "obsx"
STAGES = {"intake", "warehouse", "indicators", "publication"}
SHARED = {"__init__", "cli", "config", "sourceyaml"}  # the command line and what every stage uses


def _module(path: Path) -> str:
    parts = path.relative_to(OBSX.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> tuple[list[str], set[tuple[str, str]]]:
    """Every obsx module, and (importer, imported) for every import of one by another."""
    modules = {_module(p): p for p in OBSX.rglob("*.py")}
    edges = set()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target in modules and target != name and not name.startswith(target + "."):
                    edges.add((name, target))
    return sorted(modules), edges


def test_obsx_is_grouped_by_stage():
    top = {p.stem for p in OBSX.glob("*.py")}
    packages = {p.name for p in OBSX.iterdir() if (p / "__init__.py").exists()}
    assert top == SHARED and packages == STAGES


def test_no_module_imports_itself_round_a_loop():
    modules, edges = _imports()
    index = {m: i for i, m in enumerate(modules)}
    rows, cols = zip(*((index[a], index[b]) for a, b in edges), strict=True)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(modules),) * 2)
    _, label = connected_components(graph, directed=True, connection="strong")
    loops = [
        [m for m, lab in zip(modules, label, strict=True) if lab == group]
        for group in np.unique(label)
        if (label == group).sum() > 1
    ]
    assert len(edges) > 100 and loops == [], loops
