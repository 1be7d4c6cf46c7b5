"""Environment capture with a real PyTorch (the CPU build installed by .ci/run; no GPU exists here).

CI sets LABTRACK_REQUIRE_TORCH=1, so these tests fail there instead of skipping if torch is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

if not HAVE_TORCH and os.environ.get("LABTRACK_REQUIRE_TORCH") == "1":
    pytest.fail("torch is not installed but LABTRACK_REQUIRE_TORCH=1 (pip install torch==2.13.0)",
                pytrace=False)
pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install torch==2.13.0)")


def _python(code: str, env: dict[str, str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_capture_never_imports_torch_but_records_its_version(python_env: dict[str, str], tmp_path: Path) -> None:
    got = _python(
        "import json, sys, labtrack as lt\n"
        "env = lt.capture_environment()\n"
        "print(json.dumps({'torch': env.snapshot['frameworks']['torch'], 'imported': 'torch' in sys.modules}))",
        python_env, tmp_path,
    )
    assert got["imported"] is False  # capturing must not pay torch's import time
    assert got["torch"]["version"].startswith("2.13.0")
    assert got["torch"]["imported"] is False
    assert "cuda_available" not in got["torch"]


def test_an_imported_torch_is_recorded_with_its_build_and_determinism_flags(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    got = _python(
        "import json, torch, labtrack as lt\n"
        "torch.use_deterministic_algorithms(True)\n"
        "print(json.dumps(lt.capture_environment().snapshot['frameworks']['torch']))",
        python_env, tmp_path,
    )
    assert got["imported"] is True
    assert got["version"].startswith("2.13.0")
    assert got["cuda"] is None  # the CPU build
    assert got["cuda_available"] is False
    assert got["deterministic"]["use_deterministic_algorithms"] is True


def test_a_run_that_imports_torch_midway_records_its_build_at_the_end(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**python_env, "LABTRACK_STORE": str(tmp_path / "store")}
    got = _python(
        "import json, labtrack as lt\n"
        "with lt.start_run('t') as run:\n"
        "    import torch\n"
        "    run.log_metric('x', float(torch.ones(2).sum()))\n"
        "snapshot = lt.get_run(run.id).environment.snapshot\n"
        "print(json.dumps(snapshot['frameworks']['torch']))",
        env, tmp_path,
    )
    assert got["imported"] is True and "cuda_available" in got


def test_seed_everything_seeds_torch(python_env: dict[str, str], tmp_path: Path) -> None:
    got = _python(
        "import json, torch, labtrack as lt\n"
        "info = lt.seed_everything(5)\n"
        "a = torch.rand(3).tolist()\n"
        "lt.seed_everything(5)\n"
        "b = torch.rand(3).tolist()\n"
        "print(json.dumps({'same': a == b, 'seeded': info['seeded']}))",
        python_env, tmp_path,
    )
    assert got["same"] is True
    assert "torch" in got["seeded"]


def test_seed_everything_never_imports_torch_and_seeds_it_when_the_program_does(
        python_env: dict[str, str], tmp_path: Path) -> None:
    """Issue 13, finding 10: seeding took 1.47 s in a scikit-learn script, importing torch it never used."""
    got = _python(
        "import json, sys, labtrack as lt\n"
        "info = lt.seed_everything(5, deterministic=True)\n"
        "before = {'imported': [m for m in ('torch', 'numpy') if m in sys.modules], 'info': json.loads(json.dumps(info))}\n"
        "import torch\n"
        "a = torch.rand(3).tolist()\n"
        "torch.manual_seed(5)\n"
        "b = torch.rand(3).tolist()\n"
        "print(json.dumps({'before': before, 'after': info, 'same': a == b,\n"
        "                  'deterministic': torch.are_deterministic_algorithms_enabled()}))",
        python_env, tmp_path,
    )
    assert got["before"]["imported"] == []
    assert got["before"]["info"]["seeded"] == ["random"]
    assert got["before"]["info"]["on_import"] == ["numpy", "torch"]
    assert got["same"] is True and got["deterministic"] is True  # seeded at its import, before any draw
    assert "torch" in got["after"]["seeded"] and "torch" not in got["after"]["on_import"]
    assert got["after"]["deterministic"]["torch.use_deterministic_algorithms"] is True
