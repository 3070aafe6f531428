"""Imports flow one way: config -> data/models -> training -> strategies -> stage -> cli/workflow.

Every `import tavaal.x` or `from tavaal.x import ...` anywhere in a module (also inside functions
and under TYPE_CHECKING) is an edge between top-level parts of the package; the graph of parts
must have no cycle, and each part may only import the layers at or below its own.

Within a part, modules may import each other, but never in a circle at import time: the
module-level imports (those run when a module is first imported, so not inside functions and not
under ``if TYPE_CHECKING:``) of the `tavaal.*` modules must form no cycle either.
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
    "registry": 0,
    "atomic": 0,
    "config": 1,
    "data": 2,
    "models": 2,
    "losses": 2,
    "augmentation": 2,
    "randaugment": 2,
    "swa": 2,
    "segmentation": 2,
    "distributed": 2,
    "uncertainty": 2,
    "diversity": 2,
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
    "config_schema": 6,
    "resources": 6,
    "results_guard": 7,
    "stage": 7,
    "adversary_replay": 7,
    "practitioner": 7,
    "report": 8,
    "cli": 9,
    "workflow_plan": 9,
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


def module_name(path: Path) -> str:
    """tavaal/strategies/bald.py -> tavaal.strategies.bald; tavaal/models/__init__.py ->
    tavaal.models."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runs_at_import(node: ast.AST):
    """The nodes under `node` that run when its module is imported: all but function bodies
    and ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        test = child.test if isinstance(child, ast.If) else None
        if getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING":
            for statement in child.orelse:
                yield statement
                yield from _runs_at_import(statement)
            continue
        yield child
        yield from _runs_at_import(child)


def module_level_imports(path: Path, own: str, modules: set[str]) -> set[str]:
    """The modules among `modules` that `path`, the source of module `own`, imports when it is
    imported.

    An edge goes to the module named: ``from a.b import c`` is an edge to ``a.b``, or to
    ``a.b.c`` when that is a module. Parent packages are not edges: Python creates a package
    before running its ``__init__``, so a submodule importing a sibling through the package path
    does not need the ``__init__`` to have finished; importing a *name* from it does.
    """
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in _runs_at_import(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {name for name in found if name in modules} - {own}


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: module_level_imports(path, name, modules) for name, path in paths.items()}


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """For each module on a cycle, a shortest cycle through it (without repeats), as the list
    of modules along it starting at its smallest name and repeating it at the end. The modules
    on cycles are those of the strongly connected groups of more than one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:
        for member in sorted(group):
            cycle = _cycle_within(member, group, edges)[:-1]
            turn = cycle.index(min(cycle))
            cycle = cycle[turn:] + cycle[:turn]
            if cycle + cycle[:1] not in cycles:
                cycles.append(cycle + cycle[:1])
    return cycles


def _cycle_within(start: str, group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from `start` back to itself inside `group` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges[node] & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a cycle of {sorted(group)} but none was found")


def test_import_cycles_finds_a_cycle_and_ignores_function_level_imports(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(edges) == [["a", "b", "c", "a"]]
    two_loops = {"p": {"q", "r"}, "q": {"p"}, "r": {"p"}}
    assert import_cycles(two_loops) == [["p", "q", "p"], ["p", "r", "p"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import x.one\n"
        "from x import two, helper\n"
        "if TYPE_CHECKING:\n    import x.three\n"
        "try:\n    from x.four import name\nexcept ImportError:\n    pass\n"
        "def later():\n    import x.five\n"
        "class Later:\n    import x.six\n    def method(self):\n        import x.seven\n"
    )
    modules = {"x", "x.one", "x.two", "x.three", "x.four", "x.five", "x.six", "x.seven"}
    found = module_level_imports(module, "m", modules)
    assert found == {"x", "x.one", "x.two", "x.four", "x.six"}
    relative = tmp_path / "rel.py"
    relative.write_text("from . import sibling\nfrom .. import two\nfrom ..one import name\n")
    modules = {"x", "x.one", "x.two", "x.sub", "x.sub.sibling"}
    assert module_level_imports(relative, "x.sub.rel", modules) == {
        "x.sub.sibling",
        "x.two",
        "x.one",
    }


def test_no_module_level_import_cycle_between_modules():
    cycles = [" -> ".join(cycle) for cycle in import_cycles(module_graph())]
    assert cycles == [], "module-level import cycles:\n" + "\n".join(cycles)


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
