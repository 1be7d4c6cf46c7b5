"""CPU and memory facts, read from ``/proc/cpuinfo`` and ``sysconf`` (never py-cpuinfo: it spawns a process).

Cached for the life of the process: hardware does not change under a running interpreter.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from typing import Any

__all__ = ["RELEVANT_FLAGS", "gather"]

# Instruction-set flags that change which kernels numerical libraries pick (and so, results and speed).
RELEVANT_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "neon", "sve", "sve2",
)


def _parse_cpuinfo(text: str) -> dict[str, Any]:
    first: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    logical = 0
    block: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if block:
                if "processor" in block:
                    logical += 1
                if "core id" in block:
                    cores.add((block.get("physical id", "0"), block["core id"]))
                if not first:
                    first = block
                block = {}
            continue
        key, _, value = line.partition(":")
        block[key.strip()] = value.strip()
    flags = set((first.get("flags") or first.get("Features") or "").split())
    if "asimd" in flags:  # aarch64 calls NEON "asimd"
        flags.add("neon")
    model = first.get("model name") or first.get("Model") or first.get("cpu model")
    vendor = first.get("vendor_id") or (f"arm implementer {first['CPU implementer']}"
                                         if "CPU implementer" in first else None)
    return {
        "vendor": vendor,
        "model": model,
        "physical_cores": len(cores) or None,
        "logical_cores_cpuinfo": logical or None,
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
    }


def _memory_total() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    import psutil  # macOS / Windows: no SC_PHYS_PAGES

    return int(psutil.virtual_memory().total)


@lru_cache(maxsize=1)
def _gather_cached() -> dict[str, Any]:
    info: dict[str, Any] = {"vendor": None, "model": None, "physical_cores": None, "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = _parse_cpuinfo(f.read())
    except OSError:
        pass
    logical = os.cpu_count() or info.pop("logical_cores_cpuinfo", None)
    info.pop("logical_cores_cpuinfo", None)
    if info["physical_cores"] is None and sys.platform != "linux":
        try:
            import psutil

            info["physical_cores"] = psutil.cpu_count(logical=False)
        except ImportError:
            pass
    machine = platform.machine()
    if machine in ("arm64", "aarch64") and "neon" not in info["flags"]:
        info["flags"] = [*info["flags"], "neon"]  # NEON is mandatory on 64-bit ARM
    return {
        "arch": machine,
        "vendor": info["vendor"],
        "model": info["model"],
        "physical_cores": info["physical_cores"],
        "logical_cores": logical,
        "flags": info["flags"],
        "memory_total": _memory_total(),
    }


def gather(options: object = None) -> dict[str, Any]:
    """The ``hardware`` section (a fresh copy of the per-process cached facts)."""
    section = dict(_gather_cached())
    section["flags"] = list(section["flags"])
    return section
