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

__all__ = ["gather", "installed_versions", "normalize_name", "python_info"]

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


def _head(dist: Any) -> str:
    """The start of a distribution's METADATA, where Name and Version stand: long descriptions follow
    them, and reading whole files for ~150 distributions is most of a first capture's time."""
    path = getattr(dist, "_path", None)  # a PathDistribution's folder; others are read whole
    if path is not None:
        for filename in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(path, filename), "rb") as f:
                    text = f.read(4096).decode("utf-8", errors="replace")
            except OSError:
                continue
            if "\nVersion:" in text or text.startswith("Version:"):
                return text
    return dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""


def _scan() -> dict[str, dict[str, Any]]:
    from importlib.metadata import distributions

    found: dict[str, dict[str, Any]] = {}
    for dist in distributions():  # in sys.path order: the first one found is the one imported
        try:
            name, version = _header(_head(dist))
        except OSError:
            continue
        if not name:
            continue
        key = normalize_name(name)
        if key in found:
            continue
        found[key] = {"version": version, **_provenance(dist.read_text("direct_url.json"))}
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
