"""Seeding every random-number generator a run is likely to use, and saying what was done.

Frameworks already imported (numpy, torch, TensorFlow) are seeded at once. One not imported yet is never
imported here — importing torch takes a second or more, TensorFlow grabs the GPU, and a scikit-learn
script has no use for either: an import hook seeds it the moment the program imports it, before any of
its code can draw a number. ``PYTHONHASHSEED`` only affects child processes (this interpreter's string
hashing was fixed at start-up); it is set so that DataLoader workers and subprocesses hash alike.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import random
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from labtrack.core.errors import InvalidInput

__all__ = ["seed_everything"]

# cuBLAS needs a fixed workspace to be deterministic; it must be set before CUDA initialises.
_CUBLAS_DETERMINISTIC = ":4096:8"


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Runs an action on a module right after its first import finishes (see the module docstring)."""

    def __init__(self) -> None:
        self.pending: dict[str, Callable[[ModuleType], None]] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        action = self.pending.get(name)
        if action is None:
            return None
        for finder in sys.meta_path:  # the spec the import would get without us
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            if self.pending.pop(name, None) is not None:
                action(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_HOOK = _SeedOnImport()


def _seed_numpy(record: dict[str, Any], seed: int) -> Callable[[ModuleType], None]:
    def seed_it(numpy: ModuleType) -> None:
        numpy.random.seed(seed)
        _seeded(record, "numpy")

    return seed_it


def _seed_torch(record: dict[str, Any], seed: int, deterministic: bool) -> Callable[[ModuleType], None]:
    def seed_it(torch: ModuleType) -> None:
        torch.manual_seed(seed)  # also seeds every CUDA device, lazily
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            record["deterministic"].update({"torch.use_deterministic_algorithms": True,
                                            "torch.backends.cudnn.deterministic": True,
                                            "torch.backends.cudnn.benchmark": False})
        _seeded(record, "torch")

    return seed_it


def _seed_tensorflow(record: dict[str, Any], seed: int, deterministic: bool) -> Callable[[ModuleType], None]:
    def seed_it(tf: ModuleType) -> None:
        tf.random.set_seed(seed)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
            record["deterministic"]["tensorflow.op_determinism"] = True
        _seeded(record, "tensorflow")

    return seed_it


def _seeded(record: dict[str, Any], name: str) -> None:
    record["seeded"].append(name)
    if name in record["on_import"]:
        record["on_import"].remove(name)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, Any]:
    """Seed ``random``, numpy, torch and TensorFlow (those imported now; the others when the program
    imports them) and set ``PYTHONHASHSEED`` for children.

    With ``deterministic=True`` also switch the frameworks to deterministic algorithms (torch:
    ``use_deterministic_algorithms``, cuDNN deterministic and no benchmark, ``CUBLAS_WORKSPACE_CONFIG``;
    TensorFlow: op determinism). Returns ``{"seed", "seeded": [...], "on_import": [...], "deterministic":
    {flag: value}}``, which labtrack records on the active run; a framework seeded on its import later
    moves from ``on_import`` to ``seeded`` in that same dict.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be an integer in [0, 2**32), got {seed!r}", field="seed")
    record: dict[str, Any] = {"seed": seed, "seeded": [], "on_import": [], "deterministic": {}}
    random.seed(seed)
    record["seeded"].append("random")
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_DETERMINISTIC)
        record["deterministic"]["CUBLAS_WORKSPACE_CONFIG"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
    actions = {"numpy": _seed_numpy(record, seed), "torch": _seed_torch(record, seed, deterministic),
               "tensorflow": _seed_tensorflow(record, seed, deterministic)}
    for name, action in actions.items():
        module = sys.modules.get(name)
        if module is not None:
            _HOOK.pending.pop(name, None)
            action(module)
        elif _installed(name):
            _HOOK.pending[name] = action  # a later seed_everything replaces an earlier one's
            record["on_import"].append(name)
    if _HOOK.pending and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
    return record
