"""Accelerators: NVIDIA GPUs through NVML (``pynvml``, package nvidia-ml-py), plus cheap ROCm and Apple MPS hints.

NVML answers from the driver without creating a CUDA context, so capturing never grabs GPU memory and
never makes a later ``fork`` unsafe. ``pynvml`` is imported only when an NVIDIA kernel driver is
present (``/proc/driver/nvidia`` on Linux, also mounted into GPU containers): importing it costs
~20 ms, which the no-GPU laptops and CI runners that are most of our captures should not pay.
"No GPU" is recorded with the reason: no driver, no permission, or no device.
Cached per process (the devices and driver cannot change under a running interpreter).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import threading
from typing import Any

__all__ = ["gather", "gather_nvml", "nvml_binding"]

# NVML error codes (stable across driver versions; mirrored here so a fake NVML need not define them).
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12

_cache: dict[str, Any] | None = None
_lock = threading.Lock()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_reason(exc: BaseException) -> str:
    code = getattr(exc, "value", None)
    if code == _NVML_ERROR_LIBRARY_NOT_FOUND:
        return "no NVIDIA driver: libnvidia-ml not found"
    if code == _NVML_ERROR_DRIVER_NOT_LOADED:
        return "NVIDIA driver not loaded"
    if code == _NVML_ERROR_NO_PERMISSION:
        return "no permission to query the NVIDIA driver"
    return f"NVML error: {exc}"


def _cuda_version(code: Any) -> str | None:
    if not isinstance(code, int) or code <= 0:
        return None
    return f"{code // 1000}.{(code % 1000) // 10}"


def gather_nvml(nvml: Any) -> dict[str, Any]:
    """NVIDIA devices through an NVML binding (``pynvml`` or a test double with the same functions).

    A device property the GPU does not support (MIG on consumer cards) is recorded as None; an error
    on the driver as a whole becomes ``count: 0`` with the reason.
    """
    nvml_error: type[BaseException] = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except nvml_error as e:
        return {"count": 0, "devices": [], "reason": _nvml_reason(e)}
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda = _cuda_version(nvml.nvmlSystemGetCudaDriverVersion())
        except nvml_error:
            cuda = None
        devices = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)

            def prop(fn: Any, *, handle: Any = handle) -> Any:
                try:
                    return fn(handle)
                except nvml_error as e:
                    if getattr(e, "value", None) == _NVML_ERROR_NOT_SUPPORTED:
                        return None
                    raise

            cc = prop(nvml.nvmlDeviceGetCudaComputeCapability)
            mig = prop(nvml.nvmlDeviceGetMigMode)
            memory = prop(nvml.nvmlDeviceGetMemoryInfo)
            devices.append({
                "index": index,
                "name": _text(prop(nvml.nvmlDeviceGetName)),
                "uuid": _text(prop(nvml.nvmlDeviceGetUUID)),
                "memory_total": int(memory.total) if memory is not None else None,
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "mig_mode": None if mig is None else ("enabled" if mig[0] else "disabled"),
            })
        section: dict[str, Any] = {"count": len(devices), "devices": devices, "driver_version": driver,
                                   "cuda_driver_version": cuda}
        if not devices:
            section["reason"] = f"no NVIDIA device found (driver {driver})"
        return section
    except nvml_error as e:
        return {"count": 0, "devices": [], "reason": _nvml_reason(e)}
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml_error:
            pass


def _nvidia_driver_absent() -> bool:
    """True when we can tell cheaply that no NVIDIA kernel driver is loaded (Linux only)."""
    return sys.platform == "linux" and not os.path.exists("/proc/driver/nvidia") \
        and not os.path.exists("/dev/nvidiactl")


def nvml_binding() -> Any | None:
    """``pynvml`` when an NVIDIA driver may be present and the binding is installed, else None (cheaply)."""
    if _nvidia_driver_absent():
        return None
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _rocm() -> dict[str, Any] | None:
    version = None
    try:
        with open("/opt/rocm/.info/version", encoding="utf-8") as f:
            version = f.read().strip() or None
    except OSError:
        pass
    smi = shutil.which("rocm-smi")
    if version is None and smi is None and not os.path.exists("/dev/kfd"):
        return None
    return {"version": version, "smi": smi is not None, "kfd": os.path.exists("/dev/kfd")}


def _gather_uncached() -> dict[str, Any]:
    if _nvidia_driver_absent():
        section: dict[str, Any] = {"count": 0, "devices": [],
                                   "reason": "no NVIDIA driver: kernel module not loaded"}
    else:
        try:
            import pynvml
        except ImportError:
            section = {"count": 0, "devices": [], "reason": "nvidia-ml-py (pynvml) is not installed"}
        else:
            section = gather_nvml(pynvml)
    section["rocm"] = _rocm()
    # Metal (MPS) exists on every Apple-silicon Mac; whether a framework uses it is the framework's fact.
    section["mps"] = sys.platform == "darwin" and platform.machine() == "arm64"
    return section


def gather(options: object = None, *, nvml: Any = None) -> dict[str, Any]:
    """The ``gpu`` section. ``nvml`` replaces the real ``pynvml`` (tests; no caching then)."""
    global _cache
    if nvml is not None:
        section = gather_nvml(nvml)
        section["rocm"] = None
        section["mps"] = False
        return section
    with _lock:
        if _cache is None:
            _cache = _gather_uncached()
        cached = _cache
    return {**cached, "devices": [dict(d) for d in cached["devices"]]}
