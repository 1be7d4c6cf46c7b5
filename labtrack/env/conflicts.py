"""Dependency conflicts among the installed distributions, found the way ``pip check`` finds them.

Every installed distribution's ``Requires-Dist`` entries are parsed with ``packaging``; markers are
evaluated for this interpreter and platform, with ``extra`` set to each extra that some installed
distribution actually asks for (``B[x]``) — so conflicts hiding in requested extras are found too,
which ``pip check`` misses. A requirement fails when the distribution is missing or its version is
outside the specifier (pre-releases allowed, as installed versions are what they are).

Reading and parsing all metadata takes tens of milliseconds, so results are cached per set of
installed distributions: in the process, and on disk under the user's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["find_conflicts", "find_conflicts_cached", "start_background", "wait_background"]

_ALGORITHM = "2"  # bump when find_conflicts changes: cached results of older versions are ignored
_memo: dict[str, list[dict[str, Any]]] = {}
_lock = threading.Lock()
_background: threading.Thread | None = None
_last_signature: tuple[object, str] | None = None


def _normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, Any]:
    """normalized name -> Distribution (the first on sys.path wins, as for imports)."""
    from importlib.metadata import distributions

    found: dict[str, Any] = {}
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and _normalize(name) not in found:
            found[_normalize(name)] = dist
    return found


def find_conflicts() -> list[dict[str, Any]]:
    """Every unmet requirement: ``[{"package", "version", "requires", "installed", "message"}]``.

    ``installed`` is None when the required distribution is missing. Messages read like pip's:
    "pandas 1.4.0 requires numpy<1.25.0,>=1.18.5, but numpy 1.25.2 is installed".
    """
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    installed = _installed()
    parsed: dict[str, list[Requirement]] = {}
    for key, dist in installed.items():
        requirements = []
        for text in dist.requires or []:
            try:
                requirements.append(Requirement(text))
            except InvalidRequirement:
                continue
        parsed[key] = requirements
    base_env = default_environment()

    def active(requirement: Requirement, extras: set[str]) -> bool:
        return requirement.marker is None or any(
            requirement.marker.evaluate({**base_env, "extra": extra})  # type: ignore[dict-item]
            for extra in extras
        )

    # Extras asked for by requirements that are themselves in force, to a fixed point (pandas[all]
    # pulls in pandas[test] only if someone asks for pandas[all]).
    wanted: dict[str, set[str]] = {key: {""} for key in installed}
    changed = True
    while changed:
        changed = False
        for key in installed:
            for requirement in parsed[key]:
                target = _normalize(requirement.name)
                if requirement.extras and target in wanted and active(requirement, wanted[key]):
                    new = {_normalize(e) for e in requirement.extras} - wanted[target]
                    if new:
                        wanted[target] |= new
                        changed = True
    problems: list[dict[str, Any]] = []
    for key, dist in sorted(installed.items()):
        version = dist.version
        seen: set[str] = set()
        for requirement in parsed[key]:
            if not active(requirement, wanted[key]):
                continue
            target = _normalize(requirement.name)
            if str(requirement) in seen:
                continue
            seen.add(str(requirement))
            spec = str(requirement.specifier) or ""
            required = f"{requirement.name}{spec}"
            if target not in installed:
                problems.append({
                    "package": dist.metadata["Name"], "version": version, "requires": required, "installed": None,
                    "message": f"{dist.metadata['Name']} {version} requires {required}, which is not installed",
                })
                continue
            have = installed[target].version
            try:
                ok = requirement.specifier.contains(Version(have), prereleases=True)
            except InvalidVersion:
                ok = True  # an unparsable installed version cannot be judged
            if not ok:
                problems.append({
                    "package": dist.metadata["Name"], "version": version, "requires": required, "installed": have,
                    "message": f"{dist.metadata['Name']} {version} requires {required}, "
                               f"but {installed[target].metadata['Name']} {have} is installed",
                })
    return problems


def _signature() -> str:
    """A digest of the installed set: every distribution's name and version, and the interpreter."""
    import platform
    import sys

    from labtrack.env.packages import installed_versions

    global _last_signature
    dists = installed_versions()  # the same object while nothing was installed: a cheap check
    if _last_signature is not None and _last_signature[0] is dists:
        return _last_signature[1]
    items = sorted(f"{name}=={info.get('version')}" for name, info in dists.items())
    text = "\n".join([_ALGORITHM, sys.version, platform.platform(), *items])
    signature = hashlib.sha256(text.encode()).hexdigest()
    _last_signature = (dists, signature)
    return signature


def _cache_file(signature: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "labtrack", "conflicts", f"{signature[:32]}.json")


def find_conflicts_cached(*, compute: bool = True) -> list[dict[str, Any]] | None:
    """``find_conflicts()`` for the current installed set, from the process or disk cache when possible.

    With ``compute=False`` returns None instead of computing (for the hot path of ``start_run``).
    """
    signature = _signature()
    with _lock:
        if signature in _memo:
            return _memo[signature]
    path = _cache_file(signature)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(result, list):
            with _lock:
                _memo[signature] = result
            return result
    except (OSError, ValueError):
        pass
    if not compute:
        return None
    result = find_conflicts()
    with _lock:
        _memo[signature] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs time
    return result


def wait_background(timeout: float) -> None:
    """Wait up to ``timeout`` seconds for a background computation started by ``start_background``."""
    thread = _background
    if thread is not None:
        thread.join(timeout)


def start_background() -> None:
    """Compute the conflicts in a daemon thread, so a run can record them without waiting."""
    global _background
    with _lock:
        if _background is not None and _background.is_alive():
            return

        def work() -> None:
            try:
                find_conflicts_cached()
            except Exception:  # recorded as unknown; never disturbs the run
                pass

        _background = threading.Thread(target=work, name="labtrack-conflicts", daemon=True)
        _background.start()
