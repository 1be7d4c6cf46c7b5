"""The training frameworks of the integration tests, real and on the CPU.

``need("lightning")`` at the top of a test module imports the framework or skips the module with the
install command — unless LABTRACK_REQUIRE_FRAMEWORKS=1 (set by CI, which installs them all), where a missing
framework fails instead: CI must run every integration test.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRE_FRAMEWORKS = os.environ.get("LABTRACK_REQUIRE_FRAMEWORKS") == "1"

# module -> what installs it here (the PyTorch ones beside the CPU build of torch, as .ci/run does)
INSTALL = {
    "torch": "pip install torch==2.13.0",
    "lightning": "pip install torch==2.13.0 'labtrack[lightning]'",
    "transformers": "pip install torch==2.13.0 'labtrack[transformers]'",
    "accelerate": "pip install torch==2.13.0 'labtrack[transformers]'",
    "keras": "pip install torch==2.13.0 'labtrack[keras]'",
    "sklearn": "pip install 'labtrack[sklearn]'",
    "skops": "pip install 'labtrack[sklearn]'",
    "xgboost": "pip install 'labtrack[xgboost]'",
    "lightgbm": "pip install 'labtrack[lightgbm]'",
    "optuna": "pip install 'labtrack[optuna]'",
    "mlflow": "pip install 'labtrack[mlflow]'",
    "distributed": "pip install 'labtrack[dask]'",
    "ipywidgets": "pip install 'labtrack[notebook]'",
    "ipykernel": "pip install ipykernel",
}


def need(module: str) -> ModuleType:
    """Import ``module`` for the calling test module, or skip it (fail under LABTRACK_REQUIRE_FRAMEWORKS=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{module} is not installed ({INSTALL.get(module, 'pip install ' + module)}): {exc}"
        if REQUIRE_FRAMEWORKS:
            pytest.fail(f"{reason}, but LABTRACK_REQUIRE_FRAMEWORKS=1: CI must run this test", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
        raise
