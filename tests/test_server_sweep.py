"""Sweeps through the tracking server (issue 14, item 7): 16 worker processes, half through each of two
server processes on one PostgreSQL (two machines' worth), run every configuration exactly once; the
claims are the database's, judged by its clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from server_helpers import start_server_process
from test_sweep import CROWD

import labtrack as lt


@pytest.mark.postgres
def test_sixteen_workers_through_two_servers_run_each_configuration_once(tmp_path: Path, python_env: dict[str, str],
                                                                         postgres_url: str) -> None:
    env = {k: v for k, v in python_env.items() if k != "LABTRACK_ARTIFACTS"}
    made = subprocess.run([sys.executable, "-m", "labtrack", "token", "create", "--name", "sweep", "--json",
                           "--store", postgres_url], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    servers = [start_server_process(postgres_url, env, tmp_path / f"server{i}.log",
                                    extra=("--artifacts", str(tmp_path / "artifacts"))) for i in range(2)]
    script = tmp_path / "crowd.py"
    script.write_text(textwrap.dedent(CROWD))
    marks, go = tmp_path / "marks", tmp_path / "go"
    marks.mkdir()
    configs = 48
    procs = []
    try:
        for i in range(16):
            worker = {**env, "LABTRACK_STORE": servers[i % 2].url, "LABTRACK_TOKEN": token,
                      "LABTRACK_HEARTBEAT_INTERVAL": "0.5", "LABTRACK_SPOOL_DIR": str(tmp_path / f"spool{i}")}
            procs.append(subprocess.Popen([sys.executable, str(script), str(marks), str(go), str(configs)], env=worker,
                                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "waiting", p.communicate()[1]
        go.write_text("go")
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        done = Counter(int(name.split("-")[0]) for name in os.listdir(marks))
        assert sorted(done) == list(range(configs)) and max(done.values()) == 1  # every one, none twice
        runs = lt.search_runs("crowd", store=postgres_url, max_results=10 * configs)
        assert sorted(r.params["i"] for r in runs) == list(range(configs))
        assert {r.status for r in runs} == {lt.RunStatus.FINISHED}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for server in servers:
            server.stop()
