"""The real MLflow, in its own virtualenv, for the interop tests (import from MLflow, the compatible endpoint).

MLflow never runs inside labtrack's test process: scripts run with ``mlflow_python`` (mlflow-skinny with
SQLAlchemy and Alembic, the virtualenv the benchmark uses, ``bench.mlflow_env``), and ``mlflow server`` with
``mlflow_server_env`` (Flask and the rest on its PYTHONPATH). The virtualenv is made once (``.bench/``);
``.ci/run`` makes it before the tests. Without it these tests skip, unless LABTRACK_REQUIRE_MLFLOW=1 (CI),
where they fail instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
REQUIRE_MLFLOW = os.environ.get("LABTRACK_REQUIRE_MLFLOW") == "1"


@dataclass(frozen=True)
class Mlflow:
    python: str
    version: str
    server_path: str | None  # PYTHONPATH entry with what `mlflow server` needs, or None

    def run(self, script: str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> str:
        """Run ``script`` (dedented) with MLflow's python in ``cwd``; its stdout, or a failure with its stderr."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABTRACK_"))}
        full_env.update(env or {})
        out = subprocess.run([self.python, "-c", textwrap.dedent(script)], cwd=cwd, env=full_env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            pytest.fail(f"the MLflow script failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
        return out.stdout


def _unavailable(reason: str) -> None:
    if REQUIRE_MLFLOW:
        pytest.fail(f"{reason}, but LABTRACK_REQUIRE_MLFLOW=1 (CI must run the MLflow interop tests)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mlflow_env() -> Mlflow:
    """MLflow's own virtualenv (made on first use, several minutes; CI makes it beforehand)."""
    sys.path.insert(0, str(REPO))
    try:
        from bench.mlflow_env import ensure_mlflow, ensure_server_extras
    finally:
        sys.path.remove(str(REPO))
    env = ensure_mlflow(log=True)
    if env.python is None or env.version is None:
        _unavailable(f"MLflow could not be installed into its own virtualenv: {env.reason}")
        raise AssertionError("unreachable")
    return Mlflow(env.python, env.version, ensure_server_extras(env, log=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]


def start_mlflow_server(mlflow: Mlflow, backend: str, artifacts: Path, log: Path) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on loopback over ``backend`` (a store URL), serving artifacts from ``artifacts``;
    stopped when the generator closes. Use from a fixture: ``yield from start_mlflow_server(...)``."""
    if mlflow.server_path is None:
        _unavailable("`mlflow server`'s dependencies (Flask, ...) could not be installed")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABTRACK_"))}
    env.update(PYTHONPATH=str(mlflow.server_path), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    command = [str(Path(mlflow.python).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", backend, "--artifacts-destination", str(artifacts), "--workers", "1"]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"`mlflow server` exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`mlflow server` did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield MlflowServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
