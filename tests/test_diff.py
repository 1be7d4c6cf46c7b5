"""Why do two runs differ? core.diff on real captured snapshots edited to simulate another machine (a CUDA
build change, a GPU change), and labtrack.diff end to end on runs in a real git repository (a dirty tree,
new commits), with params, metrics, artifacts, seeds and the ranking of the sections."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from env_helpers import git, git_env, make_repo  # noqa: F401  (git_env is a fixture)

import labtrack as lt
from labtrack.core.diff import MetricDelta, RunDiff, RunView, Section, diff_runs, version_change

# -- building blocks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    """This machine's snapshot, captured for real (the edits below simulate other machines)."""
    return lt.capture_environment().to_dict()


def with_torch(snapshot: dict[str, Any], version: str, cuda: str, cudnn: int) -> dict[str, Any]:
    snap = copy.deepcopy(snapshot)
    snap["packages"]["distributions"]["torch"] = {"version": version, "source": "index"}
    snap["frameworks"]["torch"] = {"version": version, "module": "torch", "imported": True, "cuda": cuda,
                                   "cudnn": cudnn, "cuda_available": True, "deterministic": False}
    return snap


def with_gpu(snapshot: dict[str, Any], model: str, count: int, driver: str, cuda_driver: str) -> dict[str, Any]:
    snap = copy.deepcopy(snapshot)
    snap["gpu"] = {
        "count": count,
        "devices": [{"index": i, "name": model, "uuid": f"GPU-{model[:8]}-{i}", "memory_total": 80 * 2**30,
                     "compute_capability": "9.0" if "H100" in model else "8.0", "mig_mode": None}
                    for i in range(count)],
        "driver_version": driver, "cuda_driver_version": cuda_driver, "reason": None, "rocm": None, "mps": False,
    }
    return snap


def with_packages(snapshot: dict[str, Any], **versions: str) -> dict[str, Any]:
    snap = copy.deepcopy(snapshot)
    for name, version in versions.items():
        snap["packages"]["distributions"][name.replace("_", "-")] = {"version": version, "source": "index"}
    return snap


def sections(result: RunDiff) -> dict[str, Section]:
    return {s.name: s for s in result.sections}


def changes(result: RunDiff, name: str) -> dict[str, Any]:
    return {c.key: c for c in sections(result)[name].changes}


def differing(result: RunDiff) -> list[str]:
    return [s.name for s in result.differing()]


# -- version_change --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("2.1.0", "3.0.0", "major"),
        ("1.26.4", "2.0.0", "major"),
        ("535.104.05", "550.54.15", "major"),
        ("2.1.0", "2.3.1", "minor"),
        ("2.1.0+cu118", "2.3.1+cu121", "minor"),
        ("12.1", "12.4", "minor"),
        ("2.1.0", "2.1.1", "patch"),
        ("1.2.3.4", "1.2.3.5", "patch"),
        ("v1.2.3", "1.2.4", "patch"),
        ("2.2.0rc1", "2.2.0", "pre-release"),
        ("2.2.0rc1", "2.2.0rc2", "pre-release"),
        ("2.1.0+cu118", "2.1.0+cu121", "local build"),
        ("2.1.0", "2.1.0+cu121", "local build"),
        ("1.26.4", "1.26.4", None),
        ("2.1", "2.1.0", None),
        (None, None, None),
        ("abc", "def", "other"),
        (None, "1.0", "other"),
        ("1.0", None, "other"),
    ],
)
def test_version_change_names_the_size_of_the_change(a: str | None, b: str | None, level: str | None) -> None:
    assert version_change(a, b) == level


# -- environments: pure diffs of edited real snapshots ----------------------------------------------


