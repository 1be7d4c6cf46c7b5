"""Many processes on one store at once: nothing lost, no "database is locked", the schema made once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

import labtrack as lt
from labtrack.store import open_store, resolve_location
from labtrack.store.schema import SCHEMA_REVISION

PROCESSES = 8
POINTS = 10_000

LOGGER = f"""
    import os, sys, time
    import labtrack as lt
    go = sys.argv[1]
    print("waiting", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    with lt.start_run("crowd", params={{"worker": int(sys.argv[2])}}) as run:
        for i in range({POINTS}):
            run.log_metric("loss", float(i), step=i)
            if i % 1000 == 999:
                run.flush()  # many short write transactions, interleaved with the other processes'
                time.sleep(0.005)
            if i % 250 == 0:
                run.set_tag("progress", str(i))
    print(run.id, flush=True)
"""

OPENER = """
    import os, sys, time
    from labtrack.store import open_store
    go = sys.argv[1]
    print("waiting", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    store = open_store(sys.argv[2])
    store.get_or_create_experiment("race")
    print(len(store.list_experiments()), flush=True)
    store.close()
"""


def start_together(tmp_path: Path, env: dict[str, str], body: str, args: list[list[str]]) -> list[tuple[int, str, str]]:
    """Start one process per argument list, release them at once, and return (returncode, stdout, stderr)."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(body))
    go = tmp_path / "go"
    processes = [
        subprocess.Popen([sys.executable, str(script), str(go), *extra], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for extra in args
    ]
    for process in processes:  # every one has imported labtrack and waits at the barrier
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "waiting":
            for p in processes:
                p.kill()
            raise AssertionError(f"a worker did not start: {line!r} {process.communicate()[1]}")
    go.write_text("go")
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append((process.returncode, out, err))
    return results


def test_eight_processes_logging_into_one_sqlite_store_lose_nothing(tmp_path: Path, python_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    open_store(str(store)).close()  # the schema exists; this test is about the concurrent writes
    env = {**python_env, "LABTRACK_STORE": str(store), "LABTRACK_FLUSH_INTERVAL": "0.05",
           "LABTRACK_HEARTBEAT_INTERVAL": "0.05"}
    results = start_together(tmp_path, env, LOGGER, [[str(i)] for i in range(PROCESSES)])
    for code, _, err in results:
        assert code == 0, err
        assert "database is locked" not in err
        assert "Traceback" not in err
        assert "labtrack:" not in err  # no warnings about failed writes either
    ids = {out.split()[-1] for _, out, _ in results}
    assert len(ids) == PROCESSES

    lt.set_store(str(store))
    runs = lt.search_runs("crowd")
    assert {r.id for r in runs} == ids
    assert sorted(r.params["worker"] for r in runs) == list(range(PROCESSES))
    for run in runs:
        assert run.status is lt.RunStatus.FINISHED
        summary = run.metric_summaries["loss"]
        assert (summary.count, summary.last, summary.last_step, summary.min) == (POINTS, POINTS - 1, POINTS - 1, 0)
        history = run.history("loss")
        assert history.steps == list(range(POINTS))
        assert history.values == [float(i) for i in range(POINTS)]
        assert run.tags["progress"] == str(max(i for i in range(POINTS) if i % 250 == 0))


@pytest.mark.parametrize("fresh", ["new-directory", "new-sqlite-file", "new-postgres-database"])
def test_processes_opening_a_new_store_at_once_create_the_schema_exactly_once(
    tmp_path: Path, python_env: dict[str, str], request: pytest.FixtureRequest, fresh: str
) -> None:
    if fresh == "new-directory":
        location = str(tmp_path / "new-store")
    elif fresh == "new-sqlite-file":
        location = f"sqlite:///{tmp_path / 'sub' / 'runs.db'}"
    else:
        location = request.getfixturevalue("postgres_url")
    results = start_together(tmp_path, python_env, OPENER, [[location]] * PROCESSES)
    for code, out, err in results:
        assert code == 0, err
        assert "locked" not in err
        assert out.split()[-1] == "1"  # each sees the one experiment they all created
    url, _, _ = resolve_location(location)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(SCHEMA_REVISION,)]
            assert conn.execute(text("SELECT count(*) FROM experiments")).scalar() == 1
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "experiments", "params", "tags", "metrics", "metric_chunks", "artifacts"} <= tables
    store = open_store(location)  # and the store opens normally afterwards
    try:
        assert [e.name for e, _ in store.list_experiments()] == ["race"]
    finally:
        store.close()
