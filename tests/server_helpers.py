"""A real tracking server on loopback for tests: uvicorn serving ``labtrack.server.app`` over HTTP.

``serve_in_thread`` runs it in a thread of the test process (real sockets and HTTP, started in a few
milliseconds: what the contract suite uses for its new, empty store per test); ``start_server_process``
runs `labtrack server` as a subprocess that a test can SIGKILL and start again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from labtrack.core.tokens import Role
from labtrack.store import Store, open_store


@dataclass
class Served:
    url: str
    token: str
    store: Store  # the server's own store (the database behind it)
    app: Any  # the ASGI app it serves


@contextmanager
def serve_in_thread(location: str, *, artifacts: str | None = None, role: Role = Role.ADMIN,
                    open_access: bool = False, **options: Any) -> Iterator[Served]:
    import uvicorn

    from labtrack.server.app import create_app

    store = open_store(location, artifacts=artifacts)
    token, _ = store.create_token("tests", role)
    app = create_app(store, open_access=open_access, **options)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", token, store, app)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def use_server(served: Served, monkeypatch: Any) -> None:
    """Point this process's labtrack at the served store, with its token, as a user's environment would."""
    import labtrack as lt

    monkeypatch.setenv("LABTRACK_TOKEN", served.token)
    lt.set_store(served.url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server_process(location: str, env: dict[str, str], log: Path, *, port: int | None = None,
                         extra: tuple[str, ...] = ()) -> ServerProcess:
    """`labtrack server --store LOCATION` as a subprocess, once its /ready answers."""
    port = port or free_port()
    out = open(log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "labtrack", "server", "--store", location, "--port", str(port),
                                *extra], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"labtrack server exited: {log.read_text()}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return ServerProcess(url, process, log)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"labtrack server did not get ready: {log.read_text()}")
        time.sleep(0.05)


def environ_without_labtrack() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LABTRACK_") or k.startswith("LABTRACK_TEST")}
