"""Which file system a store's file is on, to warn when SQLite is put on a network one.

SQLite's WAL mode keeps its shared memory index in a file mapped by every process that opens the database,
which works only when all of them run on one host: over NFS or SMB, writers on two machines corrupt the
store or wait on locks that do not exist. A store there still opens, with one warning pointing to
PostgreSQL. Read from ``/proc/self/mountinfo`` (Linux); elsewhere nothing is said.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_of", "is_network", "warn_if_network"]

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs",
    "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs", "davfs", "fuse.davfs2",
})
_warned: set[str] = set()


def _mount_table() -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _unescape(field: str) -> str:
    """Mount points escape space, tab, newline and backslash as octal (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_of(path: str, table: str | None = None) -> str | None:
    """The type of the file system holding ``path`` (``ext4``, ``nfs4`` ...), from a mount table in the
    format of ``/proc/self/mountinfo`` (this process's by default); None when unknown."""
    table = _mount_table() if table is None else table
    if not table:
        return None
    target = os.path.abspath(path)
    best, found = -1, None
    for line in table.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = _unescape(fields[4])
        fstype = line.split(" - ", 1)[1].split()[0]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best:
            best, found = len(mount_point), fstype
    return found


def is_network(fstype: str) -> bool:
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("nfs")  # nfs, nfs4, nfsd ...


def warn_if_network(path: str) -> None:
    """Warn (once per path and process) when the SQLite file ``path`` is on a network file system."""
    key = os.path.abspath(path)
    if key in _warned:
        return
    _warned.add(key)
    fstype = filesystem_of(os.path.dirname(key) or key)
    if fstype is not None and is_network(fstype):
        warnings.warn(
            f"labtrack: the store {path} is on a network file system ({fstype}): SQLite needs every process "
            "that opens it on one host, and can lose or corrupt data otherwise — for a store shared by several "
            "machines, use PostgreSQL (LABTRACK_STORE=postgresql+psycopg://...)", RuntimeWarning, stacklevel=2,
        )
