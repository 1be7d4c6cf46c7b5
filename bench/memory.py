"""The labtrack side of the memory workload: a 10M-point run logged in a fresh process (one ``log_metric``
call a point, then ``log_batch`` chunks), the peak RSS it adds, and the series read back whole with
``history()`` in another fresh process: its time and the memory it allocates.

Run by ``bench.workloads_labtrack`` (its functions are in its ``WORKLOADS``).
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from bench.children import run_child
from bench.fixtures import store_dir

Result = dict[str, Any]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def memory_child(directory: str, n: int, mode: str, **_: Any) -> Result:
    """In its own process: log ``n`` points, report peak RSS growth over the post-import baseline."""
    import numpy as np

    import labtrack as lt

    lt.set_store(store_dir(directory, f"store-{mode}"))
    with lt.start_run("bench") as warm:
        warm.log_metric("warm", 0.0, step=0)
    baseline = _rss_mb()
    run = lt.start_run("bench")
    t0 = time.perf_counter()
    half_peak = baseline
    if mode == "metric":
        log = run.log_metric
        for i in range(n):
            log("loss", 0.001 * (i % 1000), step=i)
            if i == n // 2:
                half_peak = _rss_mb()
    else:
        chunk = 100_000
        values = np.random.default_rng(0).random(chunk)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            run.log_batch({"loss": values[:size]}, steps=np.arange(start, start + size, dtype=np.int64))
            if start <= n // 2 < start + chunk:
                half_peak = _rss_mb()
    run.end()
    elapsed = time.perf_counter() - t0
    peak = _rss_mb()
    stored = lt.get_run(run.id).metric_summaries["loss"].count
    return {"baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline, "seconds": elapsed,
            "second_half_mb": peak - half_peak, "n": n, "stored": stored, "run_id": run.id}


def _anon_mb() -> float:
    """Anonymous resident memory (what the process allocated, not the files it maps), in MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def history_child(directory: str, run_id: str, **_: Any) -> Result:
    """In its own process (numpy imported, as in a training or analysis script): read the whole series back
    three times, timed (the first read and the median); then once more while a thread samples anonymous
    memory every millisecond (apart, as the sampling thread slows the reads it watches): the peak growth of
    what the read allocates, and of RSS, which also counts SQLite's memory-mapped file pages (page cache)."""
    import threading

    import numpy as np  # noqa: F401 - present in the processes that read 10M-point series

    import labtrack as lt

    lt.set_store(store_dir(directory, "store-batch"))
    run = lt.get_run(run_id)
    _ = run.params
    baseline, anon_base = _rss_mb(), _anon_mb()
    seconds = []
    points = 0
    for _attempt in range(3):
        t0 = time.perf_counter()
        history = run.history("loss")
        seconds.append(time.perf_counter() - t0)
        points = len(history)
        del history
    peak_anon = anon_base
    reading = True

    def sample() -> None:
        nonlocal peak_anon
        while reading:
            peak_anon = max(peak_anon, _anon_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    history = run.history("loss")
    del history
    reading = False
    sampler.join()
    return {"first_s": seconds[0], "median_s": statistics.median(seconds), "points": points,
            "anon_growth_mb": peak_anon - anon_base, "rss_growth_mb": _rss_mb() - baseline}


def memory(directory: str, n: int, **_: Any) -> Result:
    result: Result = {"lost": 0, "n": n}
    for mode in ("metric", "batch"):
        child = run_child("memory_child", directory, {"n": n, "mode": mode})
        result[f"{mode}_n"] = n
        result[f"{mode}_rss_growth_mb"] = child["growth_mb"]
        result[f"{mode}_baseline_mb"] = child["baseline_mb"]
        result[f"{mode}_seconds"] = child["seconds"]
        result[f"{mode}_per_point_us"] = child["seconds"] / n * 1e6
        result[f"{mode}_second_half_mb"] = child["second_half_mb"]
        result["lost"] += n - child["stored"]
        if mode == "batch":
            read = run_child("history_child", directory, {"run_id": child["run_id"]})
            result["history_n"] = read["points"]
            result["lost"] += n - read["points"]
            for name in ("first_s", "median_s", "anon_growth_mb", "rss_growth_mb"):
                result[f"history_{name}"] = read[name]
    result["second_half_mb"] = max(result["metric_second_half_mb"], result["batch_second_half_mb"])
    return result