def test_cuda_build_change_is_a_minor_torch_change_with_build_changes_ranked_before_packages(
    real: dict[str, Any],
) -> None:
    a = with_packages(with_torch(real, "2.1.0+cu118", "11.8", 8700), examplepkg="1.2.3", otherpkg="1.0")
    b = with_packages(with_torch(real, "2.3.1+cu121", "12.1", 8902), examplepkg="1.2.4", otherpkg="2.0")
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))

    torch = changes(result, "frameworks")["torch"]
    assert (torch.a, torch.b, torch.kind, torch.level) == ("2.1.0+cu118", "2.3.1+cu121", "changed", "minor")
    assert torch.describe() == "torch 2.1.0+cu118 → 2.3.1+cu121 (minor)"
    builds = changes(result, "framework builds")
    assert (builds["torch cuda"].a, builds["torch cuda"].b) == ("11.8", "12.1")
    assert (builds["torch cudnn"].a, builds["torch cudnn"].b) == (8700, 8902)
    assert "torch cuda_available" not in builds and "torch imported" not in builds  # process state, not a build
    assert changes(result, "numerical packages")["torch"].level == "minor"
    others = sections(result)["packages"].changes
    assert [(c.key, c.level) for c in others] == [("otherpkg", "major"), ("examplepkg", "patch")]

    order = differing(result)
    assert order == ["framework builds", "frameworks", "numerical packages", "packages"]
    for name in ("params", "gpu", "python", "cpu", "os"):
        assert sections(result)[name].identical, name


def test_local_build_change_alone_is_reported_as_a_local_build(real: dict[str, Any]) -> None:
    a = with_torch(real, "2.1.0+cu118", "11.8", 8700)
    b = with_torch(real, "2.1.0+cu121", "12.1", 8700)
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    assert changes(result, "frameworks")["torch"].level == "local build"
    assert set(changes(result, "framework builds")) == {"torch cuda"}
    assert changes(result, "framework builds")["torch cuda"].level == "major"  # CUDA 11 → 12


def test_gpu_change_reports_model_and_driver_and_nothing_else(real: dict[str, Any]) -> None:
    a = with_gpu(real, "NVIDIA A100-SXM4-80GB", 8, "535.104.05", "12.2")
    b = with_gpu(real, "NVIDIA H100 80GB HBM3", 8, "550.54.15", "12.4")
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    gpu = changes(result, "gpu")
    assert set(gpu) == {"model", "driver", "driver CUDA"}
    assert (gpu["model"].a, gpu["model"].b) == ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
    assert (gpu["driver"].a, gpu["driver"].b, gpu["driver"].level) == ("535.104.05", "550.54.15", "major")
    assert (gpu["driver CUDA"].a, gpu["driver CUDA"].b, gpu["driver CUDA"].level) == ("12.2", "12.4", "minor")
    assert differing(result) == ["gpu"]

    fewer = with_gpu(real, "NVIDIA A100-SXM4-80GB", 4, "535.104.05", "12.2")
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=fewer))
    assert {k: (c.a, c.b) for k, c in changes(result, "gpu").items()} == {"count": (8, 4)}


def test_a_gpu_added_to_a_cpu_machine_is_a_gpu_change(real: dict[str, Any]) -> None:
    cpu_only = copy.deepcopy(real)
    cpu_only["gpu"] = {"count": 0, "devices": [], "reason": "no NVIDIA driver", "rocm": None, "mps": False}
    result = diff_runs(RunView("a", environment=cpu_only),
                       RunView("b", environment=with_gpu(real, "NVIDIA H100 80GB HBM3", 1, "550.54.15", "12.4")))
    gpu = changes(result, "gpu")
    assert (gpu["model"].a, gpu["model"].b) == ("none", "NVIDIA H100 80GB HBM3")
    assert (gpu["count"].a, gpu["count"].b) == (0, 1)


def test_a_section_one_run_lacks_is_not_compared_rather_than_identical(real: dict[str, Any]) -> None:
    failed = copy.deepcopy(real)
    failed["gpu"] = {"error": "nvml timed out"}
    result = diff_runs(RunView("a", environment=real), RunView("b", environment=failed))
    gpu = sections(result)["gpu"]
    assert not gpu.compared and not gpu.identical and not gpu.changes
    assert sections(result)["python"].identical

    nothing = diff_runs(RunView("a"), RunView("b"))
    assert not sections(nothing)["packages"].compared
    assert sections(nothing)["params"].identical


def test_identical_runs_have_every_section_identical(real: dict[str, Any]) -> None:
    view = RunView("a", params={"lr": 0.1}, metrics={"acc": 0.9}, tags={"t": "x"}, artifacts={"model.pt": "ab" * 32},
                   environment={**real, "seeds": {"seed": 1}})
    result = diff_runs(view, RunView(**{**vars(view), "id": "b"}))
    assert result.identical
    assert result.differing() == []
    assert all(s.identical for s in result.sections if s.name != "code" or s.compared)
    assert result.metrics == [MetricDelta("acc", 0.9, 0.9, delta=0.0, pct=0.0, same=True)]
    assert result.to_dict()["identical"] is True


