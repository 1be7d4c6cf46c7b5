"""``python -m bench``: run the workloads on labtrack and MLflow, print the table (see ``bench/__init__.py``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.mlflow_env import ROOT, MlflowEnv, ensure_extras, ensure_mlflow, ensure_server_extras
from bench.postgres import Cluster
from bench.report import WorkloadResult, lines_of, problems_text, render
from bench.spec import WORKLOADS, Workload, workload_names

TIMEOUT = 600.0
HERE = Path(__file__).resolve().parent  # the MLflow side's scripts (``Workload.mlflow_script``)


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _split_sizes(workload: Workload, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    sizes = workload.sizes.get("quick" if quick else "full", {})
    ours = {k: v for k, v in sizes.items() if not k.startswith("mlflow_")}
    theirs = {**ours, **{k.removeprefix("mlflow_"): v for k, v in sizes.items() if k.startswith("mlflow_")}}
    return ours, theirs


def _run_worker(command: list[str], directory: str, env: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=directory, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT:.0f} s"
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        err = [line for line in out.stderr.strip().splitlines() if line.strip()]
        return None, f"exit {out.returncode}: {err[-1] if err else 'no output'}"
    try:
        return json.loads(lines[-1]), None
    except json.JSONDecodeError:
        return None, f"unreadable output: {lines[-1][:200]}"


# Python as users run it: with bytecode caches (a sandbox may set PYTHONDONTWRITEBYTECODE, which would make
# every import in a fresh process compile from source — for labtrack's editable install, not for MLflow's).
_NOT_PASSED = ("LABTRACK_STORE", "PYTHONDONTWRITEBYTECODE")


def _labtrack_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _mlflow_env(*extras: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING", "PYTHONPATH")) and k not in _NOT_PASSED}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", GIT_PYTHON_REFRESH="quiet")
    if any(extras):
        env["PYTHONPATH"] = os.pathsep.join(e for e in extras if e)
    return env


class Postgres:
    """The PostgreSQL server of the PostgreSQL workloads: started on first need, stopped by ``stop``."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.address: str | None = None  # host:port
        self.reason: str | None = None  # why it is not available

    def get(self) -> str | None:
        if self.cluster is None:
            self.cluster = Cluster()
            _log("starting a throw-away PostgreSQL cluster (fsync on, 127.0.0.1) ...")
            try:
                self.address = self.cluster.start()
                _log(f"PostgreSQL {self.cluster.version} on {self.address}")
            except RuntimeError as exc:
                self.reason = f"PostgreSQL could not be started: {exc}"
                _log(self.reason)
                self.cluster.stop()
        return self.address

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


