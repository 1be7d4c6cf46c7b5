"""`labtrack server` as a new user starts it (issue 14): a real server process on loopback, a training
script in another process pointed at it with LABTRACK_STORE and LABTRACK_TOKEN, and `labtrack token`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from server_helpers import start_server_process

TRAIN = """
import labtrack as lt
with lt.start_run("remote-mnist", params={"lr": 0.01}) as run:
    for step in range(200):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_text("weights", "model.txt")
print(run.id)
"""


def labtrack(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "labtrack", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_a_training_script_records_through_the_server_started_as_the_readme_says(
        tmp_path: Path, python_env: dict[str, str]) -> None:
    store = str(tmp_path / "team-store")
    server = start_server_process(store, python_env, tmp_path / "server.log")
    try:
        log = (tmp_path / "server.log").read_text()
        found = re.search(r"export LABTRACK_STORE=(\S+) LABTRACK_TOKEN=(lt_\S+)", log)
        assert found, log
        client = {**python_env, "LABTRACK_STORE": found.group(1), "LABTRACK_TOKEN": found.group(2)}
        (tmp_path / "train.py").write_text(TRAIN)
        trained = subprocess.run([sys.executable, str(tmp_path / "train.py")], env=client, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        assert trained.returncode == 0, trained.stderr
        run_id = trained.stdout.strip()
        runs = json.loads(labtrack("runs", "remote-mnist", "--json", env=client).stdout)
        assert [r["id"] for r in runs] == [run_id] and runs[0]["status"] == "FINISHED"
        assert runs[0]["metrics"]["loss"]["count"] == 200
        assert labtrack("artifacts", run_id[:8], "--download", str(tmp_path / "out"), env=client).returncode == 0
        assert (tmp_path / "out" / "model.txt").read_text() == "weights"
        without = {**client, "LABTRACK_TOKEN": ""}
        refused = labtrack("runs", env=without, check=False)
        assert refused.returncode == 1 and "needs a token" in refused.stderr
        secret = found.group(2)[len("lt_") + 11:].encode()  # after lt_<10-character id>_ (it may hold "_")
        stored = b"".join(p.read_bytes() for p in (tmp_path / "team-store").rglob("*") if p.is_file())
        assert secret not in stored  # neither as the token's row nor in the run's records
    finally:
        server.stop()
    again = start_server_process(store, python_env, tmp_path / "again.log")  # tokens exist: none is minted
    again.stop()
    assert "LABTRACK_TOKEN=" not in (tmp_path / "again.log").read_text()


def test_tokens_are_created_listed_and_revoked_from_the_cli(tmp_path: Path, python_env: dict[str, str]) -> None:
    env = {**python_env, "LABTRACK_STORE": str(tmp_path / "store")}
    created = json.loads(labtrack("token", "create", "--name", "ci", "--role", "reader", "--expires", "30d", "--json",
                                  env=env).stdout)
    assert created["token"].startswith("lt_" + created["id"] + "_") and created["role"] == "reader"
    listed = labtrack("token", "list", env=env).stdout
    assert "ci" in listed and "reader" in listed and created["token"] not in listed
    assert "revoked" in labtrack("token", "revoke", "ci", env=env).stdout
    assert "revoked" in labtrack("token", "list", env=env).stdout
    bad = labtrack("token", "create", "--name", "x", "--expires", "soon", env=env, check=False)
    assert bad.returncode == 1 and "expires" in bad.stderr


def test_the_server_refuses_to_serve_the_network_without_auth_unless_told(tmp_path: Path,
                                                                        python_env: dict[str, str]) -> None:
    done = labtrack("server", "--store", str(tmp_path / "s"), "--host", "0.0.0.0", "--no-auth", env=python_env,
                    check=False)
    assert done.returncode == 1 and "--public-without-auth" in done.stderr


def test_the_server_refuses_an_outdated_store_and_names_the_command(tmp_path: Path, python_env: dict[str, str]) -> None:
    from sqlalchemy import create_engine, text

    store = tmp_path / "old"
    labtrack("token", "list", "--store", str(store), env=python_env)  # creates the store
    engine = create_engine(f"sqlite:///{store / 'labtrack.db'}")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE tokens"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
    engine.dispose()
    done = labtrack("server", "--store", str(store), env=python_env, check=False)
    assert done.returncode == 1 and f"labtrack db upgrade --store sqlite:///{store}/labtrack.db" in " ".join(
        done.stderr.split())


def test_a_server_with_several_worker_processes_answers_as_one(tmp_path: Path, python_env: dict[str, str]) -> None:
    store = str(tmp_path / "store")
    token = json.loads(labtrack("token", "create", "--name", "t", "--role", "admin", "--json", "--store", store,
                                env=python_env).stdout)["token"]
    server = start_server_process(store, python_env, tmp_path / "server.log", extra=("--workers", "2"))
    try:
        client = {**python_env, "LABTRACK_STORE": server.url, "LABTRACK_TOKEN": token}
        (tmp_path / "train.py").write_text(TRAIN)
        for _ in range(3):
            done = subprocess.run([sys.executable, str(tmp_path / "train.py")], env=client, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
        runs = json.loads(labtrack("runs", "--json", env=client).stdout)
        assert len(runs) == 3 and {r["metrics"]["loss"]["count"] for r in runs} == {200}
    finally:
        server.stop()
