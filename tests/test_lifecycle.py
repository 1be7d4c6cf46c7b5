"""How runs end: normally, on an exception, on SIGTERM / Ctrl-C, and when the process just dies.

Each scenario runs a real Python process on a SQLite store; this process then reads the run back the
way a user would (``labtrack.get_run``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import wait_for

import labtrack as lt
from labtrack import RunStatus

POINTS_BEFORE_SIGNAL = 2000


class Script:
    """A Python script run in a subprocess against ``store``; it prints its run id on the first line."""

    def __init__(self, tmp_path: Path, env: dict[str, str], body: str, extra_env: dict[str, str] | None = None):
        self.store = str(tmp_path / "store")
        self.path = tmp_path / "script.py"
        self.path.write_text(textwrap.dedent(body))
        self.env = {**env, "LABTRACK_STORE": self.store, **(extra_env or {})}
        self.cwd = tmp_path

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(self.path)], env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=60)

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(self.path)], env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def read_run(self, run_id: str) -> lt.Run:
        lt.set_store(self.store)
        return lt.get_run(run_id)


def first_line(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.stdout, f"no output; stderr:\n{completed.stderr}"
    return completed.stdout.splitlines()[0].strip()


def expect_line(process: subprocess.Popen[str], expected: str | None = None) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line or (expected is not None and line != expected):
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"expected {expected or 'a line'!r} from the script, got {line!r}; stderr:\n{err}")
    return line


# -- normal ends and exceptions -------------------------------------------------------------------


def test_leaving_the_with_block_normally_gives_finished(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, """
        import labtrack as lt
        with lt.start_run("life", params={"a": 1}) as run:
            print(run.id, flush=True)
            for i in range(10):
                run.log_metric("m", i)
    """)
    done = script.run()
    assert done.returncode == 0, done.stderr
    run = script.read_run(first_line(done))
    assert run.status is RunStatus.FINISHED
    assert run.end_time is not None and run.end_time >= run.start_time
    assert run.error is None
    assert len(run.history("m")) == 10


def test_an_exception_in_the_with_block_gives_failed_with_type_and_message(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    script = Script(tmp_path, python_env, """
        import labtrack as lt
        with lt.start_run("life") as run:
            print(run.id, flush=True)
            run.log_metric("m", 1.0)
            raise ValueError("learning rate exploded")
    """)
    done = script.run()
    assert done.returncode == 1
    assert "learning rate exploded" in done.stderr  # the user still sees their traceback
    run = script.read_run(first_line(done))
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "learning rate exploded"
    assert run.metrics == {"m": 1.0}


def test_sys_exit_0_in_the_with_block_gives_finished(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, """
        import sys
        import labtrack as lt
        with lt.start_run("life") as run:
            print(run.id, flush=True)
            sys.exit(0)
    """)
    done = script.run()
    assert done.returncode == 0, done.stderr
    assert script.read_run(first_line(done)).status is RunStatus.FINISHED


def test_a_run_started_without_with_is_finished_at_normal_exit(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, """
        import labtrack as lt
        run = lt.start_run("life")
        print(run.id, flush=True)
        for i in range(100):
            lt.log_metric("m", i)
    """)
    done = script.run()
    assert done.returncode == 0, done.stderr
    run = script.read_run(first_line(done))
    assert run.status is RunStatus.FINISHED
    assert len(run.history("m")) == 100


def test_an_uncaught_exception_without_with_gives_failed(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, """
        import labtrack as lt
        run = lt.start_run("life")
        print(run.id, flush=True)
        lt.log_metric("m", 3.0)
        raise KeyError("missing column")
    """)
    done = script.run()
    assert done.returncode == 1
    run = script.read_run(first_line(done))
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "KeyError" and "missing column" in run.error["message"]
    assert run.metrics == {"m": 3.0}


# -- signals --------------------------------------------------------------------------------------

LOOP = f"""
    import time
    import labtrack as lt
    {{start}}
        print(run.id, flush=True)
        i = 0
        while True:
            run.log_metric("x", float(i), step=i)
            i += 1
            if i == {POINTS_BEFORE_SIGNAL}:
                run.flush()
                print("ready", flush=True)
            if i >= {POINTS_BEFORE_SIGNAL}:
                time.sleep(0.0005)
