"""MLflow for the side-by-side numbers, installed once into its own virtualenv (``.bench/mlflow-venv``).

MLflow is never imported into labtrack's environment: its workloads run as subprocesses of that
virtualenv's python. ``mlflow-skinny`` plus SQLAlchemy and Alembic is what MLflow's SQLite tracking
backend (``sqlite:///...``) needs; override with ``BENCH_MLFLOW_REQUIREMENTS="mlflow==2.14.3"`` (and
``BENCH_MLFLOW_VENV=DIR`` to keep that install apart). pandas, which ``mlflow.search_runs`` needs, and
psycopg2, MLflow's driver for ``postgresql://`` stores, go to ``VENV/extras``, on the ``PYTHONPATH`` of the
workloads that need them only (see ``ensure_extras``). What ``mlflow server`` needs beyond mlflow-skinny
(Flask and the rest, as the full ``mlflow`` package requires them) goes to ``VENV/server-extras``, on the
``PYTHONPATH`` of the server workloads only (``ensure_server_extras``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXTRAS_DIR", "SERVER_EXTRAS_DIR", "VENV", "MlflowEnv", "ensure_extras", "ensure_mlflow",
           "ensure_server_extras"]

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BENCH_MLFLOW_VENV") or ROOT / ".bench" / "mlflow-venv")
REQUIREMENTS = os.environ.get("BENCH_MLFLOW_REQUIREMENTS", "mlflow-skinny sqlalchemy alembic").split()
# (pip requirement, module): mlflow.search_runs returns a DataFrame (the `search` workload); the PostgreSQL
# workloads' MLflow side talks to the server through psycopg2.
EXTRAS = [("pandas", "pandas"), ("psycopg2-binary", "psycopg2")]
EXTRAS_DIR = VENV / "extras"  # not on the venv's sys.path: see ensure_extras
# What `mlflow server` imports that mlflow-skinny lacks, with the bounds the full `mlflow` package gives them.
# Not huey: the server workloads run it without its job runner (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false).
SERVER_EXTRAS = [("Flask<4", "flask"), ("Flask-CORS<7", "flask_cors"), ("graphene<4", "graphene"),
                 ("aiohttp>=3.7.0,<4", "aiohttp"), ("numpy", "numpy")]  # numpy: mlflow.gateway, at start-up
SERVER_EXTRAS_DIR = VENV / "server-extras"
_PROBE = "import mlflow, sqlalchemy, alembic, mlflow.store.tracking.sqlalchemy_store; print(mlflow.__version__)"


@dataclass
class MlflowEnv:
    python: str | None  # None: not available, see ``reason``
    version: str | None = None
    reason: str | None = None
    extras: str | None = None  # PYTHONPATH entry with EXTRAS (ensure_extras), for the workloads that need it
    server_extras: str | None = None  # PYTHONPATH entry with SERVER_EXTRAS (ensure_server_extras)


def _probe(python: Path) -> str | None:
    if not python.exists():
        return None
    try:
        out = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None


def ensure_extras(env: MlflowEnv, log: bool = True) -> str | None:
    """``EXTRAS_DIR`` with ``EXTRAS`` installed for ``env``'s python (once), or None if that failed.

    A directory for ``PYTHONPATH``, not the virtualenv: ``import mlflow`` imports pandas whenever it can,
    which would change what the other workloads (import time above all) measure of mlflow-skinny.
    """
    return _ensure_target(env, EXTRAS, EXTRAS_DIR, log)


def ensure_server_extras(env: MlflowEnv, log: bool = True) -> str | None:
    """``SERVER_EXTRAS_DIR`` with ``SERVER_EXTRAS`` installed for ``env``'s python (once), or None if that
    failed; apart from the virtualenv for the reason ``ensure_extras`` gives."""
    return _ensure_target(env, SERVER_EXTRAS, SERVER_EXTRAS_DIR, log)


def _ensure_target(env: MlflowEnv, requirements: list[tuple[str, str]], target: Path, log: bool) -> str | None:
    if env.python is None:
        return None
    probe = [env.python, "-c", "; ".join(f"import {module}" for _, module in requirements)]
    extras_env = dict(os.environ, PYTHONPATH=str(target))
    try:
        if subprocess.run(probe, capture_output=True, timeout=120, env=extras_env).returncode == 0:
            return str(target)
        if log:
            print(f"bench: installing {' '.join(r for r, _ in requirements)} into {target} (once) ...",
                  file=sys.stderr, flush=True)
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([env.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
                        str(target), *(r for r, _ in requirements)], capture_output=True, timeout=900)
        ok = subprocess.run(probe, capture_output=True, timeout=120, env=extras_env).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return None
    return str(target) if ok else None


def ensure_mlflow(log: bool = True) -> MlflowEnv:
    python = VENV / "bin" / "python"
    version = _probe(python)
    if version:
        return MlflowEnv(str(python), version)
    if log:
        print(f"bench: installing {' '.join(REQUIREMENTS)} into {VENV} (once) ...", file=sys.stderr, flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    steps = [
        [base, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
    ]
    for step in steps:
        try:
            out = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            return MlflowEnv(None, reason=f"{' '.join(step[:4])}: {exc}")
        if out.returncode != 0:
            lines = [line for line in (out.stderr or out.stdout).splitlines() if line.strip()]
            tail = lines[-1] if lines else f"exit {out.returncode}"
            return MlflowEnv(None, reason=f"`{' '.join(step[2:5])} ...` failed: {tail[:300]}")
    version = _probe(python)
    if not version:
        return MlflowEnv(None, reason="installed, but `import mlflow` with its SQLAlchemy store fails")
    return MlflowEnv(str(python), version)
