"""Capturing the environment: sections, isolation of failing gatherers, secrets, packages, seeds."""

from __future__ import annotations

import importlib.metadata
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labtrack.core.environment import SECTIONS
from labtrack.core.errors import InvalidInput
from labtrack.env import CaptureOptions, capture, seed_everything
from labtrack.env.gatherers import GATHERERS
from labtrack.env.system import detect_container, slurm_ids

REPO = Path(__file__).resolve().parent.parent


def test_a_full_capture_has_every_section_and_is_json() -> None:
    env = capture().environment
    snap = env.snapshot
    assert snap["schema"] == 1
    assert [k for k in snap if k in SECTIONS] == list(SECTIONS)
    errors = {k: v["error"] for k, v in snap.items() if isinstance(v, dict) and "error" in v}
    assert errors == {}
    assert json.loads(json.dumps(snap)) == snap
    assert snap["hardware"]["logical_cores"] >= 1 and snap["hardware"]["memory_total"] > 0
    assert snap["packages"]["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert snap["system"]["os"] == "Linux"


def test_installed_distributions_match_importlib_metadata() -> None:
    dists = capture(CaptureOptions(sections=frozenset({"packages"}))).environment.snapshot["packages"]["distributions"]
    assert dists["pytest"] == {"version": importlib.metadata.version("pytest"), "source": "index"}
    assert dists["sqlalchemy"]["version"] == importlib.metadata.version("sqlalchemy")


def _dist_info(site: Path, name: str, version: str, direct_url: dict | None = None) -> None:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nLong description\n")
    if direct_url is not None:
        (d / "direct_url.json").write_text(json.dumps(direct_url))


def test_package_provenance_comes_from_direct_url_json_and_new_installs_are_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _dist_info(site, "Edit_Me", "0.1", {"url": "file:///src/edit_me", "dir_info": {"editable": True}})
    _dist_info(site, "from-git", "1.0", {"url": "https://tok:x@github.com/a/b.git",
                                          "vcs_info": {"vcs": "git", "commit_id": "c" * 40, "requested_revision": "main"}})
    _dist_info(site, "local-wheel", "2.0", {"url": "file:///tmp/local_wheel-2.0-py3-none-any.whl", "archive_info": {}})
    monkeypatch.syspath_prepend(str(site))
    opts = CaptureOptions(sections=frozenset({"packages"}))
    dists = capture(opts).environment.snapshot["packages"]["distributions"]
    assert dists["edit-me"] == {"version": "0.1", "source": "editable", "url": "file:///src/edit_me"}
    assert dists["from-git"] == {"version": "1.0", "source": "vcs", "url": "https://github.com/a/b.git", "vcs": "git",
                                 "commit": "c" * 40, "requested_revision": "main"}
    assert dists["local-wheel"]["source"] == "local"
    _dist_info(site, "late", "3.0")  # installed while the process runs: the cache must notice
    assert capture(opts).environment.snapshot["packages"]["distributions"]["late"]["version"] == "3.0"


def test_only_requested_sections_are_captured() -> None:
    snap = capture(CaptureOptions(sections=frozenset({"system", "process"}))).environment.snapshot
    assert {k for k in snap if k in SECTIONS} == {"system", "process"}


def test_unknown_section_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown environment section"):
        capture(CaptureOptions(sections=frozenset({"hardware", "gpus"})))


def test_hostname_can_be_left_out() -> None:
    with_host = capture(CaptureOptions(sections=frozenset({"system"}))).environment
    without = capture(CaptureOptions(sections=frozenset({"system"}), record_hostname=False)).environment
    assert with_host.snapshot["system"]["hostname"]
    assert "hostname" not in without.snapshot["system"]


def test_a_failing_gatherer_records_its_error_and_the_rest_is_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(options: object) -> dict:
        raise RuntimeError("cpuinfo exploded")

    monkeypatch.setitem(GATHERERS, "hardware", boom)
    snap = capture(CaptureOptions(sections=frozenset({"hardware", "system"}))).environment.snapshot
    assert snap["hardware"] == {"error": "RuntimeError: cpuinfo exploded"}
    assert snap["system"]["os"] == "Linux"


def test_a_hanging_gatherer_times_out_and_the_capture_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(options: object) -> dict:
        release.wait(30)
        return {"late": True}

    monkeypatch.setitem(GATHERERS, "gpu", hang)
    start = time.monotonic()
    try:
        snap = capture(CaptureOptions(sections=frozenset({"gpu", "system"}), timeout=0.3)).environment.snapshot
    finally:
        release.set()
    assert time.monotonic() - start < 2.0
    assert snap["gpu"] == {"error": "timed out after 0.3 s"}
    assert snap["system"]["os"] == "Linux"


def test_argv_and_environment_are_recorded_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "hf_" + "q" * 34
    monkeypatch.setattr(sys, "argv", ["train.py", "--hf-token", token, "--lr", "0.1", "password=hunter2"])
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123")  # not allowlisted: never recorded
    monkeypatch.setenv("MY_DATA_URL", "s3://bucket/x")
    monkeypatch.setenv("MY_DB", "postgresql://bob:pw@db/x")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "t0ps3cret")
    opts = CaptureOptions(sections=frozenset({"process"}), extra_env_vars=("MY_DATA_URL", "MY_DB", "MY_SERVICE_TOKEN"))
    proc = capture(opts).environment.snapshot["process"]
    dumped = json.dumps(proc)
    for secret in (token, "hunter2", "0123456789abcdef0123", "bob:pw", "t0ps3cret"):
        assert secret not in dumped
    assert proc["argv"] == ["train.py", "--hf-token", "[REDACTED]", "--lr", "0.1", "password=[REDACTED]"]
    assert proc["env"]["OMP_NUM_THREADS"] == "4"
    assert proc["env"]["MY_DATA_URL"] == "s3://bucket/x"
    assert proc["env"]["MY_SERVICE_TOKEN"] == "[REDACTED]"
    assert "WANDB_API_KEY" not in proc["env"]


