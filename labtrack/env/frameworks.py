"""ML frameworks: the installed version always; runtime build facts only once the run imported them.

Never imports a framework: importing torch or tensorflow takes seconds and may touch the GPU. When a
framework is already in ``sys.modules`` its build facts are read from it (torch's CUDA build, the loaded
cuDNN, determinism flags). Even then nothing is done that initialises a device as a side effect:
torch device names are read only once torch has initialised CUDA itself (initialising it earlier makes
later ``fork``-based DataLoader workers fail), and jax devices only once jax created its backends
(creating them preallocates most of the GPU memory). :func:`labtrack.env.refresh_frameworks` calls this
again at run end, when the run has imported what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from labtrack.env.packages import installed_versions

__all__ = ["FRAMEWORKS", "gather", "runtime_facts"]

# distribution name -> import name
FRAMEWORKS: dict[str, str] = {
    "torch": "torch", "torchvision": "torchvision", "torchaudio": "torchaudio", "triton": "triton",
    "tensorflow": "tensorflow", "tensorflow-cpu": "tensorflow", "keras": "keras",
    "jax": "jax", "jaxlib": "jaxlib", "flax": "flax",
    "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "scikit-learn": "sklearn",
    "xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost",
    "transformers": "transformers", "accelerate": "accelerate", "datasets": "datasets",
    "onnxruntime": "onnxruntime", "onnxruntime-gpu": "onnxruntime", "cupy": "cupy",
    "cupy-cuda12x": "cupy", "cupy-cuda11x": "cupy",
}


def _cudnn_text(v: Any) -> str | None:
    """cuDNN encodes 8.9.2 as 8902 and 9.1.0 as 90100."""
    if not isinstance(v, int) or v <= 0:
        return None
    if v >= 90000:
        return f"{v // 10000}.{(v % 10000) // 100}.{v % 100}"
    return f"{v // 1000}.{(v % 1000) // 100}.{v % 100}"


def _torch(mod: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": str(mod.__version__), "cuda": mod.version.cuda,
                           "hip": getattr(mod.version, "hip", None)}
    cudnn = mod.backends.cudnn
    out["cudnn"] = _cudnn_text(cudnn.version()) if cudnn.is_available() else None
    out["cuda_available"] = bool(mod.cuda.is_available())
    try:  # the GPU architectures this build has kernels for (sm_80 ...); read without initialising CUDA
        out["arch_list"] = list(mod.cuda.get_arch_list()) if out["cuda"] else []
    except Exception:
        out["arch_list"] = None
    if mod.cuda.is_initialized():
        out["devices"] = [mod.cuda.get_device_name(i) for i in range(mod.cuda.device_count())]
    out["deterministic"] = {
        "use_deterministic_algorithms": bool(mod.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cuda_matmul_allow_tf32": bool(mod.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
    }
    mps = getattr(mod.backends, "mps", None)
    if mps is not None and mps.is_available():
        out["mps_available"] = True
    return out


def _tensorflow(mod: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": str(mod.__version__)}
    info = mod.sysconfig.get_build_info()
    out["cuda"] = info.get("cuda_version")
    out["cudnn"] = info.get("cudnn_version")
    out["devices"] = [d.name for d in mod.config.list_physical_devices("GPU")]
    is_det = getattr(mod.config.experimental, "is_op_determinism_enabled", None)
    if is_det is not None:
        out["deterministic"] = {"op_determinism": bool(is_det())}
    return out


def _jax(mod: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": str(mod.__version__)}
    out["deterministic"] = {"enable_x64": bool(mod.config.read("jax_enable_x64"))}
    bridge = sys.modules.get("jax._src.xla_bridge")
    initialized = getattr(bridge, "backends_are_initialized", None)
    if initialized is not None and initialized():
        out["devices"] = [str(d.device_kind) for d in mod.devices()]
    return out


def _numpy(mod: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"version": str(mod.__version__)}
    config = getattr(getattr(mod, "__config__", None), "CONFIG", None)  # numpy >= 1.26
    if isinstance(config, dict):
        blas = config.get("Build Dependencies", {}).get("blas", {})
        if blas.get("name"):
            out["blas"] = f"{blas['name']} {blas.get('version', '')}".strip()
    return out


def _xgboost(mod: Any) -> dict[str, Any]:
    info = mod.build_info()
    return {"version": str(mod.__version__), "cuda_build": bool(info.get("USE_CUDA"))}


_RUNTIME: dict[str, Callable[[Any], dict[str, Any]]] = {
    "torch": _torch, "tensorflow": _tensorflow, "jax": _jax, "numpy": _numpy, "xgboost": _xgboost,
}


def runtime_facts(import_name: str, module: Any) -> dict[str, Any]:
    """Build facts of an imported framework module; ``{"error": ...}`` if reading them failed."""
    reader = _RUNTIME.get(import_name)
    try:
        if reader is None:
            version = getattr(module, "__version__", None)
            return {"version": str(version)} if version is not None else {}
        return reader(module)
    except Exception as e:  # a framework's odd build must not lose the rest of the section
        return {"error": f"{type(e).__name__}: {e}"}


def gather(options: object = None) -> dict[str, Any]:
    """The ``frameworks`` section: one entry per installed framework."""
    dists = installed_versions()
    section: dict[str, Any] = {}
    for dist_name, import_name in FRAMEWORKS.items():
        info = dists.get(dist_name)
        if info is None:
            continue
        entry: dict[str, Any] = {"version": info.get("version"), "module": import_name}
        module = sys.modules.get(import_name)
        entry["imported"] = module is not None
        if module is not None:
            facts = runtime_facts(import_name, module)
            runtime_version = facts.pop("version", None)
            if runtime_version and runtime_version != entry["version"]:
                entry["runtime_version"] = runtime_version  # imported from elsewhere than installed
            entry.update(facts)
        section[dist_name] = entry
    return section
