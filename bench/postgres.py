"""A throw-away PostgreSQL cluster for the PostgreSQL workloads, from Debian's server binaries.

Started once by ``python -m bench`` when a selected workload needs it and stopped at the end: ``initdb``
into a temporary directory, then ``pg_ctl start`` listening on 127.0.0.1 only. Durability is left on
(``fsync``, ``synchronous_commit`` and ``full_page_writes`` keep their defaults): the numbers are those of a
server that keeps what it acknowledges. As root, the server runs as the ``postgres`` user (``initdb``
refuses root). Each side of a workload creates databases of its own on it (see ``create_database``).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile

__all__ = ["Cluster", "bindir"]


def bindir() -> str | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True,
                               timeout=30).stdout.strip()
        if os.path.exists(os.path.join(found, "initdb")):
            return found
    except (OSError, subprocess.SubprocessError):
        pass
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One server on loopback; ``start()`` returns the maintenance database's address (``host:port``)."""

    def __init__(self) -> None:
        self.dir: str | None = None
        self.data = ""
        self.port = 0
        self.version = ""
        self.bindir = bindir()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> str:
        command = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"{os.path.basename(args[0])}: {exc}") from exc
        if out.returncode != 0:
            lines = [line for line in (out.stderr or out.stdout).splitlines() if line.strip()]
            raise RuntimeError(f"{os.path.basename(args[0])} failed: {lines[-1] if lines else out.returncode}")
        return out.stdout

    def start(self) -> str:
        """Create and start the cluster; raises RuntimeError saying why it could not."""
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="labtrack-bench-pg-")  # /tmp: the postgres user can reach it
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = os.path.join(self.bindir, "initdb")
        self._run(initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync")  # initdb's own files; the server's writes are fsynced as usual
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                  "-o", options, "start")
        said = self._run(os.path.join(self.bindir, "postgres"), "--version")  # postgres (PostgreSQL) 15.8 (Debian ...)
        found = re.search(r"\(PostgreSQL\) (\S+)", said)
        self.version = found.group(1) if found else said.strip()
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            if self.bindir and os.path.exists(os.path.join(self.data, "postmaster.pid")):
                self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass  # not running
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
