"""The public API: one curated, sorted ``__all__`` that is exactly what ``labtrack/__init__.py`` exports,
and the names and signatures DESIGN.md promises."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pytest

import labtrack
import labtrack as lt

INIT = Path(labtrack.__file__)


def names_bound_in_init() -> set[str]:
    """Names that labtrack/__init__.py itself binds at module level (imports, assignments, defs)."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_all_is_sorted() -> None:
    assert labtrack.__all__ == sorted(labtrack.__all__)


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    assert len(set(labtrack.__all__)) == len(labtrack.__all__)
    missing = [name for name in labtrack.__all__ if not hasattr(labtrack, name)]
    assert missing == []


def test_all_is_exactly_the_public_names_init_defines() -> None:
    # Names bound by imports in __init__, plus those it loads lazily on first use (its _LAZY table).
    defined = {n for n in names_bound_in_init() if not n.startswith("_")} | {"__version__"} | set(labtrack._LAZY)
    assert set(labtrack.__all__) == defined


def test_no_public_name_is_also_a_submodule_name() -> None:
    """`import labtrack.x` binds `labtrack.x` to the module, which would shadow a function named x."""
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(labtrack.__path__)}
    assert not submodules & set(labtrack.__all__)


def test_the_verbs_load_their_modules_on_first_use_so_importing_is_fast() -> None:
    import subprocess
    import sys

    heavy = "('labtrack.verbs.sweeps', 'labtrack.verbs.compare', 'labtrack.verbs.reproduction')"
    # nor what only a run, a search or a failure needs (the filter language, the spool's reader, tempfile)
    later = ("'sqlalchemy', 'labtrack.core.filters', 'labtrack.run.drain', 'labtrack.run.recovery', "
             "'labtrack.verbs.runlist', 'tempfile', 'socket', 'traceback'")
    code = (f"import sys, labtrack as lt; print([m for m in {heavy} + ({later}) if m in sys.modules]); "
            "lt.SweepResult; lt.track(lambda x: x); "
            f"print(all(m in sys.modules for m in {heavy}[:1]), any(m in sys.modules for m in {heavy}[1:]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "True", "False"]


def test_every_public_attribute_of_the_package_is_in_all_or_a_submodule() -> None:
    stray = sorted(
        name for name, value in vars(labtrack).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
        and name not in labtrack.__all__
    )
    assert stray == []


DESIGN_NAMES = ["start_run", "active_run", "end_run", "log_param", "log_params", "log_metric", "log_metrics",
                "set_tag", "set_tags", "log_artifact", "log_text", "log_dict", "get_run", "search_runs"]
ERRORS = ["LabtrackError", "NoActiveRunError", "RunNotFound", "InvalidInput", "ParamConflict", "StoreError"]


@pytest.mark.parametrize("name", DESIGN_NAMES + ERRORS)
def test_design_names_are_exported(name: str) -> None:
    assert name in labtrack.__all__
    assert callable(getattr(labtrack, name))


def test_errors_share_one_root_and_carry_an_http_status() -> None:
    for name in labtrack.__all__:
        value = getattr(labtrack, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, lt.LabtrackError), name
            assert isinstance(value.status_code, int) and 400 <= value.status_code < 600, name
    assert issubclass(lt.ParamConflict, lt.InvalidInput)
    assert issubclass(lt.AmbiguousRunId, lt.RunNotFound)
    assert issubclass(lt.SchemaOutdated, lt.StoreError)


def parameters(func: object) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(func).parameters.values()]  # type: ignore[arg-type]


def test_signatures_match_the_documented_api() -> None:
    empty = inspect.Parameter.empty
    assert parameters(lt.log_metric)[:4] == [("key", empty), ("value", empty), ("step", None), ("timestamp", None)]
    assert parameters(lt.log_metrics)[:2] == [("metrics", empty), ("step", None)]
    assert parameters(lt.log_artifact)[1] == ("artifact_path", None)
    assert [n for n, _ in parameters(lt.log_text)] == ["text", "artifact_file"]
    assert [n for n, _ in parameters(lt.log_dict)] == ["dictionary", "artifact_file"]
    assert parameters(lt.end_run)[0][0] == "status"
    start = dict(parameters(lt.start_run))
    assert {"experiment", "params", "tags", "nested"} <= set(start)
    assert start["nested"] is False
    search = dict(parameters(lt.search_runs))
    assert {"experiment", "order_by", "max_results"} <= set(search)


def test_run_exposes_the_documented_reading_api() -> None:
    for attribute in ("id", "experiment", "status", "params", "metrics", "tags", "history", "log_metric",
                      "log_metrics", "log_param", "log_params", "set_tag", "set_tags", "log_artifact", "log_text",
                      "log_dict", "end", "artifacts", "open_artifact", "download_artifacts", "key"):
        assert hasattr(lt.Run, attribute) or attribute in ("id",), attribute
    with lt.start_run("api") as run:
        run.log_metric("m", 1.0)
    got = lt.get_run(run.id)
    assert isinstance(got, lt.Run)
    assert got.history("m").values == [1.0]
    assert isinstance(lt.search_runs("api"), lt.RunList)


def test_run_status_values_compare_as_strings() -> None:
    assert lt.RunStatus.FINISHED == "FINISHED"
    assert {s.value for s in lt.RunStatus} == {"RUNNING", "FINISHED", "FAILED", "KILLED", "CRASHED"}


def _module_names() -> list[str]:
    root = Path(labtrack.__file__).resolve().parent
    names = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts or path.name == "__main__.py":
            continue
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", _module_names())
def test_each_modules_all_lists_exactly_its_public_definitions(name: str) -> None:
    """What a module defines without a leading underscore is what it offers the others: its ``__all__``
    names all of it (click commands aside: the command line is their interface), and nothing else."""
    import importlib

    import click

    module = importlib.import_module(name)
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    public = {n for n in defined if not n.startswith("_") and not isinstance(getattr(module, n, None), click.Command)}
    listed = getattr(module, "__all__", None)
    if listed is None:
        assert public == set(), f"{name} defines {sorted(public)} but has no __all__"
        return
    assert [n for n in listed if not hasattr(module, n)] == [], f"{name}.__all__ names what it does not have"
    assert sorted(public - set(listed)) == [], f"{name} defines public names missing from its __all__"
