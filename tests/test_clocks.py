"""Liveness and sweep leases are judged by the store's clock, never the reader's (issue 12, item 5).

Each process with a wrong clock is a real process whose ``time.time`` is shifted before labtrack is
imported (what a machine with a drifting clock looks like to Python); a writer on "another host" has its
host name changed the same way, so that its run is judged by heartbeat rather than by its process. Run
durations use the monotonic clock: tests/test_lifecycle.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import labtrack as lt
from labtrack.core.model import ClaimState
from labtrack.store import open_store

SHIFTED = """
import os, platform, sys, time
_real = time.time
shift = float(os.environ["CLOCK_SHIFT"])
time.time = lambda: _real() + shift
if os.environ.get("OTHER_HOST"):
    platform.node = lambda: "another-host"
import labtrack as lt
lt.set_store(sys.argv[1])
"""

WRITER = SHIFTED + """
run = lt.start_run("clocks")
run.log_metric("m", 1.0)
lt.flush()
print(run.id, flush=True)
sys.stdin.read()  # alive until the test closes stdin
run.end()
"""

READER = SHIFTED + """
run = lt.get_run(sys.argv[2])
running = [r.id for r in lt.search_runs("clocks", filter="status = 'RUNNING'")]
print(run.status.value, sys.argv[2] in running)
"""

CLAIMER = SHIFTED + """
from labtrack.store import open_store
store = open_store(sys.argv[1])
print(store.claim(sys.argv[2], "other-sweep/" + platform.node() + "/" + str(os.getpid()), 60.0, store.now()).value)
"""


def _python(code: str, args: list[str], env: dict[str, str], shift: float, other_host: bool = False,
            **options: object) -> subprocess.Popen[str]:
    env = {**env, "CLOCK_SHIFT": str(shift), **({"OTHER_HOST": "1"} if other_host else {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **options)  # type: ignore[call-overload]


def _output(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip()


@pytest.mark.parametrize(("writer_shift", "reader_shift"), [(0.0, 300.0), (-300.0, 0.0)])
@pytest.mark.postgres
def test_a_run_of_another_host_is_judged_by_the_servers_clock(
        postgres_url: str, python_env: dict[str, str], writer_shift: float, reader_shift: float) -> None:
    writer = _python(WRITER, [postgres_url], python_env, writer_shift, other_host=True, stdin=subprocess.PIPE)
    try:
        assert writer.stdout is not None
        run_id = writer.stdout.readline().strip()
        assert len(run_id) == 32, writer.stderr.read() if writer.stderr else ""
        reader = _python(READER, [postgres_url, run_id], python_env, reader_shift)
        assert _output(reader) == "RUNNING True"  # not CRASHED, and the filter agrees
        lt.set_store(postgres_url)
        assert lt.get_run(run_id).status is lt.RunStatus.RUNNING  # and nothing marked it so in the store
    finally:
        _output(writer)
    assert lt.get_run(run_id).status is lt.RunStatus.FINISHED


def test_a_reader_whose_clock_is_ahead_leaves_a_live_run_of_this_host_alone(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    """On SQLite every process shares the host's clock, so a reader can only be "ahead" after a clock step:
    a run of this host is judged by its process, which needs no clock."""
    location = str(tmp_path / "store")
    lt.set_store(location)
    run = lt.start_run("clocks")
    run.log_metric("m", 1.0)
    lt.flush()
    reader = _python(READER, [location, run.id], python_env, 300.0)
    assert _output(reader).startswith("RUNNING ")
    assert lt.get_run(run.id).status is lt.RunStatus.RUNNING  # the reader did not record it CRASHED
    run.end()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_sweep_worker_whose_clock_is_ahead_does_not_take_a_held_configuration(
        backend: str, tmp_path: Path, python_env: dict[str, str], request: pytest.FixtureRequest) -> None:
    location = str(tmp_path / "store") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(location)
    import os
    import platform

    owner = f"sweep-a/{platform.node()}/{os.getpid()}"  # this process: alive, holding a 60 s lease
    assert store.claim("k" * 64, owner, 60.0, store.now()) is ClaimState.CLAIMED
    ahead = _python(CLAIMER, [location, "k" * 64], python_env, 120.0)
    assert _output(ahead) == ClaimState.BUSY.value
    store.release_claim("k" * 64, owner, done=False)  # and once released (or expired), it is free
    assert _output(_python(CLAIMER, [location, "k" * 64], python_env, 120.0)) == ClaimState.CLAIMED.value
    store.close()


@pytest.mark.postgres
def test_the_store_clock_follows_the_server_when_this_hosts_clock_steps(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(postgres_url)
    before = store.now()
    assert abs(before - time.time()) < 5  # the same machine here
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # a step of an hour, after the offset was measured
    assert abs(store.now() - before) < 5  # measured again at once: still the server's time
    store.close()
