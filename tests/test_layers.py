"""Imports point down the layers of DESIGN.md; the pure core imports nothing but the standard library.

    4  faces      labtrack (the package's re-exports), cli.*, server.*, ui.*, integrations.*, testing.*, __main__
    3  verbs      verbs.*   (the Client, tracking, sweeps, comparison, reproduction)
    2  run        run.*     (the run handle, its write buffer and spool, the background writer, process state)
    1  services   settings, store.*, env.*          (store and env never import each other)
    0  core       core.*                            (standard library only)

No module may import, directly or through others, a module that imports it back: import circles are
failures inside a layer too.

Every ``import`` and ``from ... import`` is checked, including those inside functions and under
``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import labtrack

PACKAGE = Path(labtrack.__file__).resolve().parent

FACES = 4
VERBS = 3
RUN = 2
SERVICES = 1
CORE = 0

LAYER_OF_FOLDER = {"core": CORE, "settings": SERVICES, "store": SERVICES, "env": SERVICES, "run": RUN,
                   "verbs": VERBS, "cli": FACES, "server": FACES, "ui": FACES, "integrations": FACES,
                   "testing": FACES, "__main__": FACES, "sklearn": FACES}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return (PACKAGE.parent / Path(*name.split(".")) / "__init__.py").exists()


def imports_of(name: str, path: Path, known: set[str]) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name) else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges.extend(Edge(name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # `from labtrack.store import schema` depends on labtrack.store.schema, not on the package's re-exports
                edges.append(Edge(name, candidate if candidate in known else base, node.lineno))
    return edges


def rank(name: str) -> int | None:
    parts = name.split(".")
    if parts == ["labtrack"]:
        return FACES
    return LAYER_OF_FOLDER.get(parts[1])


def layer_group(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def labtrack_target(target: str, known: set[str]) -> str | None:
    """The labtrack module an import refers to (the longest known prefix), or None for other packages."""
    if target != "labtrack" and not target.startswith("labtrack."):
        return None
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return "labtrack"


def all_edges() -> tuple[dict[str, Path], list[Edge]]:
    found = modules()
    known = set(found)
    edges = [edge for name, path in found.items() for edge in imports_of(name, path, known)]
    return found, edges


def test_every_module_belongs_to_a_layer() -> None:
    found, _ = all_edges()
    unranked = sorted(name for name in found if rank(name) is None)
    assert unranked == [], f"modules with no layer (add them to tests/test_layers.py and DESIGN.md): {unranked}"


def test_imports_point_down_the_layers() -> None:
    found, edges = all_edges()
    known = set(found)
    reverse = []
    for edge in edges:
        target = labtrack_target(edge.target, known)
        if target is None:
            continue
        source_rank, target_rank = rank(edge.source), rank(target)
        if source_rank is None or target_rank is None:
            continue  # reported by test_every_module_belongs_to_a_layer
        if target_rank > source_rank:
            reverse.append(f"{edge} (layer {source_rank} -> {target_rank})")
    assert reverse == [], "imports that point up the layers:\n" + "\n".join(reverse)


def test_store_and_env_do_not_import_each_other() -> None:
    found, edges = all_edges()
    known = set(found)
    crossing = []
    for edge in edges:
        target = labtrack_target(edge.target, known)
        if target is None:
            continue
        pair = (layer_group(edge.source), layer_group(target))
        if pair in (("store", "env"), ("env", "store")):
            crossing.append(str(edge))
    assert crossing == [], "store and env must not depend on each other:\n" + "\n".join(crossing)


def test_settings_depends_only_on_core() -> None:
    found, edges = all_edges()
    known = set(found)
    bad = [str(e) for e in edges if e.source == "labtrack.settings"
           and (t := labtrack_target(e.target, known)) is not None and rank(t) != CORE]
    assert bad == []


# Optional data libraries a core record may hand its data to (MetricHistory.to_numpy), imported only in the
# function that converts: importing labtrack.core never needs them.
CONVERSIONS = {"numpy", "pandas"}


def lazy_lines(path: Path) -> set[int]:
    """Lines of the imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.lineno for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))}


def test_core_imports_only_the_standard_library_and_core() -> None:
    found, edges = all_edges()
    known = set(found)
    bad = []
    for edge in edges:
        if rank(edge.source) != CORE:
            continue
        target = labtrack_target(edge.target, known)
        if target is not None:
            if rank(target) != CORE:
                bad.append(str(edge))
        elif edge.target.split(".")[0] not in sys.stdlib_module_names:
            if edge.target.split(".")[0] in CONVERSIONS and edge.line in lazy_lines(found[edge.source]):
                continue
            bad.append(f"{edge} (third-party)")
    assert bad == [], "core must be pure (stdlib + labtrack.core only):\n" + "\n".join(bad)


def test_the_import_walk_sees_imports_inside_functions() -> None:
    """Guards the checker itself: the CLI imports labtrack.verbs.tracking only inside its command functions."""
    found, edges = all_edges()
    known = set(found)
    cli_targets = {labtrack_target(e.target, known) for e in edges if e.source == "labtrack.cli.main"}
    assert "labtrack.verbs.tracking" in cli_targets
    core_targets = {e.target for e in edges if e.source.startswith("labtrack.core")}
    assert "labtrack.core.errors" in core_targets


def import_circles(edges: list[Edge], known: set[str]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted; a self-import counts too."""
    graph: dict[str, set[str]] = {name: set() for name in known}
    for edge in edges:
        target = labtrack_target(edge.target, known)
        if target is not None and edge.source in graph:
            graph[edge.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                circles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in sorted(graph):
        if name not in index:
            visit(name)
    return circles


def test_no_import_circles_anywhere() -> None:
    found, edges = all_edges()
    circles = import_circles(edges, set(found))
    assert circles == [], "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_a_circle() -> None:
    """Guards the checker itself, on a made-up graph: a -> b -> c -> a is one circle; d -> a is not in it."""
    edges = [Edge("labtrack.a", "labtrack.b", 1), Edge("labtrack.b", "labtrack.c", 1), Edge("labtrack.c", "labtrack.a", 1),
             Edge("labtrack.d", "labtrack.a", 1)]
    assert import_circles(edges, {"labtrack.a", "labtrack.b", "labtrack.c", "labtrack.d"}) == [
        ["labtrack.a", "labtrack.b", "labtrack.c"]]
