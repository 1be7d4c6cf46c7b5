"""The process: command line, entry script and its hash, working directory, start time, and the
environment variables that change results.

Environment variables are recorded from an allowlist of exact names only — never a prefix such as
``NCCL_*`` or ``TORCH_*``: a wildcard would sooner or later record someone's token, and the names that
matter for reproducibility are few and known. Users add names with ``CaptureOptions.extra_env_vars``.
Every recorded value and argument still passes through :mod:`labtrack.core.redact`.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from labtrack.core.redact import REDACTED, is_secret_name, redact_argv, redact_text
from labtrack.env.files import sha256_file

__all__ = ["ENV_ALLOWLIST", "gather", "process_start_time"]

ENV_ALLOWLIST: tuple[str, ...] = (
    # devices and launch
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    # threads (reduction order, hence floating-point results)
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "MKL_CBWR", "TOKENIZERS_PARALLELISM",
    # determinism and precision
    "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_ENABLE_ONEDNN_OPTS",
    "XLA_FLAGS", "JAX_ENABLE_X64", "JAX_PLATFORMS", "JAX_DEFAULT_MATMUL_PRECISION",
    # collective algorithms (the reduction order of multi-GPU training)
    "NCCL_ALGO", "NCCL_PROTO",
)

_start_time: float | None = None


def _entry(argv0: str) -> dict[str, Any]:
    if argv0 in ("-c", "-m"):
        return {"kind": argv0}
    try:
        st = os.stat(argv0) if argv0 else None
    except (OSError, ValueError):
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return {"kind": "interactive"}
    path = os.path.abspath(argv0)
    return {"path": path, "sha256": sha256_file(path, st), "size": st.st_size}


def process_start_time() -> float | None:
    """When this process started (Unix time); from ``/proc`` on Linux, psutil elsewhere. Cached."""
    global _start_time
    if _start_time is not None:
        return _start_time
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            # field 22 (starttime, in clock ticks since boot) after the parenthesised command name
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        _start_time = btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        try:
            import psutil

            _start_time = psutil.Process().create_time()
        except Exception:
            return None
    return _start_time


_ALLOWED = frozenset(ENV_ALLOWLIST)


def _set_names(wanted: frozenset[str]) -> list[str]:
    """Which of ``wanted`` are set in the environment. This runs for every run: looking up each absent
    name costs an exception, and ``os.environ.keys()`` decodes every key, so on POSIX the names are
    matched against the environment's raw bytes in one set operation."""
    raw = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    if isinstance(raw, dict) and encode is not None and os.name == "posix":
        encoded = _encoded.get(wanted)
        if encoded is None:
            encoded = _encoded[wanted] = {encode(name): name for name in wanted}
        return sorted(encoded[key] for key in raw.keys() & encoded.keys())
    return sorted(wanted.intersection(os.environ.keys()))


_encoded: dict[frozenset[str], dict[Any, str]] = {}


def _env(extra: tuple[str, ...]) -> dict[str, str]:
    wanted = _ALLOWED.union(extra) if extra else _ALLOWED
    out: dict[str, str] = {}
    for name in _set_names(wanted):
        value = os.environ.get(name)
        if value is not None:
            out[name] = REDACTED if is_secret_name(name) else redact_text(value)
    return out


_argv_cache: dict[tuple[str, ...], list[str]] = {}


def _redacted(argv: list[str]) -> list[str]:
    """``redact_argv(argv)``, remembered: argv rarely changes within a process."""
    key = tuple(argv)
    if key not in _argv_cache:
        if len(_argv_cache) > 16:
            _argv_cache.clear()
        _argv_cache[key] = redact_argv(key)
    return list(_argv_cache[key])


def gather(options: Any = None) -> dict[str, Any]:
    """The ``process`` section."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "argv": _redacted(sys.argv),
        # the interpreter's own command line (python -m pkg.train ...), to re-run the same way
        "orig_argv": _redacted(getattr(sys, "orig_argv", sys.argv)),
        "entry": _entry(sys.argv[0] if sys.argv else ""),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "start_time": process_start_time(),
        "cpu_affinity": affinity,
        "env": _env(tuple(getattr(options, "extra_env_vars", ()) or ())),
    }
