"""Run identity: the run key says "same experiment", so finished work can be found and skipped.

What goes in the key (experiment name, params, code version, declared inputs) and what does not
(param order and spelling, excluded params, untracked files), and the user-facing lookups built on it:
``exists``, ``find_run``, ``labtrack runs --key`` and ``labtrack show``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from env_helpers import git, git_env, make_repo  # noqa: F401  (git_env is a fixture)

import labtrack as lt
from labtrack.cli import main

# -- canonical form: what does and does not change the key ---------------------------------------

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
assert CAFE_NFC != CAFE_NFD  # the table below relies on the two spellings being different strings

SAME = [
    pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="dict-order"),
    pytest.param({"lr": 1}, {"lr": 1.0}, id="int-1-equals-float-1.0"),
    pytest.param({"epochs": 3.0}, {"epochs": 3}, id="float-3.0-equals-int-3"),
    pytest.param({"opt": {"name": "adam", "lr": 0.1}}, {"opt": {"lr": 0.1, "name": "adam"}}, id="nested-dict-order"),
    pytest.param({"layers": (64, 32)}, {"layers": [64, 32]}, id="tuple-equals-list"),
    pytest.param({"name": CAFE_NFC}, {"name": CAFE_NFD}, id="unicode-nfc-equals-nfd"),
    pytest.param({"opt": {"name": [CAFE_NFD]}}, {"opt": {"name": [CAFE_NFC]}}, id="unicode-nested-in-list"),
    pytest.param({"x": float("nan")}, {"x": float("nan")}, id="nan-equals-nan"),
    pytest.param({"x": float("inf")}, {"x": math.inf}, id="inf-equals-inf"),
    pytest.param({}, None, id="no-params-equals-empty-params"),
]

DIFFERENT = [
    pytest.param({"lr": 1}, {"lr": 2}, id="1-vs-2"),
    pytest.param({"lr": 0.1}, {"lr": 0.10000001}, id="close-floats"),
    pytest.param({"lr": 1}, {"lr": "1"}, id="int-vs-string"),
    pytest.param({"flag": True}, {"flag": 1}, id="bool-true-vs-int-1"),
    pytest.param({"flag": False}, {"flag": 0}, id="bool-false-vs-int-0"),
    pytest.param({"layers": [1, 2]}, {"layers": [2, 1]}, id="list-order-matters"),
    pytest.param({"opt": {"layers": [1, 2]}}, {"opt": {"layers": [2, 1]}}, id="nested-list-order-matters"),
    pytest.param({"opt": {"lr": 0.1}}, {"opt": {"lr": 0.2}}, id="nested-value"),
    pytest.param({"a": None}, {}, id="none-vs-missing"),
    pytest.param({"a": 1}, {"a": 1, "b": 1}, id="extra-param"),
    pytest.param({"a": 1}, {"b": 1}, id="renamed-param"),
    pytest.param({"x": float("inf")}, {"x": float("-inf")}, id="inf-vs-minus-inf"),
    pytest.param({"name": "café"}, {"name": "cafe"}, id="accent-matters"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_equivalent_params_give_the_same_key(a: dict[str, Any], b: dict[str, Any] | None) -> None:
    assert lt.compute_key("exp", a) == lt.compute_key("exp", b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_params_give_different_keys(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert lt.compute_key("exp", a) != lt.compute_key("exp", b)


def test_the_key_is_a_sha256_hex_digest_and_stable_across_calls() -> None:
    key = lt.compute_key("exp", {"lr": 0.1})
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    assert lt.compute_key("exp", {"lr": 0.1}) == key


def test_the_experiment_name_changes_the_key() -> None:
    assert lt.compute_key("mnist", {"lr": 0.1}) != lt.compute_key("cifar", {"lr": 0.1})


def test_excluded_params_do_not_change_the_key() -> None:
    base = lt.compute_key("exp", {"lr": 0.1, "seed": 1, "out": "a/"}, exclude=["seed", "out"])
    assert lt.compute_key("exp", {"lr": 0.1, "seed": 2, "out": "b/"}, exclude=["seed", "out"]) == base
    assert lt.compute_key("exp", {"lr": 0.1}, exclude=["seed", "out"]) == base
    # ... but the params that are not excluded still do
    assert lt.compute_key("exp", {"lr": 0.2, "seed": 1, "out": "a/"}, exclude=["seed", "out"]) != base
    # and without exclude, the seed counts
    assert lt.compute_key("exp", {"lr": 0.1, "seed": 1}) != lt.compute_key("exp", {"lr": 0.1, "seed": 2})


def test_exclude_accepts_a_single_name() -> None:
    assert lt.compute_key("exp", {"lr": 0.1, "seed": 1}, exclude="seed") == lt.compute_key(
        "exp", {"lr": 0.1, "seed": 2}, exclude="seed"
    )


def test_unknown_identity_part_is_refused_naming_the_choices() -> None:
    with pytest.raises(lt.InvalidInput, match="params, code, inputs, env"):
        lt.compute_key("exp", {"lr": 0.1}, identity=["params", "hostname"])


# -- inputs: hashed by content ---------------------------------------------------------------------


def test_inputs_are_hashed_by_content_not_by_path(tmp_path: Path) -> None:
    a = tmp_path / "a" / "train.csv"
    b = tmp_path / "b" / "copy-of-train.csv"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("x,y\n1,2\n")
    key_a = lt.compute_key("exp", {"lr": 0.1}, inputs={"train": a})
    assert lt.compute_key("exp", {"lr": 0.1}, inputs={"train": str(b)}) == key_a
    assert key_a != lt.compute_key("exp", {"lr": 0.1})  # declaring an input counts


def test_editing_an_input_changes_the_key_and_restoring_it_restores_the_key(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    before = lt.compute_key("exp", {"lr": 0.1}, inputs={"train": data})
    data.write_text("x,y\n1,3\n")  # same size, different content
    edited = lt.compute_key("exp", {"lr": 0.1}, inputs={"train": data})
    assert edited != before
    data.write_text("x,y\n1,2\n")
    assert lt.compute_key("exp", {"lr": 0.1}, inputs={"train": data}) == before


def test_a_directory_input_is_hashed_by_every_file_in_it(tmp_path: Path) -> None:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    before = lt.compute_key("exp", {}, inputs={"data": d})
    (d / "sub" / "b.txt").write_text("B")
    assert lt.compute_key("exp", {}, inputs={"data": d}) != before


def test_a_missing_input_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(lt.InvalidInput, match="train"):
        lt.compute_key("exp", {}, inputs={"train": tmp_path / "nope.csv"})


# -- code: the git state counts, untracked files do not --------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_env: None) -> Path:  # noqa: F811
    path = make_repo(tmp_path / "project", {"train.py": "lr = 0.1\n", "README.md": "hello\n"})
    monkeypatch.chdir(path)
    return path


def test_an_uncommitted_change_to_a_tracked_file_changes_the_key(repo: Path) -> None:
    clean = lt.compute_key("e", {"lr": 0.1})
    (repo / "train.py").write_text("lr = 0.2\n")
    dirty = lt.compute_key("e", {"lr": 0.1})
    assert dirty != clean
    (repo / "train.py").write_text("lr = 0.3\n")  # a different edit is different code again
    assert lt.compute_key("e", {"lr": 0.1}) not in (clean, dirty)
    (repo / "train.py").write_text("lr = 0.1\n")  # reverted: the same code as the commit
    assert lt.compute_key("e", {"lr": 0.1}) == clean


def test_a_new_commit_changes_the_key(repo: Path) -> None:
    clean = lt.compute_key("e", {"lr": 0.1})
    (repo / "train.py").write_text("lr = 0.2\n")
    git(repo, "commit", "-qam", "change")
    assert lt.compute_key("e", {"lr": 0.1}) != clean


def test_untracked_files_do_not_change_the_key(repo: Path) -> None:
    clean = lt.compute_key("e", {"lr": 0.1})
    (repo / "outputs").mkdir()
    (repo / "outputs" / "model.pt").write_bytes(b"weights")
    (repo / "notes.txt").write_text("scratch\n")
    assert lt.compute_key("e", {"lr": 0.1}) == clean


def test_identity_params_only_ignores_the_code(repo: Path) -> None:
    params_only = lt.compute_key("e", {"lr": 0.1}, identity=["params"])
    full = lt.compute_key("e", {"lr": 0.1})
    (repo / "train.py").write_text("lr = 0.2\n")
    assert lt.compute_key("e", {"lr": 0.1}, identity=["params"]) == params_only
    assert lt.compute_key("e", {"lr": 0.1}) != full
    assert lt.compute_key("e", {"lr": 0.2}, identity=["params"]) != params_only


def test_a_run_started_in_the_repo_gets_the_key_compute_key_predicts(repo: Path) -> None:
    (repo / "train.py").write_text("lr = 0.5\n")
    with lt.start_run("e", params={"lr": 0.1}) as run:
        pass
    assert run.key == lt.compute_key("e", {"lr": 0.1})


# -- exists / find_run ------------------------------------------------------------------------------


def test_exists_is_false_before_and_true_after_a_finished_run_with_the_same_params() -> None:
    assert lt.exists("mnist", params={"lr": 0.01, "epochs": 3}) is False
    assert lt.find_run("mnist", params={"lr": 0.01, "epochs": 3}) is None
    with lt.start_run("mnist", params={"lr": 0.01, "epochs": 3}) as run:
        run.log_metric("loss", 0.5)
    assert lt.exists("mnist", params={"epochs": 3, "lr": 0.01}) is True
    found = lt.find_run("mnist", params={"epochs": 3.0, "lr": 0.01})
    assert found is not None and found.id == run.id
    assert found.status is lt.RunStatus.FINISHED
    # other params, another experiment: not the same experiment
    assert lt.exists("mnist", params={"lr": 0.02, "epochs": 3}) is False
    assert lt.exists("cifar", params={"lr": 0.01, "epochs": 3}) is False


def test_a_running_run_does_not_count_as_done() -> None:
    run = lt.start_run("mnist", params={"lr": 0.01})
    try:
        assert lt.exists("mnist", params={"lr": 0.01}) is False
    finally:
        run.end()
    assert lt.exists("mnist", params={"lr": 0.01}) is True


def test_a_failed_run_does_not_count_as_done() -> None:
    with pytest.raises(ValueError):
        with lt.start_run("mnist", params={"lr": 0.01}):
            raise ValueError("diverged")
    assert lt.exists("mnist", params={"lr": 0.01}) is False
    assert lt.find_run("mnist", params={"lr": 0.01}) is None


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_a_run_ended_failed_or_killed_does_not_count_as_done(status: str) -> None:
    run = lt.start_run("mnist", params={"lr": 0.01})
    run.end(status)
    assert run.status.value == status
    assert lt.exists("mnist", params={"lr": 0.01}) is False


def test_find_run_returns_the_latest_finished_run_of_several() -> None:
    with lt.start_run("mnist", params={"lr": 0.01}):
        pass
    with lt.start_run("mnist", params={"lr": 0.01}) as second:
        pass
    found = lt.find_run("mnist", params={"lr": 0.01})
    assert found is not None and found.id == second.id


def test_exists_honours_exclude_and_inputs(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("1\n")
    with lt.start_run("e", params={"lr": 0.1, "seed": 1}, exclude=["seed"], inputs={"d": data}):
        pass
    assert lt.exists("e", params={"lr": 0.1, "seed": 7}, exclude=["seed"], inputs={"d": data}) is True
    assert lt.exists("e", params={"lr": 0.1, "seed": 7}, inputs={"d": data}) is False
    data.write_text("2\n")
    assert lt.exists("e", params={"lr": 0.1, "seed": 7}, exclude=["seed"], inputs={"d": data}) is False


def test_exists_looks_in_the_store_it_is_given(tmp_path: Path) -> None:
    other = str(tmp_path / "other-store")
    with lt.start_run("e", params={"lr": 0.1}, store=other):
        pass
    assert lt.exists("e", params={"lr": 0.1}, store=other) is True
    assert lt.exists("e", params={"lr": 0.1}) is False  # the default store has no such run


# -- the CLI shows and selects by key ----------------------------------------------------------------


def test_runs_key_json_lists_exactly_the_runs_with_that_key(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    lt.set_store(store)
    same = []
    for _ in range(2):
        with lt.start_run("e", params={"lr": 0.1}) as run:
            same.append(run.id)
    with lt.start_run("e", params={"lr": 0.2}) as other:
        pass
    with lt.start_run("f", params={"lr": 0.1}) as other_exp:
        pass
    key = lt.compute_key("e", {"lr": 0.1})
    result = CliRunner().invoke(main, ["--store", store, "runs", "--key", key, "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert sorted(r["id"] for r in listed) == sorted(same)
    assert all(r["run_key"] == key for r in listed)
    assert other.id not in result.output and other_exp.id not in result.output


def test_runs_key_with_an_unknown_key_lists_nothing(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with lt.start_run("e", params={"lr": 0.1}, store=store):
        pass
    result = CliRunner().invoke(main, ["--store", store, "runs", "--key", "0" * 64, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_show_prints_the_run_key(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with lt.start_run("e", params={"lr": 0.1}, store=store) as run:
        pass
    key = run.key
    assert key is not None and len(key) == 64
    result = CliRunner().invoke(main, ["--store", store, "show", run.id[:8]])
    assert result.exit_code == 0, result.output
    assert "run key" in result.output
    assert key in result.output
    as_json = CliRunner().invoke(main, ["--store", store, "show", run.id, "--json"])
    assert json.loads(as_json.output)["run_key"] == key


NFC, NFD = "caf\u00e9", "cafe\u0301"  # one name, two spellings


def test_nfc_and_nfd_spellings_of_a_name_are_one_experiment_one_key_and_one_lookup() -> None:
    with lt.start_run(NFC, params={NFD: 1}, tags={NFD: "t"}) as run:
        run.log_metric(NFD, 1.0)
        run.log_metric(NFC, 2.0)  # the same metric
    with lt.start_run(NFD, params={NFC: 2}):
        pass
    assert [e.name for e, _ in lt.list_experiments()] == [NFC]
    assert len(lt.search_runs(NFD)) == 2 and len(lt.search_runs(NFC)) == 2
    stored = lt.get_run(run.id)
    assert stored.experiment == NFC and stored.params == {NFC: 1} and stored.tags[NFC] == "t"
    assert stored.history(NFC).values == [1.0, 2.0]
    assert lt.exists(NFD, {NFC: 1}) and lt.exists(NFC, {NFD: 1})
    assert lt.compute_key(NFD, {NFD: 1}) == lt.compute_key(NFC, {NFC: 1}) == stored.key


@pytest.mark.parametrize("blank", [" ", "\u00a0", "\u3000", " \t "], ids=repr)
def test_names_and_keys_of_only_whitespace_are_refused(blank: str) -> None:
    for call, field in ((lambda: lt.start_run(blank), "experiment"), (lambda: lt.start_run("e", name=blank), "name"),
                        (lambda: lt.start_run("e", params={blank: 1}), "param key")):
        with pytest.raises(lt.InvalidInput, match="only white space") as caught:
            call()
        assert caught.value.field == field
    with lt.start_run("e") as run:
        with pytest.raises(lt.InvalidInput, match="only white space"):
            run.log_metric(blank, 1.0)
        with pytest.raises(lt.InvalidInput, match="only white space"):
            run.set_tag(blank, "v")
