"""Operating system, distribution, kernel, libc, hostname, container and batch-scheduler facts.

The OS facts are cached per process; the scheduler ids are read from the environment on every call
(cheap, and a long-lived process such as a notebook kernel may see them change).
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any

__all__ = ["detect_container", "gather", "slurm_ids"]

_cache: dict[str, Any] | None = None
_lock = threading.Lock()

_SLURM_VARS = {
    "job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
    "procid": "SLURM_PROCID", "localid": "SLURM_LOCALID", "nodeid": "SLURM_NODEID",
    "ntasks": "SLURM_NTASKS", "job_name": "SLURM_JOB_NAME",
}


def _libc() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36", without reading the executable
    except (ValueError, OSError, AttributeError):
        pass
    lib, version = platform.libc_ver()  # scans the interpreter binary: slow, so only as a fallback
    return f"{lib} {version}" if lib else None


def _distro() -> dict[str, Any] | None:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    return {k.lower(): release[k] for k in ("ID", "NAME", "VERSION_ID", "PRETTY_NAME") if k in release}


def detect_container(environ: dict[str, str] | os._Environ[str] = os.environ,
                     root: str = "/") -> dict[str, Any]:
    """``{"runtime": "docker"|"podman"|"containerd"|"lxc"|"apptainer"|None, "kubernetes": bool}``.

    Signals, most specific first: Docker's ``/.dockerenv``, Podman's ``/run/.containerenv``,
    Apptainer/Singularity's environment, then the cgroup path of PID 1.
    """
    runtime = None
    if os.path.exists(os.path.join(root, ".dockerenv")):
        runtime = "docker"
    elif os.path.exists(os.path.join(root, "run/.containerenv")):
        runtime = "podman"
    elif environ.get("APPTAINER_CONTAINER") or environ.get("SINGULARITY_CONTAINER"):
        runtime = "apptainer"
    else:
        try:
            with open(os.path.join(root, "proc/1/cgroup"), encoding="utf-8", errors="replace") as f:
                cgroup = f.read()
        except OSError:
            cgroup = ""
        for marker, name in (("docker", "docker"), ("libpod", "podman"), ("containerd", "containerd"),
                             ("kubepods", "containerd"), ("lxc", "lxc")):
            if marker in cgroup:
                runtime = name
                break
    return {"runtime": runtime, "kubernetes": bool(environ.get("KUBERNETES_SERVICE_HOST"))}


def slurm_ids(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str] | None:
    """The Slurm job/array/task ids of this process, or None outside Slurm."""
    if "SLURM_JOB_ID" not in environ:
        return None
    return {key: environ[var] for key, var in _SLURM_VARS.items() if var in environ}


def _static() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "os": uname.system,
        "os_version": uname.version,
        "distro": _distro(),
        "kernel": uname.release,
        "libc": _libc(),
        "container": detect_container(),
    }


def gather(options: Any = None) -> dict[str, Any]:
    """The ``system`` section; ``options.record_hostname = False`` leaves the hostname out."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _static()
        section = {**_cache, "container": dict(_cache["container"])}
    if getattr(options, "record_hostname", True):
        section["hostname"] = platform.node()
    slurm = slurm_ids()
    section["scheduler"] = {"slurm": slurm} if slurm else None
    return section