"""
WITH_BLOCK = 'with lt.start_run("life") as run:'
PLAIN = 'run = lt.start_run("life")\n    if True:'


@pytest.mark.parametrize(
    ("signum", "start"),
    [
        (signal.SIGTERM, WITH_BLOCK),
        (signal.SIGTERM, PLAIN),
        (signal.SIGINT, WITH_BLOCK),
        (signal.SIGINT, PLAIN),
    ],
    ids=["sigterm-with", "sigterm-plain", "ctrl-c-with", "ctrl-c-plain"],
)
def test_a_signal_while_logging_gives_killed_and_keeps_every_point_logged(
    tmp_path: Path, python_env: dict[str, str], signum: int, start: str
) -> None:
    # A long flush interval: the points after "ready" reach the store only if the signal path flushes.
    script = Script(tmp_path, python_env, LOOP.format(start=start), {"LABTRACK_FLUSH_INTERVAL": "3600"})
    process = script.start()
    run_id = expect_line(process)
    expect_line(process, "ready")
    time.sleep(0.2)  # let it log past the flushed points
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    run = script.read_run(run_id)
    assert run.status is RunStatus.KILLED, f"status {run.status}; stderr:\n{err}"
    history = run.history("x")
    assert len(history) > POINTS_BEFORE_SIGNAL  # the unflushed points logged after "ready" were written too
    assert history.steps == list(range(len(history)))  # and none is missing in between
    assert history.values == [float(s) for s in history.steps]


def test_a_users_own_sigterm_handler_is_called(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, """
        import signal, sys, time
        import labtrack as lt
        def handler(signum, frame):
            print("user handler", flush=True)
            sys.exit(5)
        signal.signal(signal.SIGTERM, handler)
        with lt.start_run("life") as run:
            print(run.id, flush=True)
            print("ready", flush=True)
            while True:
                time.sleep(0.01)
    """)
    process = script.start()
    run_id = expect_line(process)
    expect_line(process, "ready")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert "user handler" in out, err
    assert process.returncode == 5
    assert script.read_run(run_id).status is RunStatus.KILLED


# -- processes that die without ending their run ---------------------------------------------------

SLEEPER = """
    import time
    import labtrack as lt
    run = lt.start_run("life")
    print(run.id, flush=True)
    for i in range(50):
        run.log_metric("x", float(i))
    run.flush()
    print("ready", flush=True)
    time.sleep(600)
