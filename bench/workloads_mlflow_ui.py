"""The MLflow side of the web UI workloads: MLflow's own UI, served by ``mlflow server`` over a SQLite store,
loaded in the same headless Chromium as labtrack's.

A standalone script (stdlib + mlflow only) run by the MLflow virtualenv's python, with numpy and the
server's dependencies on its ``PYTHONPATH`` (``Workload.mlflow_extras`` and ``mlflow_server``):

    .bench/mlflow-venv/bin/python bench/workloads_mlflow_ui.py ui_table --dir TMPDIR --args '{"n": 10000, …}'

mlflow-skinny, the benchmark's MLflow, has no UI: the React build ships in the full ``mlflow`` wheel. Its
``mlflow`` package (the same version, the same Python code plus ``server/js/build``) is installed once,
without dependencies, into ``VENV/ui-extras`` and put first on the server's ``PYTHONPATH`` only.

``ui_table``: ``n`` runs (``workloads_mlflow.SyntheticStore``: the rows ``start_run`` + ``log_params`` +
``set_tags`` + ``log_metrics`` + ``end_run`` write, by bulk inserts — 10 params, 3 tags, 5 metrics a run, as
labtrack's), served by ``mlflow server`` (its defaults: uvicorn, 4 workers; no job runner); the experiment's
runs page (``#/experiments/ID/runs``, the "Model training" view) is timed from the navigation to a run's row
in its table, by ``bench.workloads_ui mlflow_browse`` in labtrack's environment (Playwright is there). It
prints one JSON line with the keys of ``bench.workloads_ui``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from fixtures import CHILD_TIMEOUT, workload_main  # (its folder)
from serving import ServerProcess, free_port
from workloads_mlflow import SyntheticStore

Result = dict[str, Any]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UI_EXTRAS = os.path.join(sys.prefix, "ui-extras")  # sys.prefix: the MLflow virtualenv


def _error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def ensure_ui() -> str:
    """``UI_EXTRAS`` with the full ``mlflow`` package of this MLflow's version (its UI build), installed once."""
    version = metadata.version("mlflow-skinny")
    index = os.path.join(UI_EXTRAS, "mlflow", "server", "js", "build", "index.html")
    stamp = os.path.join(UI_EXTRAS, f"mlflow-{version}.dist-info")
    if os.path.exists(index) and os.path.isdir(stamp):
        return UI_EXTRAS
    print(f"bench: installing mlflow=={version} (its UI build, no dependencies) into {UI_EXTRAS} (once) ...",
          file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                          "--upgrade", "--target", UI_EXTRAS, f"mlflow=={version}"],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or not os.path.exists(index):
        raise RuntimeError(f"could not install MLflow's UI (mlflow=={version}): {_error(out.stderr or out.stdout)}")
    return UI_EXTRAS


def _server(directory: str, backend: str, ui: str) -> ServerProcess:
    """``mlflow server`` for ``backend`` on a free loopback port, its UI build first on its path (not started)."""
    port = free_port()
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = [mlflow_cli, "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port),
               "--artifacts-destination", os.path.join(directory, "mlartifacts")]
    path = os.pathsep.join(p for p in (ui, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return ServerProcess(command, port=port, log=os.path.join(directory, "server.log"), env=env, cwd=directory,
                         ready_path="/health")


def _has_playwright(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import playwright.sync_api"], capture_output=True, timeout=60,
                              env=_labtrack_env()).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _parent_python() -> str | None:
    """The python that runs ``python -m bench`` (this script's parent), as it was invoked (a virtualenv's path)."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode()
        if not argv0:
            return None
        return os.path.join(os.readlink(f"/proc/{os.getppid()}/cwd"), argv0) if os.sep in argv0 else shutil.which(argv0)
    except OSError:
        return None


def labtrack_python() -> str:
    """A python with labtrack's environment (Playwright): ``BENCH_LABTRACK_PYTHON``, else the benchmark's own,
    else the checkout's ``.venv``."""
    candidates = [os.environ.get("BENCH_LABTRACK_PYTHON"), _parent_python(), os.path.join(ROOT, ".venv", "bin", "python")]
    for python in candidates:
        if python and os.path.exists(python) and _has_playwright(python):
            return python
    raise RuntimeError("no python with Playwright found for the browser (set BENCH_LABTRACK_PYTHON)")


def _labtrack_env() -> dict[str, str]:
    """This environment without MLflow's PYTHONPATH, the checkout on it instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPATH"] = ROOT
    return env


def _browse(directory: str, url: str, reps: int) -> Result:
    command = [labtrack_python(), "-m", "bench.workloads_ui", "mlflow_browse", "--dir", directory, "--args",
               json.dumps({"url": url, "reps": reps})]
    out = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, env=_labtrack_env(), cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the browser failed (exit {out.returncode}): {_error(out.stderr)}")
    return dict(json.loads(lines[-1]))


def ui_table(directory: str, n: int, reps: int, **_: Any) -> Result:
    ui = ensure_ui()
    store = SyntheticStore(directory)
    store.grow(n)
    store.engine.dispose()
    backend = f"sqlite:///{os.path.join(directory, 'mlflow.db')}"
    result: Result = {"n": n, "cmp_n": n, "reps": reps, "build_s": store.build_s, "size": f"{n:,} runs, median of {reps}",
                      "cmp_size": f"{n:,} runs, median of {reps}", "first_size": f"{n:,} runs"}
    with _server(directory, backend, ui) as server:
        result["startup_s"] = server.start()
        url = f"{server.url}/#/experiments/{store.experiment_id}/runs?workflowType=machine_learning"
        result.update(_browse(directory, url, reps))
    if result.get("rows_shown", 0) < 1:
        result["problems"] = [f"the runs table showed {result.get('rows_shown')} rows"]
    return result


WORKLOADS: dict[str, Callable[..., Result]] = {"ui_table": ui_table}


def main(argv: list[str] | None = None) -> None:
    workload_main(WORKLOADS, __doc__, argv)


if __name__ == "__main__":
    main()
