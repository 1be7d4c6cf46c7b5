"""Imports point down the layers of DESIGN.md; the pure core imports nothing but the standard library.

    3  faces      labtrack (the package's re-exports), cli, render, server.*, __main__
    2  verbs      writer, runtime, run, runlist, tracking, demo, inputs, sweep, reproduce, compare, check, export
    1  services   settings, store.*, env.*          (store and env never import each other)
    0  core       core.*                            (standard library only)

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

FACES = 3
VERBS = 2
SERVICES = 1
CORE = 0

# Top-level modules of the verbs layer (DESIGN.md: tracking.py, sweep.py, reproduce.py and their helpers).
VERB_MODULES = {"writer", "runtime", "run", "runlist", "tracking", "demo", "inputs", "sweeps", "reproduction", "compare", "check",
                "export"}
FACE_MODULES = {"cli", "render", "server", "__main__"}


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
                # `from labtrack import runtime` depends on labtrack.runtime, not on the package's re-exports
                edges.append(Edge(name, candidate if candidate in known else base, node.lineno))
    return edges


def rank(name: str) -> int | None:
    parts = name.split(".")
    if parts == ["labtrack"]:
        return FACES
    head = parts[1]
    if head == "core":
        return CORE
    if head in ("settings", "store", "env"):
        return SERVICES
    if head in VERB_MODULES:
        return VERBS
    if head in FACE_MODULES:
        return FACES
    return None


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
            bad.append(f"{edge} (third-party)")
    assert bad == [], "core must be pure (stdlib + labtrack.core only):\n" + "\n".join(bad)


def test_the_import_walk_sees_imports_inside_functions() -> None:
    """Guards the checker itself: cli.py imports labtrack.tracking only inside its command functions."""
    found, edges = all_edges()
    known = set(found)
    cli_targets = {labtrack_target(e.target, known) for e in edges if e.source == "labtrack.cli"}
    assert "labtrack.tracking" in cli_targets
    core_targets = {e.target for e in edges if e.source.startswith("labtrack.core")}
    assert "labtrack.core.errors" in core_targets
