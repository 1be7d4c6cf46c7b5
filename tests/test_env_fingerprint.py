"""The environment fingerprint: same machine and software, same fingerprint; anything else, a new one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from labtrack.core.environment import Environment, fingerprint_subset
from labtrack.env import capture

GIB = 1024**3

SNAPSHOT: dict[str, Any] = {
    "schema": 1,
    "captured_at": 1700000000.0,
    "hardware": {"arch": "x86_64", "vendor": "GenuineIntel", "model": "Xeon", "physical_cores": 32,
                 "logical_cores": 64, "flags": ["avx2", "avx512f"], "memory_total": 512 * GIB},
    "gpu": {"count": 2, "driver_version": "535.104.05", "cuda_driver_version": "12.2", "rocm": None, "mps": False,
            "devices": [{"index": i, "name": "NVIDIA A100-SXM4-80GB", "uuid": f"GPU-{i}", "memory_total": 80 * GIB,
                         "compute_capability": "8.0", "mig_mode": "disabled"} for i in range(2)]},
    "frameworks": {"torch": {"version": "2.1.0+cu118", "module": "torch", "imported": True, "cuda": "11.8",
                             "cudnn": "8.7.0", "cuda_available": True, "devices": ["A100"],
                             "deterministic": {"use_deterministic_algorithms": False}}},
    "packages": {"python": {"version": "3.11.7", "implementation": "CPython", "executable": "/home/a/.venv/bin/python",
                            "prefix": "/home/a/.venv", "base_prefix": "/usr", "venv": ".venv", "conda_env": None},
                 "distributions": {"numpy": {"version": "1.26.4", "source": "index"},
                                   "torch": {"version": "2.1.0+cu118", "source": "index"},
                                   "mylib": {"version": "0.1", "source": "editable", "url": "file:///home/a/mylib"}}},
    "system": {"os": "Linux", "os_version": "#1 SMP", "kernel": "6.1.0-18-amd64", "libc": "glibc 2.36",
               "distro": {"id": "debian", "name": "Debian GNU/Linux", "version_id": "12",
                          "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
               "hostname": "node-01", "container": {"runtime": None, "kubernetes": False},
               "scheduler": {"slurm": {"job_id": "123"}}},
    "process": {"argv": ["train.py", "--lr", "0.1"], "entry": {"path": "/home/a/train.py", "sha256": "ab", "size": 10},
                "cwd": "/home/a", "pid": 4242, "start_time": 1700000000.0, "cpu_affinity": 64,
                "env": {"OMP_NUM_THREADS": "8"}},
    "git": {"repo": True, "commit": "a" * 40, "branch": "main", "detached": False, "dirty": False},
}


def edited(change: Callable[[dict[str, Any]], None]) -> Environment:
    snap = copy.deepcopy(SNAPSHOT)
    change(snap)
    return Environment(snap)


BASE = Environment(copy.deepcopy(SNAPSHOT)).fingerprint


def test_two_captures_on_this_machine_share_a_fingerprint() -> None:
    first = capture().environment
    second = capture().environment
    assert first.snapshot["process"]["pid"] == second.snapshot["process"]["pid"]
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["packages"]["distributions"]["numpy"].update(version="2.0.0"),
        lambda s: s["packages"]["distributions"].update(scipy={"version": "1.13", "source": "index"}),
        lambda s: s["gpu"].update(driver_version="550.54.15"),
        lambda s: s["gpu"].update(cuda_driver_version="12.4"),
        lambda s: s["gpu"]["devices"][0].update(name="NVIDIA H100 80GB HBM3"),
        lambda s: s["frameworks"]["torch"].update(cudnn="8.9.2"),
        lambda s: s["frameworks"]["torch"]["deterministic"].update(use_deterministic_algorithms=True),
        lambda s: s["packages"]["python"].update(version="3.12.1"),
        lambda s: s["system"].update(kernel="6.5.0"),
        lambda s: s["system"]["distro"].update(version_id="13"),
        lambda s: s["hardware"].update(model="EPYC"),
        lambda s: s["hardware"].update(memory_total=256 * GIB),
        lambda s: s.update(gpu={"error": "timed out after 5 s"}),
    ],
    ids=["package-version", "package-added", "gpu-driver", "cuda-driver", "gpu-model", "cudnn", "determinism",
         "python", "kernel", "distro", "cpu-model", "memory", "failed-section"],
)
def test_a_reproducibility_relevant_change_changes_the_fingerprint(change: Callable[[dict[str, Any]], None]) -> None:
    assert edited(change).fingerprint != BASE


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(captured_at=1800000000.0),
        lambda s: s["system"].update(hostname="node-02"),
        lambda s: s["system"].pop("hostname"),
        lambda s: s["system"].update(scheduler=None),
        lambda s: s["process"].update(argv=["other.py"], pid=1, cwd="/tmp", start_time=1.0),
        lambda s: s["process"]["env"].update(CUDA_VISIBLE_DEVICES="1"),
        lambda s: s["git"].update(commit="b" * 40, dirty=True),
        lambda s: s["gpu"]["devices"][1].update(uuid="GPU-other-card"),
        lambda s: s["packages"]["python"].update(executable="/opt/py/bin/python", prefix="/opt/py", venv="py"),
        lambda s: s["packages"]["distributions"]["mylib"].update(url="file:///other/checkout"),
        lambda s: s["frameworks"]["torch"].update(imported=False, cuda_available=False, devices=[]),
        lambda s: s["hardware"].update(memory_total=512 * GIB - 3 * 1024**2),
    ],
    ids=["time", "hostname", "hostname-off", "slurm-ids", "process", "visible-devices", "git", "gpu-uuid",
         "python-paths", "editable-path", "framework-import-state", "memtotal-jitter"],
)
def test_a_per_run_change_keeps_the_fingerprint(change: Callable[[dict[str, Any]], None]) -> None:
    assert edited(change).fingerprint == BASE


def test_vcs_installs_are_identified_by_commit() -> None:
    def vcs(commit: str) -> Environment:
        return edited(lambda s: s["packages"]["distributions"].update(
            lib={"version": "0.1", "source": "vcs", "url": "https://github.com/a/lib", "commit": commit}))

    assert vcs("a" * 40).fingerprint != vcs("b" * 40).fingerprint


def test_dict_and_json_round_trips_keep_snapshot_and_fingerprint() -> None:
    env = capture().environment
    again = Environment.from_dict(json.loads(json.dumps(env.to_dict())))
    assert again == env
    assert again.fingerprint == env.fingerprint


def test_the_subset_leaves_out_process_git_and_hostname() -> None:
    subset = fingerprint_subset(SNAPSHOT)
    assert "process" not in subset and "git" not in subset and "captured_at" not in subset
    assert "node-01" not in json.dumps(subset)


def test_per_run_holds_what_the_fingerprint_leaves_out() -> None:
    per_run = Environment(copy.deepcopy(SNAPSHOT)).per_run()
    assert per_run["process"]["pid"] == 4242
    assert per_run["git"]["commit"] == "a" * 40
    assert per_run["system"]["hostname"] == "node-01"
    assert per_run["captured_at"] == 1700000000.0


def test_summary_lines_read_like_the_design_examples() -> None:
    lines = dict(Environment(copy.deepcopy(SNAPSHOT)).summary())
    assert lines["python"] == "3.11.7 (CPython), venv .venv"
    assert lines["os"] == "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-18-amd64, glibc 2.36"
    assert lines["gpu"] == "2 x NVIDIA A100-SXM4-80GB (80 GiB), driver 535.104.05, CUDA 12.2"
    assert lines["torch"] == "2.1.0+cu118 CUDA 11.8 cuDNN 8.7.0"
    assert lines["git"] == "aaaaaaa on main, clean"
    assert lines["scheduler"] == "slurm job 123"
    assert lines["command"] == "train.py --lr 0.1"


def test_summary_reports_a_failed_section() -> None:
    lines = dict(edited(lambda s: s.update(gpu={"error": "timed out after 5 s"})).summary())
    assert lines["gpu"] == "error: timed out after 5 s"