def test_the_entry_script_is_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    script = tmp_path / "train.py"
    script.write_text("print('train')\n")
    monkeypatch.setattr(sys, "argv", [str(script)])
    entry = capture(CaptureOptions(sections=frozenset({"process"}))).environment.snapshot["process"]["entry"]
    assert entry == {"path": str(script), "sha256": hashlib.sha256(script.read_bytes()).hexdigest(), "size": 15}
    script.write_text("print('train v2')\n")
    entry2 = capture(CaptureOptions(sections=frozenset({"process"}))).environment.snapshot["process"]["entry"]
    assert entry2["sha256"] == hashlib.sha256(script.read_bytes()).hexdigest() != entry["sha256"]


def test_allowlisted_variables_follow_changes_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = CaptureOptions(sections=frozenset({"process"}), extra_env_vars=("MY_SPLIT",))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("MY_SPLIT", raising=False)
    before = capture(opts).environment.snapshot["process"]["env"]
    assert "CUDA_VISIBLE_DEVICES" not in before and "MY_SPLIT" not in before
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.setenv("MY_SPLIT", "val")
    after = capture(opts).environment.snapshot["process"]["env"]
    assert after["CUDA_VISIBLE_DEVICES"] == "1,0" and after["MY_SPLIT"] == "val"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert capture(opts).environment.snapshot["process"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert list(after) == sorted(after)


@pytest.mark.parametrize("argv0", ["", "-c", "-m", "no/such/script.py", "."])
def test_a_run_without_an_entry_script_records_what_started_it(argv0: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    entry = capture(CaptureOptions(sections=frozenset({"process"}))).environment.snapshot["process"]["entry"]
    assert entry == {"kind": argv0 if argv0 in ("-c", "-m") else "interactive"}


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_frameworks_are_not_imported_by_capture_and_refresh_adds_runtime_facts() -> None:
    out = _python(
        "import json, sys\n"
        "from labtrack.env import capture, refresh_frameworks\n"
        "env = capture().environment\n"
        "before = env.snapshot['frameworks']['numpy']\n"
        "imported_by_capture = 'numpy' in sys.modules\n"
        "import numpy\n"
        "after = refresh_frameworks(env)\n"
        "print(json.dumps([before, imported_by_capture, after.snapshot['frameworks']['numpy'],\n"
        "                  env.fingerprint == after.fingerprint, after.snapshot['process'] == env.snapshot['process']]))\n"
    )
    before, imported_by_capture, after, same_fp, same_process = json.loads(out)
    assert imported_by_capture is False
    assert before["imported"] is False and "blas" not in before
    assert after["imported"] is True and after["blas"]
    assert same_fp is False  # the BLAS build is a reproducibility fact
    assert same_process is True


def test_importing_the_package_loads_no_gatherer() -> None:
    out = _python(
        "import sys, labtrack.env\n"
        "print([m for m in ('pynvml', 'psutil', 'labtrack.env.git', 'labtrack.env.packages', 'numpy')"
        " if m in sys.modules])"
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("files", "environ", "expected"),
    [
        ({}, {}, {"runtime": None, "kubernetes": False}),
        ({".dockerenv": ""}, {}, {"runtime": "docker", "kubernetes": False}),
        ({"run/.containerenv": ""}, {}, {"runtime": "podman", "kubernetes": False}),
        ({"proc/1/cgroup": "0::/kubepods/burstable/pod1/abc\n"}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
         {"runtime": "containerd", "kubernetes": True}),
        ({}, {"APPTAINER_CONTAINER": "/img.sif"}, {"runtime": "apptainer", "kubernetes": False}),
    ],
    ids=["bare", "docker", "podman", "kubernetes", "apptainer"],
)
def test_container_detection(tmp_path: Path, files: dict[str, str], environ: dict[str, str], expected: dict) -> None:
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    assert detect_container(environ, root=str(tmp_path)) == expected


def test_slurm_ids() -> None:
    assert slurm_ids({}) is None
    env = {"SLURM_JOB_ID": "77", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "7", "HOME": "/x"}
    assert slurm_ids(env) == {"job_id": "77", "array_job_id": "70", "array_task_id": "7"}


def test_seed_everything_makes_random_and_numpy_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    info = seed_everything(1234)
    first = (random.random(), numpy.random.rand())
    seed_everything(1234)
    assert (random.random(), numpy.random.rand()) == first
    import importlib.util
    import sys

    torch = ["torch"] if importlib.util.find_spec("torch") else []  # CI installs it
    now = [name for name in torch if name in sys.modules]  # imported by an earlier test: seeded at once
    assert info["seed"] == 1234 and info["seeded"] == ["random", "numpy", *now]
    assert info["on_import"] == [name for name in torch if name not in now] and info["deterministic"] == {}
    import os

    assert os.environ["PYTHONHASHSEED"] == "1234"
    det = seed_everything(5, deterministic=True)
    expected = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    if now:  # imported: its determinism switches are set and reported too
        import torch as torch_module

        expected |= {"torch.use_deterministic_algorithms": True, "torch.backends.cudnn.deterministic": True,
                     "torch.backends.cudnn.benchmark": False}
        torch_module.use_deterministic_algorithms(False)  # leave the test process as it was
        torch_module.backends.cudnn.deterministic = False
    assert det["deterministic"] == expected


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "42", True])
def test_seed_everything_rejects_bad_seeds(bad: object) -> None:
    with pytest.raises(InvalidInput, match="seed must be an integer"):
        seed_everything(bad)  # type: ignore[arg-type]


def test_core_modules_import_only_stdlib_and_core() -> None:
    import ast

    for rel in ("labtrack/core/environment.py", "labtrack/core/redact.py"):
        tree = ast.parse((REPO / rel).read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                assert name.startswith("labtrack.core") or top in sys.stdlib_module_names, (rel, name)
