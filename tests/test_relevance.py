"""Package differences are judged by what the run imported (issue 13, finding 6): a run records the
distributions it loaded; `check` and `diff` rank a change in one of them first, and say that build tools
and packages the run never imported cannot have changed its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from labtrack.core.checks import check_reproducibility
from labtrack.core.diff import RunView, diff_runs

SCRIPT = """
import sys, json
import labtrack as lt
lt.set_store(sys.argv[1])
import numpy  # what this run uses; torch, pytest and the rest are installed but never loaded
with lt.start_run("imports") as run:
    run.log_metric("x", float(numpy.ones(3).sum()))
print(json.dumps({"id": run.id, "imported": lt.get_run(run.id).environment.snapshot["imported"],
                  "torch loaded": "torch" in sys.modules}))
"""


def test_a_run_records_the_distributions_it_imported(tmp_path: Path, python_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store")], env=python_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["torch loaded"] is False
    imported = set(got["imported"])
    assert {"numpy", "labtrack", "sqlalchemy"} <= imported  # labtrack: an editable install, found by its path
    assert not imported & {"torch", "pytest", "ruff", "mypy", "pandas"}


def _env(packages: dict[str, str], imported: list[str] | None = None) -> dict[str, Any]:
    snapshot: dict[str, Any] = {"packages": {"python": {"version": "3.11.7"}, "distributions": {
        name: {"version": version, "source": "index"} for name, version in packages.items()}}}
    if imported is not None:
        snapshot["imported"] = imported
    return snapshot


RUN = {"numpy": "1.26.4", "scikit-learn": "1.4.2", "scipy": "1.13.0", "setuptools": "65.5.0", "torch": "2.1.0",
       "pytest": "8.2.0", "ruff": "0.5.0", "mypy": "1.10.0", "requests": "2.31.0"}
IMPORTED = ["numpy", "scikit-learn", "scipy"]


def test_the_same_venv_with_a_newer_setuptools_is_compatible() -> None:
    verdict = check_reproducibility(_env(RUN, IMPORTED), _env({**RUN, "setuptools": "84.2.1"}))
    assert verdict.level == "compatible" and verdict.exit_code == 0
    assert [r.message for r in verdict.reasons] == ["setuptools 65.5.0 → 84.2.1 (major) (a build or developer tool)"]


def test_a_second_venv_puts_the_numpy_change_first_and_the_rest_where_it_belongs() -> None:
    here = {k: v for k, v in RUN.items() if k not in ("pytest", "ruff", "mypy")}
    here.update({"numpy": "2.0.1", "torch": "2.3.1", "requests": "2.32.0"})
    here.update({f"extra-{i}": "1.0" for i in range(46)})
    verdict = check_reproducibility(_env(RUN, IMPORTED), _env(here))
    assert verdict.level == "at-risk"
    messages = [r.message for r in verdict.reasons]
    assert messages[0] == "numpy 1.26.4 → 2.0.1 (major)"
    assert {r.level for r in verdict.reasons[1:]} == {"compatible"}
    assert "torch 2.1.0 → 2.3.1 (minor) (not imported by the run)" in messages
    assert "pytest 8.2.0 is not installed here (a build or developer tool)" in messages
    extra = [m for m in messages if "installed here were not in the run's environment" in m]
    assert len(extra) == 1 and extra[0].startswith("46 package(s)")


def test_without_recorded_imports_a_change_is_judged_as_before() -> None:
    verdict = check_reproducibility(_env(RUN), _env({**RUN, "torch": "2.3.1"}))
    assert verdict.level == "at-risk" and verdict.reasons[0].message == "torch 2.1.0 → 2.3.1 (minor)"


def test_diff_ranks_what_the_runs_imported_first_and_says_what_neither_loaded() -> None:
    a = _env({**RUN, "pyyaml": "6.0.1"}, [*IMPORTED, "pyyaml"])
    b = _env({**RUN, "pyyaml": "6.0.2", "requests": "3.0.0"}, [*IMPORTED, "pyyaml"])
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    changes = [c for s in result.sections if s.name == "packages" for c in s.changes]
    assert [c.key for c in changes] == ["pyyaml", "requests"]  # a patch they used before a major they did not
    assert changes[1].note == "not imported by either run" and changes[0].note == ""
