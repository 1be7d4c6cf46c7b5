"""What the benchmark measures: workloads, their rows, units and labtrack's targets.

A workload's two sides (``workloads_labtrack`` and ``workloads_mlflow``) each return a flat dict of
measurements; a ``Row`` picks one measurement by ``key`` from each side and says how to judge it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["WORKLOADS", "Row", "Target", "Workload", "workload_names"]

_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    op: Literal["<=", ">=", "=="]
    value: float

    def met(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)


@dataclass(frozen=True)
class Row:
    """One line of the table: measurement ``key`` of both sides, in ``unit``."""

    label: str
    key: str
    unit: str
    better: Literal["lower", "higher", "none"] = "lower"
    target: Target | None = None
    mlflow_key: str | None = None  # defaults to ``key``; "" = no MLflow counterpart
    size_key: str | None = "n"  # the measurement that says how big the sample was (shown in "size")
    versus: str | None = None  # compare with another tool measured on the labtrack side (key ``mlflow_key``),
    #                            not with MLflow: the comparison cell names it, e.g. "pip freeze"
    optional: bool = False  # leave the row out when the labtrack side did not measure it (e.g. no strace)

    @property
    def mlflow(self) -> str:
        return self.key if self.mlflow_key is None else self.mlflow_key


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    rows: tuple[Row, ...]
    mlflow: bool = True  # whether workloads_mlflow has this workload
    mlflow_extras: bool = False  # the MLflow side needs pandas or psycopg2 (``mlflow_env.ensure_extras``)
    postgres: bool = False  # runs on the benchmark's PostgreSQL server (both sides get its address as ``pg``)
    mlflow_server: bool = False  # the MLflow side runs `mlflow server` (``mlflow_env.ensure_server_extras``)
    mlflow_script: str = "workloads_mlflow.py"  # the MLflow side: a script in bench/ (run by MLflow's python)
    labtrack_module: str = "bench.workloads_labtrack"  # the labtrack side: ``python -m MODULE NAME``
    note: str = ""  # printed under the table when this workload ran: how it measures
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "full"/"quick" -> worker arguments


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "log_metric",
        "log_metric, log_param, set_tag in a loop",
        (
            Row("run.log_metric, per call", "per_call_us", "µs", target=Target("<=", 1.5)),
            Row("lt.log_metric (module-level), per call", "module_per_call_us", "µs", mlflow_key="per_call_us"),
            Row("run.end() + run.flush(): until all points are in the store", "end_s", "s", better="none",
                target=Target("<=", 1.0)),
            Row("points lost after end_run", "lost", "points", better="none", target=Target("==", 0)),
            Row("run.log_param (a new key each call), per call", "param_per_call_us", "µs", target=Target("<=", 5.0),
                size_key="param_n"),
            Row("run.set_tag, per call", "tag_per_call_us", "µs", target=Target("<=", 5.0), size_key="param_n"),
        ),
        sizes={"full": {"n": 200_000, "param_n": 20_000, "mlflow_n": 500, "mlflow_param_n": 300},
               "quick": {"n": 50_000, "param_n": 5000, "mlflow_n": 100, "mlflow_param_n": 50}},
    ),
    Workload(
        "batch",
        "batch ingestion, 100 keys × 1000 steps (incl. end_run)",
        (
            Row("run.log_batch (numpy columns)", "batch_numpy_pts_s", "points/s", "higher", Target(">=", 2e6),
                mlflow_key="batch_pts_s"),
            Row("run.log_batch (lists)", "batch_list_pts_s", "points/s", "higher", mlflow_key="batch_pts_s"),
            Row("run.log_metrics(100 keys) per step", "log_metrics_pts_s", "points/s", "higher",
                mlflow_key="log_metrics_pts_s", size_key="log_metrics_n"),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0)),
        ),
        sizes={
            "full": {"keys": 100, "steps": 1000, "repeats": 5, "mlflow_steps": 100, "mlflow_metrics_steps": 20},
            "quick": {"keys": 100, "steps": 1000, "repeats": 2, "mlflow_steps": 20, "mlflow_metrics_steps": 5},
        },
    ),
    Workload(
        "small_batches",
        "log_batch with 10 points per call: 100 keys in turn, one key per call",
        (
            Row("run.log_batch(10 points), per call", "per_call_us", "µs", target=Target("<=", 20.0)),
            Row("first 10% of the calls, per call (writer held off: the spool keeps every point)", "first_us", "µs",
                better="none", mlflow_key="first_us"),
            Row("last 10% of the calls, per call (writer held off: the spool keeps every point)", "last_us", "µs",
                better="none", mlflow_key="last_us"),
            Row("last 10% / first 10%, writer held off", "ratio", "×", better="none", target=Target("<=", 1.5),
                mlflow_key="ratio"),
            Row("last 10% / first 10%, writer draining each second as usual", "running_ratio", "×", better="none",
                mlflow_key=""),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0)),
        ),
        sizes={"full": {"calls": 100_000, "keys": 100, "points": 10, "mlflow_calls": 1000},
               "quick": {"calls": 20_000, "keys": 100, "points": 10, "mlflow_calls": 200}},
    ),
    Workload(
        "memory",
        "client memory while logging a 10M-point run (fresh process), and reading it back with history()",
        (
            Row("peak RSS growth, log_metric loop", "metric_rss_growth_mb", "MB", target=Target("<=", 200),
                mlflow_key="", size_key="metric_n"),
            Row("peak RSS growth, log_batch chunks", "batch_rss_growth_mb", "MB", target=Target("<=", 200),
                mlflow_key="", size_key="batch_n"),
            Row("peak RSS added by the 2nd half of the points (max of both)", "second_half_mb", "MB",
                better="none", mlflow_key=""),
            Row("log_metric loop incl. end_run, per point", "metric_per_point_us", "µs", mlflow_key="",
                size_key="metric_n"),
            Row("history() of the whole series, median of 3 reads in a fresh process", "history_median_s", "s",
                target=Target("<=", 0.5), mlflow_key="", size_key="history_n"),
            Row("history(), the first of those reads (maps the database file, takes fresh memory)", "history_first_s",
                "s", better="none", mlflow_key="", size_key="history_n"),
            Row("history(): peak growth of allocated (anonymous) memory", "history_anon_growth_mb", "MB",
                target=Target("<=", 300), mlflow_key="", size_key="history_n"),
            Row("history(): peak RSS growth incl. SQLite's memory-mapped file pages", "history_rss_growth_mb", "MB",
                better="none", mlflow_key="", size_key="history_n"),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0), mlflow_key="",
                size_key=None),
        ),
        mlflow=False,
        sizes={"full": {"n": 10_000_000}, "quick": {"n": 1_000_000}},
    ),
    Workload(
        "runs",
        "run creation: 10 params, 5 metrics, 3 tags, end; the loop ends with lt.flush() (all in the store)",
        (
            Row("runs created, params/tags given to start_run (cwd outside any git repository)", "runs_s", "runs/s",
                "higher", Target(">=", 1500)),
            Row("runs created, params/tags logged after start_run (outside any git repository)", "after_runs_s",
                "runs/s", "higher", Target(">=", 1500), mlflow_key="runs_s"),
            Row("runs created in this checkout (git work tree stat-checked per run)", "repo_runs_s", "runs/s",
                "higher", mlflow_key=""),
        ),
        sizes={"full": {"n": 2000, "mlflow_n": 100}, "quick": {"n": 300, "mlflow_n": 20}},
    ),
    Workload(
        "import",
        "import time (in-process, median of fresh interpreters)",
        (Row("import labtrack / import mlflow", "import_ms", "ms", target=Target("<=", 100)),),
        sizes={"full": {"n": 7}, "quick": {"n": 3}},
    ),
    Workload(
        "concurrency",
        "8 processes logging into one SQLite store at once",
        (
            Row("errors", "errors", "errors", better="none", target=Target("==", 0)),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0)),
            Row("wall time", "wall_s", "s"),
            Row("throughput, all processes", "pts_s", "points/s", "higher"),
            Row("errors, 8 processes creating a new store", "cold_errors", "errors", better="none",
                target=Target("==", 0), mlflow_key="", size_key="cold_n"),
        ),
        sizes={
            "full": {"procs": 8, "n": 10_000, "cold_n": 1000, "mlflow_n": 200},
            "quick": {"procs": 8, "n": 2000, "cold_n": 200, "mlflow_n": 50},
        },
    ),
    Workload(
        "kill",
        "SIGKILL at a random moment of a fast log_metric loop; a new process opens the store and counts",
        (
            Row("acknowledged points lost", "lost", "points", better="none", target=Target("==", 0), mlflow_key="",
                size_key="size"),
            Row("points stored twice", "duplicated", "points", better="none", target=Target("==", 0), mlflow_key="",
                size_key=None),
            Row("next process opens the store (recovers the dead spool)", "open_s", "s", better="none",
                mlflow_key="", size_key="open_n"),
        ),
        mlflow=False,
        sizes={"full": {"kills": 6, "earliest": 0.2, "latest": 1.5},
               "quick": {"kills": 2, "earliest": 0.2, "latest": 0.8}},
    ),
    Workload(
        "outage",
        "log_metric while another process holds the SQLite store locked (BEGIN EXCLUSIVE); writer busy "
        "timeout 0.2 s, flush interval 0.1 s",
        (
            Row("run.log_metric per call, store available", "available_us", "µs", mlflow_key="", size_key="size"),
            Row("run.log_metric per call, store locked", "locked_us", "µs", mlflow_key="", size_key="size"),
            Row("locked / available", "ratio", "×", better="none", target=Target("<=", 2.0), mlflow_key="",
                size_key=None),
            Row("after the lock goes: flush until the store has everything", "catch_up_s", "s", better="none",
                mlflow_key="", size_key="catch_up_n"),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0), mlflow_key="", size_key=None),
        ),
        mlflow=False,
        sizes={"full": {"n": 1_500_000, "rounds": 3}, "quick": {"n": 1_000_000, "rounds": 1}},
    ),
    Workload(
        "env",
        "environment capture, in a small git repo with an uncommitted change",
        (
            Row("first capture in a fresh process (MLflow: start_run's context tags)", "first_ms", "ms",
                target=Target("<=", 50), size_key="size"),
            Row("repeat capture, same process", "repeat_ms", "ms", target=Target("<=", 5), size_key="repeat_n"),
            Row("first capture vs `pip freeze` subprocess (W&B-style)", "first_ms", "ms",
                mlflow_key="pip_freeze_ms", versus="pip freeze", size_key="freeze_n"),
            Row("distributions installed (importlib.metadata)", "dists", "dists", better="none", mlflow_key="",
                size_key="dists_note"),
            Row("pip / py-cpuinfo processes started by a capture (strace -f)", "forbidden_spawns", "processes",
                better="none", target=Target("==", 0), mlflow_key="", size_key="spawn_note", optional=True),
        ),
        sizes={
            "full": {"n": 7, "repeats": 50, "dists": 150, "freeze_n": 3},
            "quick": {"n": 5, "repeats": 20, "dists": 150, "freeze_n": 1},
        },
    ),
    Workload(
        "exists",
        "exists(experiment, params) — MLflow: search_runs on all 10 params + status, max_results=1",
        (
            Row("exists(), small store", "small_ms", "ms", size_key="small_n"),
            Row("exists(), medium store", "mid_ms", "ms", size_key="mid_n"),
            Row("exists(), large store", "large_ms", "ms", target=Target("<=", 1.0), size_key="large_n"),
            Row("of which compute_key (capture + hash)", "compute_key_ms", "ms", better="none", mlflow_key="",
                size_key=None),
        ),
        sizes={
            "full": {"sizes": [1000, 10_000, 100_000], "calls": 500, "mlflow_calls": 30},
            "quick": {"sizes": [1000, 3000, 10_000], "calls": 200, "mlflow_calls": 10},
        },
    ),
    Workload(
        "search",
        "search: 10 params, 5 metrics, 3 tags a run; filter = metrics.acc > 0.9 and params.lr = 0.01 and "
        "tags.team = 'cv' (~2.5% of runs), order by metrics.acc desc, max_results=100",
        (
            Row("filter + order + top 100, MLflow's store size", "cmp_filter_ms", "ms", mlflow_key="filter_ms",
                size_key="cmp_n"),
            Row("filter + order + top 100, large store", "filter_ms", "ms", target=Target("<=", 20), mlflow_key=""),
            Row("all runs into a DataFrame, MLflow's store size", "cmp_all_df_s", "s", mlflow_key="all_df_s",
                size_key="cmp_n"),
            Row("all runs into a DataFrame: search_runs(...).to_pandas(), large store", "all_df_s", "s",
                target=Target("<=", 1.0), mlflow_key="", size_key="frame_n"),
            Row("of which search_runs(max_results=None), large store", "all_search_s", "s", better="none",
                mlflow_key=""),
        ),
        mlflow_extras=True,
        sizes={
            "full": {"n": 100_000, "compare_n": 10_000, "filter_calls": 15, "frame_calls": 3, "mlflow_n": 10_000},
            "quick": {"n": 10_000, "compare_n": 3000, "filter_calls": 10, "frame_calls": 1, "mlflow_n": 3000},
        },
    ),
    Workload(
        "diff",
        "diff(a, b) by run id, environments of 300 packages, 20 versions apart",
        (Row("labtrack.diff(a, b)", "diff_ms", "ms", target=Target("<=", 50), mlflow_key=""),),
        mlflow=False,
        sizes={"full": {"packages": 300, "changes": 20, "calls": 30}, "quick": {"packages": 300, "changes": 20,
                                                                              "calls": 10}},
    ),
    Workload(
        "runs_pg",
        "run creation on PostgreSQL (fsync on, loopback): 10 params, 5 metrics, 3 tags, end, then lt.flush()",
        (Row("runs created, params/tags given to start_run, one process", "runs_s", "runs/s", "higher",
             Target(">=", 600)),),
        mlflow_extras=True,
        postgres=True,
        sizes={"full": {"n": 2000, "mlflow_n": 100}, "quick": {"n": 300, "mlflow_n": 20}},
    ),
    Workload(
        "search_pg",
        "search on PostgreSQL, runs of `search`: order by metrics.acc desc, max_results=100",
        (
            Row("filter metrics.acc > 0.9 and params.lr = 0.01, MLflow's store size", "cmp_filter2_ms", "ms",
                mlflow_key="filter2_ms", size_key="cmp_n"),
            Row("filter metrics.acc > 0.9 and params.lr = 0.01, large store", "filter2_ms", "ms",
                target=Target("<=", 20), mlflow_key=""),
            Row("the 3-clause filter of `search`, large store", "filter_ms", "ms", mlflow_key=""),
        ),
        mlflow_extras=True,
        postgres=True,
        sizes={
            "full": {"n": 100_000, "compare_n": 10_000, "filter_calls": 15, "mlflow_n": 10_000},
            "quick": {"n": 10_000, "compare_n": 3000, "filter_calls": 10, "mlflow_n": 3000},
        },
    ),
    Workload(
        "server_ingest",
        "8 client processes logging metrics through one tracking server on PostgreSQL (loopback HTTP, token auth): "
        "labtrack run.log_metric with `labtrack server`, MLflow MlflowClient.log_batch (1000 a call) with "
        "`mlflow server`",
        (
            Row("throughput until every point is stored, all clients (issue: >= 100× MLflow)", "pts_s", "points/s",
                "higher", Target(">=", 250_000)),
            Row("errors (client failures, warnings, failed requests)", "errors", "errors", better="none",
                target=Target("==", 0)),
            Row("points lost", "lost", "points", better="none", target=Target("==", 0)),
            Row("wall time, first run started to last point stored", "wall_s", "s"),
            Row("server RSS under that load, peak of the busiest worker", "server_rss_mb", "MB",
                target=Target("<=", 200), size_key="memory_n"),
            Row("server RSS under that load, all its processes together", "server_total_rss_mb", "MB",
                better="none", size_key="memory_total_n"),
            Row("start-up: spawning the server until /ready answers 200 (MLflow: /health)", "startup_s", "s",
                target=Target("<=", 1.0), size_key="startup_n"),
            Row("run.log_metric per call, the store a server (MLflow: a request per call)", "per_call_us", "µs",
                target=Target("<=", 2.0), size_key="per_call_n"),
            Row("of those: run.end() + run.flush() until the server has them all", "per_call_end_s", "s",
                better="none", mlflow_key="", size_key="per_call_n"),
        ),
        mlflow_extras=True,
        postgres=True,
        mlflow_server=True,
        mlflow_script="workloads_mlflow_server.py",
        sizes={
            "full": {"procs": 8, "n": 500_000, "workers": 1, "starts": 3, "per_call_n": 200_000, "mlflow_n": 20_000,
                     "mlflow_workers": 4, "mlflow_starts": 2, "mlflow_per_call_n": 300},
            "quick": {"procs": 8, "n": 100_000, "workers": 1, "starts": 2, "per_call_n": 50_000, "mlflow_n": 3000,
                      "mlflow_workers": 4, "mlflow_starts": 1, "mlflow_per_call_n": 50},
        },
    ),
    Workload(
        "server_runs",
        "run creation through the tracking server, 4 client processes at once: 10 params, 5 metrics, 3 tags, end "
        "(labtrack: each loop ends with lt.flush())",
        (
            Row("runs created, all clients (issue: >= 10× MLflow)", "runs_s", "runs/s", "higher", Target(">=", 300)),
            Row("errors", "errors", "errors", better="none", target=Target("==", 0)),
        ),
        mlflow_extras=True,
        postgres=True,
        mlflow_server=True,
        mlflow_script="workloads_mlflow_server.py",
        sizes={"full": {"procs": 4, "n": 1000, "workers": 1, "mlflow_n": 50, "mlflow_workers": 4},
               "quick": {"procs": 4, "n": 200, "workers": 1, "mlflow_n": 10, "mlflow_workers": 4}},
    ),
    Workload(
        "server_search",
        "search and get_run through the tracking server, runs of `search` on PostgreSQL: filter = metrics.acc > 0.9 "
        "and params.lr = 0.01 and tags.team = 'cv', order by metrics.acc desc, max_results=100",
        (
            Row("search + the 100 runs' metrics read, MLflow's store size (MLflow: search_runs)", "cmp_filter_ms", "ms",
                mlflow_key="filter_ms", size_key="cmp_n"),
            Row("search + the 100 runs' metrics read, large store", "filter_ms", "ms", target=Target("<=", 30),
                mlflow_key=""),
            Row("of which lt.search_runs() alone (ids; runs are fetched when read), large store", "filter_ids_ms",
                "ms", better="none", mlflow_key=""),
            Row("get_run by id, MLflow's store size", "cmp_get_run_ms", "ms", mlflow_key="get_run_ms",
                size_key="cmp_n"),
            Row("get_run by id, large store", "get_run_ms", "ms", target=Target("<=", 5), mlflow_key=""),
        ),
        mlflow_extras=True,
        postgres=True,
        mlflow_server=True,
        mlflow_script="workloads_mlflow_server.py",
        sizes={
            "full": {"n": 100_000, "compare_n": 10_000, "calls": 15, "workers": 1, "mlflow_n": 10_000,
                     "mlflow_workers": 4},
            "quick": {"n": 10_000, "compare_n": 3000, "calls": 10, "workers": 1, "mlflow_n": 3000, "mlflow_workers": 4},
        },
    ),
    Workload(
        "ui_table",
        "web UI: the runs table of an experiment of synthetic runs (10 params, 3 tags, 5 metrics each) in headless "
        "Chromium; labtrack: `labtrack ui`; MLflow: its own UI (`mlflow server`, SQLite), the experiment's runs page",
        (
            Row("runs table, first page interactive: navigation to its rows shown + load event (MLflow: its size)",
                "table_ms", "ms", target=Target("<=", 300), size_key="size"),
            Row("runs table, first page interactive, MLflow's store size", "cmp_table_ms", "ms",
                mlflow_key="table_ms", size_key="cmp_size"),
            Row("runs table, first load: a fresh server, an empty browser cache", "table_first_ms", "ms",
                size_key="first_size"),
            Row("of which the page's HTML, request to last byte (the server)", "table_server_ms", "ms", better="none",
                mlflow_key="", size_key=None),
            Row("sort by a metric: click on its column header to the new page's rows", "sort_ms", "ms",
                target=Target("<=", 300), mlflow_key="", size_key="size"),
            Row("of which the sorted page's HTML, request to last byte (the server)", "sort_server_ms", "ms",
                better="none", mlflow_key="", size_key=None),
            Row("JS + CSS the page loads, gzip -9, all files together", "assets_kb", "KB", target=Target("<=", 100),
                size_key="assets_n"),
        ),
        mlflow_extras=True,
        mlflow_server=True,
        mlflow_script="workloads_mlflow_ui.py",
        labtrack_module="bench.workloads_ui",
        note="ui_*: headless Chromium (Debian's, Playwright), the UI server a process of its own on 127.0.0.1; "
             "times taken in the page from the navigation's start (sort: from the click). Each figure is the median "
             "of the loads in the size column, in one browser (its cache warm) from a warm server; the first load "
             "(a fresh server, an empty cache) is its own row. MLflow's UI is the full `mlflow` wheel's build at "
             "the benchmark's MLflow version, its runs page's rows are `.ag-row` links to runs.",
        sizes={"full": {"n": 100_000, "compare_n": 10_000, "reps": 7, "mlflow_n": 10_000},
               "quick": {"n": 20_000, "compare_n": 3000, "reps": 3, "mlflow_n": 3000}},
    ),
    Workload(
        "ui_charts",
        "web UI: metric charts in headless Chromium (uPlot, min-max downsampled on the server) — a run page with a "
        "long metric, a zoom into it, the compare page of 10 runs",
        (
            Row("run page: the chart of a long metric drawn after the navigation", "chart_ms", "ms",
                target=Target("<=", 300), mlflow_key="", size_key="size"),
            Row("of which the chart's data request done", "chart_series_ms", "ms", better="none", mlflow_key="",
                size_key=None),
            Row("first load: a fresh server (reads the history), an empty browser cache", "chart_first_ms", "ms",
                better="none", mlflow_key="", size_key="n"),
            Row("zoom: drag across the chart, mouseup to the redraw from the re-query", "zoom_ms", "ms",
                target=Target("<=", 150), mlflow_key="", size_key="size"),
            Row("compare: every chart drawn after the navigation", "compare_ms", "ms", target=Target("<=", 500),
                mlflow_key="", size_key="compare_size"),
            Row("compare, first load: a fresh history cache, an empty browser cache", "compare_first_ms", "ms",
                better="none", mlflow_key="", size_key="compare_n"),
        ),
        mlflow=False,
        labtrack_module="bench.workloads_ui",
        sizes={"full": {"points": 1_000_000, "runs": 10, "steps": 100_000, "keys": 2, "reps": 7},
               "quick": {"points": 300_000, "runs": 10, "steps": 20_000, "keys": 2, "reps": 3}},
    ),
    Workload(
        "system_metrics",
        "system metrics: the run monitor thread on an idle run (psutil; NVML where there is a GPU), console log on",
        (
            Row("monitor thread CPU, every 10 s (the default), % of one core", "default_thread_cpu_pct", "%",
                target=Target("<=", 0.5), mlflow_key="", size_key="n"),
            Row("monitor thread CPU, every 1 s, % of one core", "fast_thread_cpu_pct", "%", better="none",
                mlflow_key="", size_key="fast_n"),
            Row("whole process CPU, system metrics off (the writer's heartbeat), % of one core",
                "off_process_cpu_pct", "%", better="none", mlflow_key="", size_key="fast_n"),
            Row("whole process CPU, every 10 s, % of one core", "default_process_cpu_pct", "%", better="none",
                mlflow_key="", size_key="n"),
            Row("whole process CPU, every 1 s, % of one core", "fast_process_cpu_pct", "%", better="none",
                mlflow_key="", size_key="fast_n"),
            Row("monitor thread CPU per sample (and the console look of the seconds between), every 1 s",
                "fast_sample_ms", "ms", better="none", mlflow_key="", size_key="fast_n"),
            Row("monitor thread until its first sample: loading psutil (and NVML), baseline, first reading",
                "default_first_ms", "ms", better="none", mlflow_key="", size_key=None),
        ),
        mlflow=False,
        labtrack_module="bench.workloads_system",
        note="system_metrics: the monitor thread's CPU clock (time.pthread_getcpuclockid); each setting in a fresh "
             "process, timed after the first sample.",
        sizes={"full": {"seconds_default": 60.0, "seconds_fast": 20.0},
               "quick": {"seconds_default": 20.0, "seconds_fast": 5.0}},
    ),
)


def workload_names() -> list[str]:
    return [w.name for w in WORKLOADS]