"""


def test_sigkill_on_this_host_shows_crashed_at_once(tmp_path: Path, python_env: dict[str, str]) -> None:
    script = Script(tmp_path, python_env, SLEEPER)
    process = script.start()
    run_id = expect_line(process)
    expect_line(process, "ready")
    assert script.read_run(run_id).status is RunStatus.RUNNING  # alive: running
    process.kill()
    process.communicate(timeout=30)
    run = script.read_run(run_id)
    assert run.status is RunStatus.CRASHED
    assert len(run.history("x")) == 50
    assert [r.status for r in lt.search_runs("life")] == [RunStatus.CRASHED]


def test_sigkill_on_another_host_shows_crashed_once_the_heartbeat_is_stale(
    tmp_path: Path, python_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_TIMEOUT", "2")  # the reader's setting, read on first use
    script = Script(tmp_path, python_env, SLEEPER, {"LABTRACK_HEARTBEAT_INTERVAL": "0.1"})
    process = script.start()
    run_id = expect_line(process)
    expect_line(process, "ready")
    with sqlite3.connect(Path(script.store) / "labtrack.db") as db:  # the run now seems to come from elsewhere
        db.execute("UPDATE runs SET host = 'another-machine' WHERE id = ?", (run_id,))
    time.sleep(0.5)
    assert script.read_run(run_id).status is RunStatus.RUNNING  # heartbeats keep it alive
    process.kill()
    process.communicate(timeout=30)
    # No pid check is possible for another host: the stale heartbeat alone must end it.
    wait_for(lambda: script.read_run(run_id).status is RunStatus.CRASHED, timeout=30)
    assert lt.get_run(run_id).status is RunStatus.CRASHED
    with sqlite3.connect(Path(script.store) / "labtrack.db") as db:  # recorded, so every reader agrees
        assert db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() == ("CRASHED",)


# -- the module-level API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: lt.log_param("x", 1),
        lambda: lt.log_params({"x": 1}),
        lambda: lt.log_metric("m", 1.0),
        lambda: lt.log_metrics({"m": 1.0}),
        lambda: lt.set_tag("t", "v"),
        lambda: lt.set_tags({"t": "v"}),
        lambda: lt.log_text("x", "a.txt"),
        lambda: lt.log_dict({"a": 1}, "a.json"),
        lambda: lt.end_run(),
    ],
    ids=["log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "log_text", "log_dict",
         "end_run"],
)
def test_module_level_calls_without_an_active_run_raise_no_active_run_error(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(lt.NoActiveRunError) as caught:
        call()
    assert "start_run" in str(caught.value)
    assert lt.search_runs() == []  # nothing silently created


def test_module_level_log_artifact_without_an_active_run_raises(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(lt.NoActiveRunError, match="start_run"):
        lt.log_artifact(tmp_path / "f.txt")


def test_active_run_is_the_started_run_until_it_ends() -> None:
    assert lt.active_run() is None
    with lt.start_run("life") as run:
        assert lt.active_run() is run
        lt.log_metric("m", 1.0)
        lt.set_tag("t", "v")
    assert lt.active_run() is None
    assert lt.get_run(run.id).metrics == {"m": 1.0}
    assert lt.get_run(run.id).tags["t"] == "v"


def test_end_run_ends_the_active_run_with_the_given_status() -> None:
    run = lt.start_run("life")
    lt.end_run("KILLED")
    assert lt.active_run() is None
    assert lt.get_run(run.id).status is RunStatus.KILLED


def test_start_run_while_a_run_is_active_without_nested_raises_invalid_input() -> None:
    with lt.start_run("life") as outer:
        with pytest.raises(lt.InvalidInput) as caught:
            lt.start_run("life")
        assert "nested" in str(caught.value)
        assert lt.active_run() is outer
    assert len(lt.search_runs("life")) == 1


def test_nested_runs_are_tagged_with_their_parent_and_restore_it() -> None:
    with lt.start_run("life") as parent:
        with lt.start_run("life", nested=True) as child:
            assert lt.active_run() is child
            lt.log_metric("fold", 1.0)
        assert lt.active_run() is parent
    assert lt.get_run(child.id).tags["labtrack.parent"] == parent.id
    assert "labtrack.parent" not in lt.get_run(parent.id).tags
    assert lt.get_run(child.id).metrics == {"fold": 1.0}
    assert lt.get_run(parent.id).metrics == {}
    assert {r.status for r in lt.search_runs("life")} == {RunStatus.FINISHED}


def test_a_finished_run_is_not_running_in_another_process_either(tmp_path: Path, python_env: dict[str, str]) -> None:
    with lt.start_run("life") as run:
        run.log_metric("m", 1.0)
    code = f"import labtrack as lt; r = lt.get_run({run.id[:12]!r}); print(r.status, r.metrics['m'])"
    done = subprocess.run([sys.executable, "-c", code], env={**python_env, "LABTRACK_STORE": str(Path(".labtrack").resolve())},
                          capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["FINISHED", "1.0"]


def test_one_param_or_tag_at_a_time_is_stored_as_given_and_a_changed_param_refused() -> None:
    """log_param/set_tag write one key without the dict path: every kind of value comes back as itself."""
    import math

    values = {"f": 0.1, "big": 1e300, "neg": -0.0, "nan": math.nan, "inf": -math.inf, "i": 10**30, "b": True,
              "none": None, "s": 'quote " back\\slash é \u2028', "list": [1, "a", None], "dict": {"k": [1.5]}}
    with lt.start_run("one-at-a-time") as run:
        for key, value in values.items():
            run.log_param(key, value)
            run.set_tag(key, str(value))
        run.log_param("f", 0.1)  # the same value again is fine
        with pytest.raises(lt.ParamConflict, match="'f'"):
            run.log_param("f", 0.2)
    stored = lt.get_run(run.id)
    params, tags = stored.params, stored.tags
    assert math.isnan(params.pop("nan")) and math.copysign(1, params["neg"]) == -1
    assert tags == {key: str(value) for key, value in values.items()}
    values.pop("nan")
    assert params == values


def test_a_finished_run_is_not_relabelled_and_ending_it_again_the_same_way_is_harmless() -> None:
    with lt.start_run("relabel") as run:
        run.log_metric("m", 1.0)
    run.end()  # the same status again: nothing changes
    with pytest.raises(lt.InvalidInput, match="already ended FINISHED") as caught:
        run.end("FAILED")
    assert caught.value.field == "status"
    with pytest.raises(lt.InvalidInput, match="already ended FINISHED"):
        lt.get_run(run.id).end("KILLED")  # through a handle from the store too
    assert lt.get_run(run.id).status is lt.RunStatus.FINISHED


def test_an_exception_after_an_explicit_end_inside_the_with_block_keeps_the_end_and_the_exception() -> None:
    with pytest.raises(ZeroDivisionError):
        with lt.start_run("ended-early") as run:
            run.end()
            1 / 0  # noqa: B018
    assert lt.get_run(run.id).status is lt.RunStatus.FINISHED


def test_logging_to_a_run_after_its_with_block_is_refused_with_a_clear_error() -> None:
    with lt.start_run("after") as run:
        run.log_metric("m", 1.0)
    for call in (lambda: run.log_metric("m", 2.0), lambda: run.log_metrics({"m": 2.0}),
                 lambda: run.log_batch({"m": [2.0]}), lambda: run.log_param("p", 1),
                 lambda: run.log_params({"p": 1}), lambda: run.log_text("x", "a.txt")):
        with pytest.raises(lt.InvalidInput, match="has ended"):
            call()
    run.set_tag("reviewed", "yes")  # annotations stay possible after the end
    stored = lt.get_run(run.id)
    assert stored.history("m").values == [1.0] and stored.params == {} and stored.tags["reviewed"] == "yes"


def test_a_wall_clock_step_during_a_run_does_not_change_its_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's clock is stepped back an hour while the run goes on (NTP, a VM resumed). Stepping the
    real clock would disturb everything else on the machine, so this test moves labtrack's view of the wall
    clock (time.time) and nothing else: the monotonic clock goes on as it does."""
    import time as real_time

    with lt.start_run("clock") as run:
        run.log_metric("m", 1.0)
        real_time.sleep(0.05)
        stepped = real_time.time() - 3600
        monkeypatch.setattr(real_time, "time", lambda: stepped)
    monkeypatch.undo()
    stored = lt.get_run(run.id)
    duration = (stored.end_time or 0) - stored.start_time
    assert 0.05 <= duration < 5, duration
