"""A SQLite store on a network file system gets one warning pointing to PostgreSQL: SQLite's WAL mode needs
every process that opens the database on one host. No NFS or SMB server can run here, so the detector is
tested against mount tables written as the kernel writes /proc/self/mountinfo (the one thing faked); the
real table of this machine is read too."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import labtrack as lt
from labtrack.store import fsinfo

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
88 27 0:51 / /mnt/team rw,relatime - nfs4 fileserver:/export/team rw,vers=4.2
89 88 0:52 / /mnt/team/local rw,relatime - ext4 /dev/vdb rw
90 27 0:53 / /mnt/share\\040drive rw,relatime - cifs //nas/share rw
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("/mnt/team/runs/.labtrack/labtrack.db", "nfs4"), ("/mnt/team/local/x.db", "ext4"), ("/home/me/x.db", "ext4"),
    ("/mnt/share drive/x.db", "cifs"), ("/mnt/teamwork/x.db", "ext4"),
])
def test_the_file_system_of_a_path_is_its_longest_mount_point(path: str, expected: str) -> None:
    assert fsinfo.filesystem_of(path, MOUNTINFO) == expected


def test_this_machines_temporary_directory_is_a_local_file_system(tmp_path: Path) -> None:
    found = fsinfo.filesystem_of(str(tmp_path))
    assert found is not None and not fsinfo.is_network(found)


def test_a_store_on_a_network_file_system_warns_once_and_still_opens(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    table = MOUNTINFO + f"91 27 0:54 / {tmp_path} rw,relatime - nfs4 server:/x rw\n"
    monkeypatch.setattr(fsinfo, "_mount_table", lambda: table)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lt.set_store(str(tmp_path / "store"))
        with lt.start_run("nfs") as run:
            run.log_metric("m", 1.0)
        lt.search_runs("nfs")
    messages = [str(w.message) for w in caught if "network file system" in str(w.message)]
    assert len(messages) == 1 and "nfs4" in messages[0] and "PostgreSQL" in messages[0]
    assert lt.get_run(run.id).metrics == {"m": 1.0}
