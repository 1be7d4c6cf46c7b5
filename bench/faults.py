"""The labtrack side of the fault workloads: real faults, made as REAL-COMPONENTS.md says.

- ``kill``: a child logs points in a fast loop and acknowledges each one after ``log_metric`` returns (the
  count goes into a shared memory-mapped file, which survives the kill); it is SIGKILLed at a random
  moment, several times; after each kill a new process opens the store (``labtrack.Client`` recovers the
  dead process's spool) and counts acknowledged points missing and points stored twice.
- ``outage``: ``log_metric`` per call while another process holds ``BEGIN EXCLUSIVE`` on the SQLite store
  (the background writer tries, fails after the busy timeout, backs off, tries again), against the same
  loop with the store available; then the lock goes and everything must reach the store.

Both are run by ``bench.workloads_labtrack`` (their functions are in its ``WORKLOADS``).
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import time
import warnings
from typing import Any

from bench.children import run_child, spawn_child
from bench.fixtures import CHILD_TIMEOUT, store_dir

__all__ = ["kill", "kill_child", "kill_count", "outage"]

Result = dict[str, Any]
_ACK = struct.Struct("<q")


# -- SIGKILL at a random moment -------------------------------------------------------------------


def kill_child(directory: str, store: str, acks: str, **_: Any) -> Result:
    """Log points until killed; after each ``log_metric`` returns, the number of points logged goes to ``acks``."""
    import labtrack as lt

    lt.set_store(store)
    with open(acks, "r+b") as f:
        ack = mmap.mmap(f.fileno(), _ACK.size)
    note = _ACK.pack_into
    run = lt.start_run("kill", params={"lr": 0.1})
    print(run.id, flush=True)  # ready: the parent starts the clock
    log = run.log_metric
    for step in range(10**12):
        log("x", float(step), step=step)
        note(ack, 0, step + 1)
    return {}


def kill_count(directory: str, store: str, runs: dict[str, int], **_: Any) -> Result:
    """In a new process: open the store (recovering dead processes' spools), then count for each run (id ->
    points acknowledged) the acknowledged points missing and the points stored twice."""
    import labtrack as lt

    t0 = time.perf_counter()
    client = lt.Client(store)
    open_s = time.perf_counter() - t0
    counts = {}
    for run_id, acked in runs.items():
        run = client.get_run(run_id)
        history = run.history("x")
        steps = list(history.steps)
        unique = set(steps)
        counts[run_id] = {
            "stored": len(steps),
            "lost": acked - len(unique & set(range(acked))),
            "duplicated": len(steps) - len(unique),
            "unexpected": len([s for s in unique if s > acked]),  # only the point being logged (= acked) may be
            "wrong_values": sum(v != float(s) for s, v in zip(steps, history.values)),
            "status": run.status.value,
        }
    client.close()
    return {"open_s": open_s, "counts": counts}


def kill(directory: str, kills: int, earliest: float, latest: float, **_: Any) -> Result:
    """``kills`` rounds of: start a logging child, SIGKILL it ``earliest``..``latest`` s after it is ready,
    count in a new process. Every other round holds the writer off (the dead child's points are all still in
    its spool, so the recovery stores all of them); the others keep the default writer (most are stored)."""
    store = store_dir(directory)
    rng = random.Random()
    acked: dict[str, int] = {}
    result: Result = {"lost": 0, "duplicated": 0, "problems": []}
    opens, delays = [], []
    for round_ in range(kills):
        acks = os.path.join(directory, f"acks-{round_}")
        with open(acks, "wb") as f:
            f.write(b"\0" * _ACK.size)
        env = {"LABTRACK_FLUSH_INTERVAL": "3600", "LABTRACK_FLUSH_POINTS": str(10**12)} if round_ % 2 else {}
        child = spawn_child("kill_child", directory, {"store": store, "acks": acks}, env=env,
                            stderr=subprocess.DEVNULL)
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        if len(run_id) != 32:
            child.kill()
            child.wait()
            raise RuntimeError(f"the logging child did not start (said {run_id!r}, exit {child.returncode})")
        delay = rng.uniform(earliest, latest)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=CHILD_TIMEOUT)
        child.stdout.close()
        with open(acks, "rb") as f:
            acked[run_id] = _ACK.unpack(f.read())[0]
        delays.append(delay)
        counted = run_child("kill_count", directory, {"store": store, "runs": {run_id: acked[run_id]}})
        opens.append(counted["open_s"])
        _tally(result, counted["counts"], f"kill {round_ + 1}")
    final = run_child("kill_count", directory, {"store": store, "runs": acked})  # again, all runs: still once
    again: Result = {"lost": 0, "duplicated": 0, "problems": []}
    _tally(again, final["counts"], "recount")
    result["lost"] = max(result["lost"], again["lost"])
    result["duplicated"] = max(result["duplicated"], again["duplicated"])
    result["problems"] += again["problems"]
    total = sum(acked.values())
    result.update(
        n=total, kills=kills, open_s=max(opens), delays_s=delays,
        size=f"{kills} kills at {earliest}–{latest} s, {total:,} points acknowledged",
        open_n=f"slowest of {kills} (every other one with all points still in the spool)",
    )
    if not result["problems"]:
        del result["problems"]
    return result


def _tally(result: Result, counts: dict[str, dict[str, Any]], label: str) -> None:
    for run_id, c in counts.items():
        result["lost"] += c["lost"]
        result["duplicated"] += c["duplicated"]
        for what in ("lost", "duplicated", "unexpected", "wrong_values"):
            if c[what]:
                result["problems"].append(f"{label}: run {run_id[:8]}: {c[what]} points {what.replace('_', ' ')}")
        if c["status"] != "CRASHED":
            result["problems"].append(f"{label}: run {run_id[:8]} is {c['status']}, not CRASHED")


# -- a store outage -------------------------------------------------------------------------------

_LOCKER = """\
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # until the parent closes our stdin
db.execute("COMMIT")
"""


def outage(directory: str, n: int, rounds: int, **_: Any) -> Result:
    """``rounds`` times: ``n`` log_metric calls with the store available, then ``n`` while another process
    holds the SQLite store locked; medians of the per-call times. The writer tries every 0.1 s and gives up
    each try after 0.2 s (set here, before labtrack reads its settings)."""
    os.environ["LABTRACK_SQLITE_BUSY_TIMEOUT"] = "0.2"
    os.environ["LABTRACK_FLUSH_INTERVAL"] = "0.1"
    import labtrack as lt

    store = store_dir(directory)
    lt.set_store(store)
    with lt.start_run("bench") as warm:
        warm.log_metric("warm", 0.0, step=0)
    run = lt.start_run("bench")
    run.log_metric("warm", 0.0, step=0)
    run.flush()
    values = [float(i % 997) / 997.0 for i in range(n)]
    database = os.path.join(store, "labtrack.db")

    def loop(key: str, first: int) -> float:
        log = run.log_metric
        t0 = time.perf_counter()
        for i in range(n):
            log(key, values[i], step=first + i)
        return (time.perf_counter() - t0) / n * 1e6

    available, locked, catch_up = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for round_ in range(rounds):
            available.append(loop("available", round_ * n))
            run.flush()
            locker = subprocess.Popen([sys.executable, "-c", _LOCKER, database], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert locker.stdin is not None and locker.stdout is not None
            if locker.stdout.readline().strip() != "locked":
                raise RuntimeError("the locking process could not lock the store")
            try:
                locked.append(loop("outage", round_ * n))
            finally:
                locker.stdin.close()  # the lock goes
                locker.wait(timeout=CHILD_TIMEOUT)
            t0 = time.perf_counter()
            run.flush()
            catch_up.append(time.perf_counter() - t0)
        run.end()
        run.flush()
    warned = [str(w.message) for w in caught if "labtrack" in str(w.message)]
    stored = len(lt.get_run(run.id).history("available")) + len(lt.get_run(run.id).history("outage"))
    result: Result = {
        "n": n, "rounds": rounds, "available_us": statistics.median(available), "locked_us": statistics.median(locked),
        "catch_up_s": max(catch_up), "lost": 2 * n * rounds - stored, "warnings": warned[:3],
        "size": f"median of {rounds} × {n:,} calls", "catch_up_n": f"slowest of {rounds}",
    }
    result["ratio"] = result["locked_us"] / result["available_us"]
    if not warned:
        result["problems"] = ["no outage warning: the writer never found the store locked"]
    return result
