"""Installed distributions and the Python interpreter, read in-process through ``importlib.metadata``.

Never ``pip freeze``: a pip subprocess costs about a second. Even ``Distribution.metadata`` is too slow
here (it parses the whole METADATA file, long description included, with the email package: ~0.5 ms a
distribution), so only the ``Name``/``Version`` header lines are read. Provenance comes from PEP 610's
``direct_url.json``: absent means an index install; otherwise an editable or plain local directory, an
archive URL, or a VCS checkout with its commit.

The result is cached per process and reused while no ``sys.path`` directory changed (installing or
removing a distribution creates or deletes a ``*.dist-info`` entry, which changes the directory's
mtime), so a repeat capture costs a handful of ``stat`` calls.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import threading
from typing import Any

from labtrack.core.redact import strip_url_credentials

__all__ = ["gather", "imported_distributions", "imported_of", "installed_versions", "normalize_name", "python_info"]

_cache_key: tuple[Any, ...] | None = None
_cache_value: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def normalize_name(name: str) -> str:
    """The PEP 503 normalized form (``Scikit_Learn`` → ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _header(text: str) -> tuple[str | None, str | None]:
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            break
    return name, version


def _provenance(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {"source": "index"}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"source": "unknown"}
    url = strip_url_credentials(str(data.get("url", "")))
    vcs = data.get("vcs_info")
    if isinstance(vcs, dict):
        out: dict[str, Any] = {"source": "vcs", "url": url, "vcs": vcs.get("vcs"), "commit": vcs.get("commit_id")}
        if vcs.get("requested_revision"):
            out["requested_revision"] = vcs["requested_revision"]
        return out
    dir_info = data.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return {"source": "editable", "url": url}
    return {"source": "local" if url.startswith("file:") else "url", "url": url}


def _path_key() -> tuple[Any, ...]:
    key: list[Any] = []
    for entry in sys.path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            key.append((entry, None))
    return tuple(key)


def _read(path: str, limit: int = -1) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def _metadata_folders() -> list[str]:
    """Every ``*.dist-info`` / ``*.egg-info`` folder on sys.path, in sys.path order.

    This is how ``importlib.metadata`` finds distributions on the file system, done directly: importing
    importlib.metadata (with email, zipfile, csv ...) costs more than the whole scan. Distributions inside
    zip files or eggs are not seen.
    """
    folders = []
    for entry in sys.path:
        directory = entry or "."
        try:
            with os.scandir(directory) as it:
                names = sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info")) and e.is_dir())
        except OSError:
            continue
        folders += [os.path.join(directory, name) for name in names]
    return folders


def _scan() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for folder in _metadata_folders():  # in sys.path order: the first one found is the one imported
        # Name and Version lead the file; a long description follows, which we do not need to read.
        head = _read(os.path.join(folder, "METADATA"), 4096) or _read(os.path.join(folder, "PKG-INFO"), 4096) or ""
        name, version = _header(head)
        if not name:
            continue
        key = normalize_name(name)
        if key in found:
            continue
        found[key] = {"version": version, **_provenance(_read(os.path.join(folder, "direct_url.json")))}
    return dict(sorted(found.items()))


def installed_versions() -> dict[str, dict[str, Any]]:
    """``{normalized name: {"version", "source", ...}}`` for every importable distribution (cached until
    a folder on sys.path changes: an install changes its mtime)."""
    global _cache_key, _cache_value
    key = _path_key()
    with _lock:
        if key != _cache_key:
            _cache_value = _scan()
            _cache_key = key
        return _cache_value


_owners: tuple[tuple[Any, ...], dict[str, list[str]]] | None = None


def _module_owners() -> dict[str, list[str]]:
    """Top-level module name -> the distributions that install it (``importlib.metadata``), cached while no
    ``sys.path`` directory changes: ~50 ms once per process, at the end of its first run."""
    global _owners
    key = _path_key()
    if _owners is None or _owners[0] != key:
        from importlib.metadata import packages_distributions

        _owners = (key, {module: [normalize_name(d) for d in dists]
                         for module, dists in packages_distributions().items()})
    return _owners[1]


def imported_distributions(distributions: dict[str, dict[str, Any]]) -> list[str]:
    """Which of ``distributions`` (as ``gather`` lists them) this process has imported: its top-level
    modules that are not the standard library's, by name (``numpy`` is numpy) or, for a module named
    unlike its distribution (``sklearn``, ``yaml``), through ``importlib.metadata``'s map — read only
    then, once per process — and modules loaded from an editable or local install's directory. Nothing is
    imported to find out."""
    global _imported
    key = (len(sys.modules), len(distributions))
    if _imported is not None and _imported[0] == key:  # nothing imported since the last run ended
        return list(_imported[1])
    local = [(name, str(info.get("url") or "").removeprefix("file://").rstrip("/") + "/")
             for name, info in distributions.items()
             if info.get("source") in ("local", "editable") and info.get("url")]
    found: set[str] = set()
    unresolved = []
    for module_name, module in list(sys.modules.items()):
        if ("." in module_name or module is None or module_name.startswith("_")
                or module_name in sys.stdlib_module_names or module_name in sys.builtin_module_names):
            continue
        path = getattr(module, "__file__", None)
        installed = isinstance(path, str) and ("site-packages" in path or "dist-packages" in path)
        owners = [] if installed or not isinstance(path, str) else [n for n, root in local if path.startswith(root)]
        if owners:
            found.update(owners)
        elif normalize_name(module_name) in distributions:
            found.add(normalize_name(module_name))
        elif installed:  # (a module from no file, such as cython_runtime, belongs to no distribution)
            unresolved.append(module_name)
    if unresolved:
        by_module = _module_owners()
        for module_name in unresolved:
            found.update(by_module.get(module_name, ()))
    result = sorted(name for name in found if name in distributions)
    _imported = (key, result)
    return list(result)


_imported: tuple[tuple[Any, ...], list[str]] | None = None


def imported_of(snapshot: dict[str, Any]) -> list[str] | None:
    """``imported_distributions`` of the distributions an environment snapshot lists; None when it lists none
    or they cannot be told (information only: never an error)."""
    packages = snapshot.get("packages")
    distributions = packages.get("distributions") if isinstance(packages, dict) else None
    if not isinstance(distributions, dict):
        return None
    try:
        return imported_distributions(distributions)
    except Exception:
        return None


def python_info() -> dict[str, Any]:
    """The interpreter: version, implementation, executable, and the virtualenv / conda env it runs in."""
    in_venv = sys.prefix != sys.base_prefix
    conda_prefix = os.environ.get("CONDA_PREFIX")
    is_conda = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
    conda_env = None
    if is_conda:
        conda_env = os.environ.get("CONDA_DEFAULT_ENV") if conda_prefix == sys.prefix else None
        conda_env = conda_env or os.path.basename(sys.prefix.rstrip(os.sep)) or "base"
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "venv": os.path.basename(sys.prefix.rstrip(os.sep)) if in_venv else None,
        "conda_env": conda_env,
    }


def gather(options: object = None) -> dict[str, Any]:
    """The ``packages`` section."""
    dists = installed_versions()
    return {"python": python_info(), "distributions": {k: dict(v) for k, v in dists.items()}}