def run_workload(workload: Workload, quick: bool, mlflow: MlflowEnv | None, scratch: Path,
                 postgres: Postgres) -> WorkloadResult:
    result = WorkloadResult(workload)
    ours, theirs = _split_sizes(workload, quick)
    if workload.postgres:
        address = postgres.get()
        if address is None:
            result.skipped = postgres.reason
            return result
        ours["pg"] = theirs["pg"] = address
    os.sync()  # the previous workload's writes reach the disk now, not during this one
    started = time.perf_counter()
    directory = tempfile.mkdtemp(prefix=f"{workload.name}-labtrack-", dir=scratch)
    command = [sys.executable, "-m", workload.labtrack_module, workload.name, "--dir", directory,
               "--args", json.dumps(ours)]
    _log(f"{workload.name}: labtrack {ours}")
    result.labtrack, result.labtrack_error = _run_worker(command, directory, _labtrack_env())
    shutil.rmtree(directory, ignore_errors=True)
    if workload.mlflow:
        if mlflow is None:
            result.mlflow_error = "not run (--no-mlflow)"
        elif mlflow.python is None:
            result.mlflow_error = f"MLflow not available: {mlflow.reason}"
        elif workload.mlflow_server and mlflow.server_extras is None:
            result.mlflow_error = "`mlflow server`'s dependencies (Flask, ...) could not be installed"
        else:
            directory = tempfile.mkdtemp(prefix=f"{workload.name}-mlflow-", dir=scratch)
            os.sync()
            command = [mlflow.python, str(HERE / workload.mlflow_script), workload.name, "--dir", directory,
                       "--args", json.dumps(theirs)]
            _log(f"{workload.name}: MLflow {theirs}")
            extras = mlflow.extras if workload.mlflow_extras else None
            server_extras = mlflow.server_extras if workload.mlflow_server else None
            result.mlflow, result.mlflow_error = _run_worker(command, directory, _mlflow_env(extras, server_extras))
            shutil.rmtree(directory, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    _log(f"{workload.name}: done in {result.seconds:.1f} s")
    return result


def machine(mlflow: MlflowEnv | None) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from labtrack import __version__

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "labtrack": __version__,
        "mlflow": (mlflow.version if mlflow and mlflow.python else None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run (about a minute)")
    parser.add_argument("--only", action="append", choices=workload_names(), metavar="NAME",
                        help=f"run only this workload (repeatable): {', '.join(workload_names())}")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--no-mlflow", action="store_true", help="labtrack only (do not install or run MLflow)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a labtrack target is not met")
    options = parser.parse_args(argv)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    selected = [w for w in WORKLOADS if not options.only or w.name in options.only]
    mlflow = None if options.no_mlflow or not any(w.mlflow for w in selected) else ensure_mlflow()
    if mlflow and mlflow.python is None:
        _log(f"MLflow not available ({mlflow.reason}); labtrack numbers only")
    elif mlflow:
        if any(w.mlflow_extras for w in selected):
            mlflow.extras = ensure_extras(mlflow)
        if any(w.mlflow_server for w in selected):
            mlflow.server_extras = ensure_server_extras(mlflow)
    scratch = ROOT / ".bench" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    postgres = Postgres()
    try:
        results = [run_workload(w, options.quick, mlflow, scratch, postgres) for w in selected]
    finally:
        postgres.stop()
    total = time.perf_counter() - started

    info = machine(mlflow)
    if postgres.cluster is not None:
        info["postgresql"] = postgres.cluster.version if postgres.address else postgres.reason
    info["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    command = "python -m bench" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])))
    if mlflow is None:
        mlflow_line = "MLflow: not run (--no-mlflow)"
    elif mlflow.python is None:
        mlflow_line = f"MLflow: NOT AVAILABLE — {mlflow.reason}"
    else:
        mlflow_line = f"MLflow {mlflow.version} (SQLite backend, sqlite:///…/mlflow.db) in {mlflow.python}"
    print()
    print(f"labtrack benchmark — `{command}`{' (quick sizes)' if options.quick else ''}")
    print(f"machine: {info['cpu']}, {info['cpu_count']} CPUs, Python {info['python']}, SQLite {info['sqlite']}, "
          f"{info['platform']}")
    print(f"labtrack {info['labtrack']}; {mlflow_line}")
    if postgres.cluster is not None:
        print(f"PostgreSQL {postgres.cluster.version} for the *_pg and server_* workloads: a throw-away cluster on "
              "127.0.0.1, fsync on, a database for each side (labtrack: postgresql+psycopg://, MLflow: "
              "postgresql+psycopg2://)" if postgres.address else f"PostgreSQL: NOT AVAILABLE — {postgres.reason}")
    if any(w.mlflow_server and w.postgres for w in selected):
        print("server_*: each side's tracking server as a process on 127.0.0.1 over that PostgreSQL, its clients in "
              "other processes over HTTP (labtrack server with a token; mlflow server with uvicorn, no job runner)")
    for note in dict.fromkeys(w.note for w in selected if w.note):
        print(note)
    busy = max(load_before, info["load_average"]["after"]) > 0.5 * (os.cpu_count() or 1)
    print(f"1-min load average: {load_before:.2f} before, {info['load_average']['after']:.2f} after"
          + (" — the machine was busy: timings are noisy, rerun on an idle machine" if busy else ""))
    print()
    print(render(results))
    print()
    print("'labtrack better by' = MLflow time / labtrack time, or labtrack rate / MLflow rate (>1: labtrack "
          "faster). Each workload runs in fresh processes with fresh temporary stores. MLflow writes every "
          "point synchronously, so its end_run has nothing left to write.")
    if any(line.versus for r in results for line in lines_of(r)):
        print("A comparison cell naming a tool in parentheses (pip freeze) compares with that tool, run in "
              "labtrack's environment, not with MLflow. MLflow records no installed packages at start_run: its "
              "`env` column is the context tags start_run resolves (git commit through GitPython, source, user).")
    problems = problems_text(results)
    if problems:
        print("\nProblems:\n" + problems)
    print(f"\ntotal: {total:.0f} s")

    failed = [line for r in results for line in lines_of(r) if line.meets is False]
    if options.json:
        payload = {
            "command": command,
            "quick": options.quick,
            "machine": info,
            "mlflow_error": mlflow.reason if mlflow else "not run",
            "seconds": total,
            "workloads": [
                {
                    "name": r.workload.name,
                    "title": r.workload.title,
                    "seconds": r.seconds,
                    "labtrack": r.labtrack,
                    "mlflow": r.mlflow,
                    "labtrack_error": r.labtrack_error,
                    "mlflow_error": r.mlflow_error,
                    "rows": [asdict(line) for line in lines_of(r)],
                }
                for r in results
            ],
        }
        Path(options.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    errors = any(r.labtrack_error for r in results)
    return 1 if errors or (options.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
