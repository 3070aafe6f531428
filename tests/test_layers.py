"""Imports flow one way: config -> data/models -> training -> strategies -> stage -> cli/workflow.

Every `import tavaal.x` or `from tavaal.x import ...` anywhere in a module (also inside functions
and under TYPE_CHECKING) is an edge between top-level parts of the package; the graph of parts
must have no cycle, and each part may only import the layers at or below its own.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tavaal"

# Lower number = lower layer. A part may import parts of a lower or equal layer (never a cycle).
LAYERS = {
    "errors": 0,
    "seeding": 0,
    "cpu_kernels": 0,
    "config": 1,
    "data": 2,
    "models": 2,
    "losses": 2,
    "augmentation": 2,
    "segmentation": 2,
    "distributed": 2,
    "uncertainty": 2,
    "optim": 2,
    "portable_adam": 2,
    "inference": 3,
    "pool": 3,
    "oracle": 3,
    "labeling": 3,
    "tasks": 3,
    "training": 4,
    "adversarial": 4,
    "strategies": 5,
    "layout": 6,
    "validation": 6,
    "resources": 6,
    "results_guard": 7,
    "stage": 7,
    "practitioner": 7,
    "report": 8,
    "cli": 9,
}


def part_of(module: str) -> str:
    """tavaal.strategies.base -> strategies; tavaal -> (the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported_parts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tavaal":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("tavaal."):
                found.add(part_of(node.module))
        elif isinstance(node, ast.Import):
            found |= {part_of(a.name) for a in node.names if a.name.startswith("tavaal.")}
    return found - {"", "__version__"}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        edges.setdefault(part, set()).update(imported_parts(path) - {part})
    return edges


def test_every_part_has_a_layer():
    assert set(graph()) <= set(LAYERS), set(graph()) - set(LAYERS)


def test_imports_only_go_down_the_layers():
    upward = [
        f"tavaal.{part} imports tavaal.{other}"
        for part, others in graph().items()
        for other in others
        if LAYERS[other] > LAYERS[part]
    ]
    assert not upward, upward


def test_no_import_cycles():
    edges = graph()
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_no_file_keeps_merge_conflict_markers():
    """A conflict left unresolved in a merge (prose included) is caught here, not by a reader."""
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    marker = re.compile(r"^(<{7}|>{7}) ", re.M)
    found = []
    for name in listed:
        path = root / name
        if path.suffix in {".py", ".md", ".yaml", ".smk", ".toml", ".rst", ""} and path.is_file():
            if marker.search(path.read_text(errors="replace")):
                found.append(name)
    assert found == []