def test_environment_variables_and_seeds_are_compared(real: dict[str, Any]) -> None:
    a = copy.deepcopy(real)
    b = copy.deepcopy(real)
    a["process"] = {**a["process"], "env": {"CUDA_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "8"}}
    b["process"] = {**b["process"], "env": {"CUDA_VISIBLE_DEVICES": "0,1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}}
    a["seeds"], b["seeds"] = {"seed": 1}, {"seed": 2}
    result = diff_runs(RunView("a", environment=a), RunView("b", environment=b))
    variables = changes(result, "environment variables")
    assert {k: (c.a, c.b, c.kind) for k, c in variables.items()} == {
        "CUBLAS_WORKSPACE_CONFIG": (None, ":4096:8", "added"),
        "CUDA_VISIBLE_DEVICES": ("0", "0,1", "changed"),
        "OMP_NUM_THREADS": ("8", None, "removed"),
    }
    seed = changes(result, "seeds")["seed"]
    assert (seed.a, seed.b) == (1, 2)


# -- params, metrics, artifacts, code: pure --------------------------------------------------------


def test_params_changed_added_and_removed() -> None:
    result = diff_runs(RunView("a", params={"lr": 0.01, "dropout": 0.1, "epochs": 3}),
                       RunView("b", params={"lr": 0.02, "batch": 64, "epochs": 3}))
    assert [(c.key, c.a, c.b, c.kind) for c in sections(result)["params"].changes] == [
        ("batch", None, 64, "added"),
        ("dropout", 0.1, None, "removed"),
        ("lr", 0.01, 0.02, "changed"),
    ]
    described = [c.describe() for c in sections(result)["params"].changes]
    assert described == ["batch (none) → 64", "dropout 0.1 → (none)", "lr 0.01 → 0.02"]


def test_metrics_show_last_values_with_delta_and_percent() -> None:
    result = diff_runs(
        RunView("a", metrics={"acc": 0.9, "loss": 0.5, "old": 1.0, "nan": math.nan, "zero": 0.0, "inf": math.inf}),
        RunView("b", metrics={"acc": 0.95, "loss": 0.4, "new": 2.0, "nan": math.nan, "zero": 1.0, "inf": 1.0}),
    )
    rows = {r.key: r for r in result.metrics}
    assert list(rows) == sorted(rows)
    assert rows["acc"].delta == pytest.approx(0.05) and rows["acc"].pct == pytest.approx(5.5555556)
    assert rows["loss"].delta == pytest.approx(-0.1) and rows["loss"].pct == pytest.approx(-20.0)
    assert not rows["acc"].same
    assert rows["old"] == MetricDelta("old", 1.0, None, delta=None, pct=None, same=False)
    assert (rows["new"].a, rows["new"].delta) == (None, None)
    assert rows["nan"].same is True
    assert (rows["zero"].delta, rows["zero"].pct) == (1.0, None)  # no percentage of zero
    assert (rows["inf"].delta, rows["inf"].pct, rows["inf"].same) == (None, None, False)


def test_artifacts_compare_by_content_hash() -> None:
    same, x, y = "a" * 64, "b" * 64, "c" * 64
    a = RunView("a", artifacts={"model.pt": same, "config.json": x, "old.txt": x})
    b = RunView("b", artifacts={"model.pt": same, "config.json": y, "new.txt": y})
    result = diff_runs(a, b)
    arts = changes(result, "artifacts")
    assert set(arts) == {"config.json", "old.txt", "new.txt"}  # model.pt has the same content
    assert (arts["config.json"].kind, arts["config.json"].note) == ("changed", "content differs")
    assert (arts["old.txt"].kind, arts["new.txt"].kind) == ("removed", "added")
    from labtrack.core.diff import identical_artifacts

    assert identical_artifacts(a, b) == ["model.pt"]
    only_model = diff_runs(RunView("a", artifacts={"model.pt": same}), RunView("b", artifacts={"model.pt": same}))
    assert sections(only_model)["artifacts"].identical


def _git(commit: str, *, dirty: bool = False, diff: str | None = None, branch: str = "main") -> dict[str, Any]:
    return {"repo": True, "root": "/nowhere", "commit": commit, "branch": branch, "dirty": dirty,
            "diff_sha256": diff, "remote_url": None}


@pytest.mark.parametrize(
    ("ga", "gb", "expected"),
    [
        (_git("c1"), _git("c1"), {}),
        (_git("c1"), _git("c1", dirty=True, diff="d1"), {"working tree": ("clean", "uncommitted changes", "")}),
        (_git("c1", dirty=True, diff="d1"), _git("c1", dirty=True, diff="d2"),
         {"working tree": ("uncommitted changes", "uncommitted changes", "the uncommitted diffs differ")}),
        (_git("c1", dirty=True, diff="d1"), _git("c1", dirty=True, diff="d1"), {}),
        (_git("c1"), _git("c2"), {"commit": ("c1", "c2", "")}),
        (_git("c1"), _git("c1", branch="dev"), {"branch": ("main", "dev", "")}),
    ],
    ids=["same", "became dirty", "different diffs", "same diff", "new commit", "other branch"],
)
def test_code_section_reports_commits_branches_and_the_working_tree(
    ga: dict[str, Any], gb: dict[str, Any], expected: dict[str, tuple[str, str, str]]
) -> None:
    result = diff_runs(RunView("a", environment={"git": ga}), RunView("b", environment={"git": gb}))
    assert {k: (c.a, c.b, c.note) for k, c in changes(result, "code").items()} == expected
    assert sections(result)["code"].identical == (not expected)


def test_git_log_between_commits_is_counted_in_the_commit_change() -> None:
    result = diff_runs(RunView("a", environment={"git": _git("c1")}), RunView("b", environment={"git": _git("c3")}),
                       git_log=["c3 third", "c2 second"])
    assert changes(result, "code")["commit"].note == "2 commit(s) between them"


def test_sections_are_ranked_by_how_likely_they_change_results(real: dict[str, Any]) -> None:
    a = with_packages(with_gpu(with_torch(real, "2.1.0+cu118", "11.8", 8700), "NVIDIA A100-SXM4-80GB", 8,
                               "535.104.05", "12.2"), otherpkg="1.0.0", patchpkg="1.0.0", localpkg="1.0.0+a")
    b = with_packages(with_gpu(with_torch(real, "2.3.1+cu121", "12.1", 8902), "NVIDIA H100 80GB HBM3", 8,
                               "550.54.15", "12.4"), otherpkg="2.0.0", patchpkg="1.0.1", localpkg="1.0.0+b")
    a["git"], b["git"] = _git("c1"), _git("c2", dirty=True, diff="d")
    a["seeds"], b["seeds"] = {"seed": 1}, {"seed": 2}
    b["packages"]["python"] = {**b["packages"]["python"], "version": "3.12.1"}
    b["hardware"] = {**b["hardware"], "model": "Some Other CPU", "logical_cores": 1024}
    b["system"] = {**b["system"], "kernel": "9.9.9-test"}
    a["process"] = {**a["process"], "env": {"OMP_NUM_THREADS": "8"}, "argv": ["train.py"]}
    b["process"] = {**b["process"], "env": {"OMP_NUM_THREADS": "4"}, "argv": ["train.py", "--fast"]}
    result = diff_runs(
        RunView("a", params={"lr": 0.1}, tags={"t": "x"}, artifacts={"model.pt": "a" * 64}, environment=a),
        RunView("b", params={"lr": 0.2}, tags={"t": "y"}, artifacts={"model.pt": "b" * 64}, environment=b),
    )
    assert differing(result) == [
        "params", "code", "seeds", "framework builds", "gpu", "frameworks", "numerical packages", "packages",
        "python", "cpu", "os", "environment variables", "artifacts", "command and host", "tags",
    ]
    assert [(c.key, c.level) for c in sections(result)["packages"].changes] == [
        ("otherpkg", "major"), ("patchpkg", "patch"), ("localpkg", "local build"),
    ]
    as_dict = result.to_dict()
    assert [s["name"] for s in as_dict["sections"] if s["changes"]] == differing(result)
    assert as_dict["identical"] is False


# -- end to end: labtrack.diff on runs in a real git repository ------------------------------------


def test_diff_of_runs_in_a_git_repo_reports_the_dirty_tree_new_commits_params_metrics_and_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_env: None  # noqa: F811
) -> None:
    repo = make_repo(tmp_path / "repo", {"train.py": "print('v1')\n", "README.md": "hi\n"})
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)  # seed_everything sets it; restore it afterwards
    lt.set_store(str(tmp_path / "store"))
    (out / "model.pt").write_bytes(b"\x00weights" * 100)

    def run(params: dict[str, Any], metrics: dict[str, float], config: str, seed: int) -> lt.Run:
        lt.seed_everything(seed)
        (out / "config.json").write_text(config)
        with lt.start_run("e2e", params=params) as r:
            r.log_metrics(metrics)
            r.log_artifact(str(out / "model.pt"))
            r.log_artifact(str(out / "config.json"))
        return r

    clean = run({"lr": 0.01, "dropout": 0.1, "epochs": 3}, {"acc": 0.9, "loss": 0.5}, '{"a": 1}', 1)
    (repo / "train.py").write_text("print('v2')\n")  # an uncommitted change
    dirty = run({"lr": 0.02, "batch": 64, "epochs": 3}, {"acc": 0.95, "loss": 0.4}, '{"a": 2}', 2)
    git(repo, "commit", "-qam", "v2")
    (repo / "README.md").write_text("more\n")
    git(repo, "commit", "-qam", "docs")
    committed = run({"lr": 0.02, "batch": 64, "epochs": 3}, {"acc": 0.95, "loss": 0.4}, '{"a": 2}', 2)

    result = lt.diff(clean, dirty)
    assert [(c.key, c.kind) for c in sections(result)["params"].changes] == [
        ("batch", "added"), ("dropout", "removed"), ("lr", "changed"),
    ]
    code = changes(result, "code")
    assert set(code) == {"working tree"}
    assert (code["working tree"].a, code["working tree"].b) == ("clean", "uncommitted changes")
    rows = {r.key: r for r in result.metrics}
    assert rows["acc"].delta == pytest.approx(0.05) and rows["acc"].pct == pytest.approx(5.5555556)
    assert rows["loss"].pct == pytest.approx(-20.0)
    arts = changes(result, "artifacts")
    assert "model.pt" not in arts  # same bytes, same hash
    assert arts["config.json"].kind == "changed"
    assert changes(result, "seeds")["seed"].b == 2
    for name in ("gpu", "frameworks", "packages", "python", "cpu", "os"):
        assert sections(result)[name].identical, name
    assert differing(result)[:3] == ["params", "code", "seeds"]

    later = lt.diff(dirty.id[:10], committed.id[:10])  # by unique id prefix
    code = changes(later, "code")
    assert (code["commit"].a, code["commit"].b) == (git(repo, "rev-parse", "HEAD~2"), git(repo, "rev-parse", "HEAD"))
    assert code["commit"].note == "2 commit(s) between them"  # git log a..b, the repository is here
    assert (code["working tree"].a, code["working tree"].b) == ("uncommitted changes", "clean")
    assert sections(later)["params"].identical
    assert all(r.same for r in later.metrics)
    assert "config.json" not in changes(later, "artifacts")

    same_code = lt.diff(committed, committed)
    assert same_code.identical and same_code.differing() == []


def test_diff_end_to_end_sees_an_edited_environment_as_a_cuda_and_gpu_change(
    tmp_path: Path, real: dict[str, Any]
) -> None:
    from labtrack.core.environment import Environment
    from labtrack.verbs import tracking

    lt.set_store(str(tmp_path / "store"))
    with lt.start_run("env", params={"lr": 0.1}) as a:
        a.log_metric("acc", 0.9)
    with lt.start_run("env", params={"lr": 0.1}) as b:
        b.log_metric("acc", 0.9)
    lt.flush()
    store = tracking.client().store
    for run, snapshot in (
        (a, with_gpu(with_torch(real, "2.1.0+cu118", "11.8", 8700), "NVIDIA A100-SXM4-80GB", 8, "535.104.05", "12.2")),
        (b, with_gpu(with_torch(real, "2.3.1+cu121", "12.1", 8902), "NVIDIA H100 80GB HBM3", 8, "550.54.15", "12.4")),
    ):
        shared = {k: v for k, v in snapshot.items() if k not in ("process", "git")}
        fingerprint = Environment(shared).fingerprint
        store.put_environment(fingerprint, shared)
        store.merge_context(run.id, {}, env_fingerprint=fingerprint)
    result = lt.diff(a.id, b.id)
    assert differing(result)[:4] == ["framework builds", "gpu", "frameworks", "numerical packages"]
    assert changes(result, "frameworks")["torch"].describe() == "torch 2.1.0+cu118 → 2.3.1+cu121 (minor)"
    assert changes(result, "gpu")["driver"].describe() == "driver 535.104.05 → 550.54.15 (major)"
    assert sections(result)["params"].identical and sections(result)["code"].identical
