"""The tracking server failing under a training run (issue 14, item 8), with real processes on loopback:
the server SIGKILLed mid-batch and started again, the server gone for 20 s, and two server processes on
one PostgreSQL answering alike. Every point the client logged is stored exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess, free_port, start_server_process

TRAIN = """
import sys, time
import labtrack as lt
steps, keys, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
with lt.start_run("faults", params={"steps": steps}) as run:
    print(run.id, flush=True)
    for step in range(steps):
        run.log_metrics({f"m{k}": step + k / 100 for k in range(keys)}, step=step)
        if step % 100 == 0:
            time.sleep(pause)
print("trained", flush=True)
"""


def _token(location: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "labtrack", "token", "create", "--name", "tests", "--role", "admin",
                           "--json", "--store", location], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["token"])


def _train(tmp_path: Path, env: dict[str, str], steps: int, keys: int, pause: float) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    return subprocess.Popen([sys.executable, str(script), str(steps), str(keys), str(pause)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stored(url: str, token: str, run_id: str, keys: int) -> tuple[str, dict[str, list[float]]]:
    from labtrack.store.remote import RemoteStore

    store = RemoteStore(url, token=token)
    try:
        record = store.get_run(run_id)
        return record.status.value, {f"m{k}": list(store.get_metric_history(run_id, f"m{k}").steps) for k in range(keys)}
    finally:
        store.close()


def _client_env(python_env: dict[str, str], url: str, token: str, tmp_path: Path) -> dict[str, str]:
    return {**python_env, "LABTRACK_STORE": url, "LABTRACK_TOKEN": token, "LABTRACK_FLUSH_INTERVAL": "0.05",
            "LABTRACK_SPOOL_DIR": str(tmp_path / "spool"), "LABTRACK_FLUSH_TIMEOUT": "120"}


def _serve_and_train(tmp_path: Path, python_env: dict[str, str], steps: int, keys: int, pause: float,
                     ) -> tuple[str, str, int, ServerProcess, subprocess.Popen[str]]:
    """A server process on a new store, and a training script logging through it: (store, token, port,
    server, client)."""
    location = str(tmp_path / "store")
    token = _token(location, python_env)
    port = free_port()
    server = start_server_process(location, python_env, tmp_path / "server.log", port=port)
    client = _train(tmp_path, _client_env(python_env, server.url, token, tmp_path), steps, keys, pause)
    return location, token, port, server, client


def test_a_server_killed_mid_batch_and_started_again_stores_every_point_once(tmp_path: Path,
                                                                            python_env: dict[str, str]) -> None:
    steps, keys = 6000, 8
    location, token, port, server, client = _serve_and_train(tmp_path, python_env, steps, keys, 0.05)
    try:
        run_id = client.stdout.readline().strip()  # type: ignore[union-attr]
        for _ in range(2):  # twice, while batches are in flight
            time.sleep(0.6)
            server.kill()
            time.sleep(0.5)
            server = start_server_process(location, python_env, tmp_path / "server.log", port=port)
        _out, err = client.communicate(timeout=180)
        assert client.returncode == 0, err
        status, series = _stored(server.url, token, run_id, keys)
        assert status == "FINISHED"
        for key, stored_steps in series.items():
            assert stored_steps == list(range(steps)), (key, len(stored_steps))  # all there, none twice
    finally:
        client.kill()
        server.stop()


@pytest.mark.slow
def test_a_server_gone_for_20_seconds_loses_nothing_and_the_run_finishes(tmp_path: Path,
                                                                        python_env: dict[str, str]) -> None:
    steps, keys = 3000, 4
    location, token, port, server, client = _serve_and_train(tmp_path, python_env, steps, keys, 0.1)
    try:
        run_id = client.stdout.readline().strip()  # type: ignore[union-attr]
        time.sleep(0.5)
        server.kill()
        assert client.stdout.readline().strip() == "trained"  # type: ignore[union-attr]  # training went on
        time.sleep(20)
        server = start_server_process(location, python_env, tmp_path / "server.log", port=port)
        _out, err = client.communicate(timeout=180)
        assert client.returncode == 0, err
        assert "training goes on" in err  # it said so, once the store went away
        status, series = _stored(server.url, token, run_id, keys)
        assert status == "FINISHED"
        assert all(stored == list(range(steps)) for stored in series.values())
    finally:
        client.kill()
        server.stop()


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_answer_alike(tmp_path: Path, python_env: dict[str, str],
                                                    postgres_url: str) -> None:
    env = {k: v for k, v in python_env.items() if k != "LABTRACK_ARTIFACTS"}
    token = _token(postgres_url, env)
    extra = ("--artifacts", str(tmp_path / "artifacts"))
    servers: list[ServerProcess] = [
        start_server_process(postgres_url, env, tmp_path / f"server{i}.log", extra=extra) for i in range(2)]
    try:
        ids = []
        for i in range(4):  # runs recorded through one server, then the other
            client = _train(tmp_path, _client_env(env, servers[i % 2].url, token, tmp_path), 300, 2, 0.0)
            out, err = client.communicate(timeout=120)
            assert client.returncode == 0, err
            ids.append(out.split()[0])
        headers = {"Authorization": f"Bearer {token}"}
        answers = []
        for server in servers:
            search = httpx.post(server.url + "/api/v1/runs/search", headers=headers,
                                json={"experiments": ["faults"], "order_by": [], "max_results": None, "offset": 0,
                                      "run_key": None, "filter": None, "stale_before": 0.0, "lifecycle": "active"})
            records = httpx.post(server.url + "/api/v1/runs/get", headers=headers, json=sorted(ids))
            answers.append((search.json(), records.json()))
        assert answers[0] == answers[1]
        assert sorted(answers[0][0]) == sorted(ids)
        assert all(r["status"] == "FINISHED" and r["metrics"]["m1"]["count"] == 300 for r in answers[0][1])
    finally:
        for server in servers:
            server.stop()


def test_runs_recorded_on_a_node_that_never_reached_the_server_are_shipped_by_sync(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    location = str(tmp_path / "store")
    token = _token(location, python_env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"  # nothing listens yet: the node is cut off
    node = {**_client_env(python_env, url, token, tmp_path), "LABTRACK_SPOOL_DIR": str(tmp_path / "node-spool"),
            "LABTRACK_FLUSH_TIMEOUT": "1"}
    client = _train(tmp_path, node, 500, 3, 0.0)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0 and "training goes on" in err, err
    run_id = out.split()[0]
    [carried] = list((tmp_path / "node-spool").iterdir())  # the spool directory, carried to a connected machine
    server = start_server_process(location, python_env, tmp_path / "server.log", port=port)
    try:
        here = {**_client_env(python_env, url, token, tmp_path), "LABTRACK_SPOOL_DIR": str(tmp_path / "other")}
        synced = subprocess.run([sys.executable, "-m", "labtrack", "sync", "--spool", str(carried), "--json"], env=here,
                                capture_output=True, text=True, timeout=120)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["points"] == 1500
        status, series = _stored(server.url, token, run_id, 3)
        assert status == "FINISHED" and all(s == list(range(500)) for s in series.values())
        again = subprocess.run([sys.executable, "-m", "labtrack", "sync", "--spool", str(carried), "--json"],
                               env=here, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and json.loads(again.stdout)["points"] == 0  # nothing twice
    finally:
        server.stop()
