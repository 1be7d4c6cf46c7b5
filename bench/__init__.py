"""labtrack's benchmark: the same workloads on labtrack and, side by side, on MLflow (SQLite backend; the
``*_pg`` and ``server_*`` workloads on a throw-away PostgreSQL server both sides share, a database each;
``server_*`` through each side's tracking server).

    make bench                      # = python -m bench
    python -m bench --quick         # smaller sizes, a smoke run
    python -m bench --only batch    # one workload (repeatable)
    python -m bench --json out.json # results as JSON too

Layout:
- ``bench.spec``              what each workload measures: its rows, units, targets (``WORKLOADS``)
- ``bench.workloads_labtrack`` the labtrack side; ``python -m bench.workloads_labtrack NAME`` prints JSON
- ``bench/workloads_mlflow.py`` the MLflow side, a standalone script run by the MLflow virtualenv's python
- ``bench.faults``            the labtrack side of the fault workloads (SIGKILL, store outage)
- ``bench.workloads_server``  the labtrack side of the ``server_*`` workloads (`labtrack server` and its clients)
- ``bench/workloads_mlflow_server.py`` their MLflow side (`mlflow server`), a script like ``workloads_mlflow.py``
- ``bench.workloads_ui``      the web UI workloads (``ui_*``): pages timed in headless Chromium (Playwright,
                              Debian's browser) against `labtrack ui`, and the browser side of MLflow's UI
- ``bench.workloads_system``  the cost of system metrics (``system_metrics``): the run monitor thread's CPU time
- ``bench/workloads_mlflow_ui.py`` the MLflow side of ``ui_table``: `mlflow server` with its UI over 10k runs
- ``bench.serving``           server processes for both sides: start, wait until ready, memory, stop (stdlib only)
- ``bench.synthetic``         a store of many runs built by bulk inserts (SQLite or PostgreSQL)
- ``bench.children``          child processes of the labtrack side
- ``bench.postgres``          the throw-away PostgreSQL cluster (Debian's binaries, fsync on, loopback)
- ``bench.mlflow_env``        installs MLflow into ``.bench/mlflow-venv`` (once), psycopg2 and pandas beside it,
                              and what `mlflow server` needs (Flask, ...) beside that
- ``bench.report``            the table

Each workload runs in fresh subprocesses with fresh temporary stores. To add a workload: a function in
``workloads_labtrack.WORKLOADS`` (and optionally ``workloads_mlflow.WORKLOADS``) returning a dict of
measurements, and a ``Workload`` in ``spec.WORKLOADS`` saying which measurements become which rows (and,
with ``mlflow_script``, which script in bench/ is its MLflow side).
"""
