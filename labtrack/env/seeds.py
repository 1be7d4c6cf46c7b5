"""Seeding every random-number generator a run is likely to use, and saying what was done.

numpy and torch are seeded when installed even if not yet imported: the user asked for them to be
seeded, and seeding after the first import would be too late for module-level draws. TensorFlow is
seeded only if already imported — importing it takes seconds and grabs the GPU. ``PYTHONHASHSEED`` only
affects child processes (this interpreter's string hashing was fixed at start-up); it is set so that
DataLoader workers and subprocesses hash alike.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from typing import Any

from labtrack.core.errors import InvalidInput

__all__ = ["seed_everything"]

# cuBLAS needs a fixed workspace to be deterministic; it must be set before CUDA initialises.
_CUBLAS_DETERMINISTIC = ":4096:8"


def _available(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, Any]:
    """Seed ``random``, numpy and torch (when present) and set ``PYTHONHASHSEED`` for children.

    With ``deterministic=True`` also switch the frameworks to deterministic algorithms (torch:
    ``use_deterministic_algorithms``, cuDNN deterministic and no benchmark, ``CUBLAS_WORKSPACE_CONFIG``;
    TensorFlow: op determinism). Returns ``{"seed", "seeded": [...], "deterministic": {flag: value}}``,
    which labtrack records on the active run.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be an integer in [0, 2**32), got {seed!r}", field="seed")
    seeded: list[str] = []
    flags: dict[str, Any] = {}

    random.seed(seed)
    seeded.append("random")
    os.environ["PYTHONHASHSEED"] = str(seed)

    if _available("numpy"):
        import numpy

        numpy.random.seed(seed)
        seeded.append("numpy")

    if deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_DETERMINISTIC
    if deterministic:
        flags["CUBLAS_WORKSPACE_CONFIG"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]

    if _available("torch"):
        import torch

        torch.manual_seed(seed)  # also seeds every CUDA device, lazily
        seeded.append("torch")
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            flags.update({"torch.use_deterministic_algorithms": True,
                          "torch.backends.cudnn.deterministic": True,
                          "torch.backends.cudnn.benchmark": False})

    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.random.set_seed(seed)
        seeded.append("tensorflow")
        if deterministic:
            tf.config.experimental.enable_op_determinism()
            flags["tensorflow.op_determinism"] = True

    return {"seed": seed, "seeded": seeded, "deterministic": flags}
