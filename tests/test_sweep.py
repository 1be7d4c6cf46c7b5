"""Never run the same experiment twice: ``@track`` skips finished work, ``sweep`` runs every
configuration exactly once — across processes, and after a worker is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

import labtrack as lt


class Box:
    """A result that JSON cannot hold (pickled by @track)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Box) and other.value == self.value


# -- @track --------------------------------------------------------------------------------------


def test_a_second_call_returns_the_recorded_result_without_running() -> None:
    calls: list[tuple[float, int]] = []

    @lt.track("train")
    def train(lr: float, epochs: int = 3) -> dict[str, float]:
        calls.append((lr, epochs))
        return {"acc": lr * 10, "epochs": epochs}

    assert train(0.1) == {"acc": 1.0, "epochs": 3}
    assert train(0.1) == {"acc": 1.0, "epochs": 3}
    assert train(lr=0.1) == {"acc": 1.0, "epochs": 3}
    assert calls == [(0.1, 3)]
    assert train(0.2) == {"acc": 2.0, "epochs": 3}  # other params: a new experiment
    assert calls == [(0.1, 3), (0.2, 3)]
    runs = lt.search_runs("train")
    assert len(runs) == 2
    assert {r.status for r in runs} == {lt.RunStatus.FINISHED}
    assert sorted(r.params["lr"] for r in runs) == [0.1, 0.2]


def test_defaults_count_as_params() -> None:
    calls = []

    @lt.track("train")
    def train(lr: float, epochs: int = 3) -> int:
        calls.append((lr, epochs))
        return epochs

    train(1)
    train(1, epochs=3)
    train(1, 3)
    assert calls == [(1, 3)]
    (run,) = lt.search_runs("train")
    assert run.params == {"lr": 1, "epochs": 3}
    assert train(1, epochs=4) == 4  # a different value of the defaulted param runs
    assert calls == [(1, 3), (1, 4)]


def test_bare_track_uses_the_function_name_as_experiment() -> None:
    @lt.track
    def fit(x: int) -> int:
        return x + 1

    assert fit(1) == 2
    (run,) = lt.search_runs("fit")
    assert run.result == 2 and run.params == {"x": 1}


def test_force_reruns_even_when_a_finished_run_exists() -> None:
    calls = []

    @lt.track("train")
    def train(lr: float) -> int:
        calls.append(lr)
        return len(calls)

    assert train(0.1) == 1
    assert train(0.1) == 1  # skipped
    assert train(0.1, force=True) == 2
    assert train.force(0.1) == 3
    assert calls == [0.1, 0.1, 0.1]
    assert len(lt.search_runs("train")) == 3
    assert train(0.1) == 3  # the latest finished run's result


def test_a_failed_call_is_rerun_by_the_next_call() -> None:
    calls = []

    @lt.track("train")
    def train(lr: float) -> str:
        calls.append(lr)
        if len(calls) == 1:
            raise RuntimeError("diverged")
        return "ok"

    with pytest.raises(RuntimeError, match="diverged"):
        train(0.1)
    assert train(0.1) == "ok"
    assert train(0.1) == "ok"
    assert calls == [0.1, 0.1]
    statuses = sorted(r.status.value for r in lt.search_runs("train"))
    assert statuses == ["FAILED", "FINISHED"]


def test_the_result_is_recorded_on_the_run() -> None:
    @lt.track("train")
    def train(lr: float) -> dict[str, Any]:
        return {"acc": 0.9, "curve": [1, 2]}

    train(0.1)
    found = train.find(0.1)
    assert found is not None
    assert found.result == {"acc": 0.9, "curve": [1, 2]}


@pytest.mark.parametrize(
    ("value", "trust_pickle"),
    [pytest.param({1, 2, 3}, False, id="set"), pytest.param(b"\x00bytes", False, id="bytes"),
     pytest.param(Box([1, "two"]), True, id="custom-object")],
)
def test_a_result_json_cannot_hold_is_returned_on_skip(value: Any, trust_pickle: bool) -> None:
    """Sets and bytes are stored as data; an object only with pickle, which the caller must trust."""
    calls = []

    @lt.track("train", trust_pickle=trust_pickle)
    def train(lr: float) -> Any:
        calls.append(lr)
        return value

    assert train(0.1) == value
    again = train(0.1)
    assert calls == [0.1]
    assert type(again) is type(value) and again == value
    (run,) = lt.search_runs("train")
    assert ("labtrack/result.pkl" in [a.path for a in run.artifacts]) is trust_pickle


def test_a_dict_result_with_int_keys_comes_back_equal_on_skip() -> None:
    @lt.track("train")
    def train(lr: float) -> dict[int, str]:
        return {1: "one", 2: "two"}

    first = train(0.1)
    assert train(0.1) == first  # a user indexes the result by the same keys on every call


def test_numpy_results_come_back_exactly_with_a_json_preview() -> None:
    np = pytest.importorskip("numpy")

    @lt.track("train")
    def train(kind: str) -> Any:
        if kind == "scalar":
            return np.float64(0.25)
        if kind == "int":
            return np.int64(7)
        if kind == "array":
            return np.arange(3)
        return {"acc": np.float32(0.5), "w": np.array([[1.5, 2.0]])}

    for kind in ("scalar", "int", "array", "nested"):
        train(kind)
    # A skipped call returns exactly what the function returned, numpy types included...
    assert train("scalar") == 0.25 and type(train("scalar")) is np.float64
    assert train("int") == 7 and type(train("int")) is np.int64
    assert np.array_equal(train("array"), np.arange(3))
    nested = train("nested")
    assert nested["acc"] == np.float32(0.5) and np.array_equal(nested["w"], np.array([[1.5, 2.0]]))
    # ...and the stored record is plain JSON that people and other tools can read: values, small arrays.
    stored = {r.params["kind"]: r.record.result for r in lt.search_runs("train")}
    assert stored["scalar"]["value"] == 0.25 and stored["int"]["value"] == 7
    assert stored["array"]["preview"] == [0, 1, 2] and stored["nested"]["w"]["preview"] == [[1.5, 2.0]]


def test_inputs_named_by_param_are_hashed_by_content(tmp_path: Path) -> None:
    calls = []

    @lt.track("train", inputs=["data"])
    def train(data: str, lr: float = 0.1) -> int:
        calls.append(data)
        return len(Path(data).read_text())

    first = tmp_path / "a.csv"
    first.write_text("1,2\n")
    copy = tmp_path / "copy.csv"
    copy.write_text("1,2\n")
    assert train(str(first)) == 4
    # the path is also a param, so the same content under another path is another configuration ...
    # ... but the same path with new content must never be skipped:
    first.write_text("1,2,3\n")
    assert train(str(first)) == 6
    assert calls == [str(first), str(first)]
    first.write_text("1,2\n")
    assert train(str(first)) == 4  # the original content again: skipped
    assert len(calls) == 2


def test_inputs_named_by_param_with_the_path_excluded_skip_the_same_content_elsewhere(tmp_path: Path) -> None:
    calls = []

    @lt.track("train", inputs=["data"], exclude=["data"])
    def train(data: str) -> str:
        calls.append(data)
        return Path(data).read_text()

    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("same\n")
    b.write_text("same\n")
    assert train(str(a)) == "same\n"
    assert train(str(b)) == "same\n"
    assert calls == [str(a)]
    b.write_text("other\n")
    assert train(str(b)) == "other\n"
    assert calls == [str(a), str(b)]


def test_inputs_naming_no_parameter_are_refused() -> None:
    @lt.track("train", inputs=["dataset"])
    def train(data: str) -> None:
        return None

    with pytest.raises(lt.InvalidInput, match="dataset"):
        train("x.csv")


def test_excluded_params_do_not_make_a_new_configuration() -> None:
    calls = []

    @lt.track("train", exclude=["seed"])
    def train(lr: float, seed: int = 0) -> int:
        calls.append(seed)
        return seed

    assert train(0.1, seed=1) == 1
    assert train(0.1, seed=2) == 1  # same experiment: the recorded result
    assert calls == [1]


def test_a_call_with_wrong_arguments_is_refused_before_any_run() -> None:
    @lt.track("train")
    def train(lr: float) -> None:
        return None

    with pytest.raises(lt.InvalidInput):
        train(0.1, 0.2)
    assert len(lt.search_runs("train")) == 0


# -- sweep ------------------------------------------------------------------------------------------


def test_a_grid_expands_to_every_combination_last_key_fastest() -> None:
    calls = []

    @lt.track("grid")
    def fn(a: int, b: str) -> str:
        calls.append((a, b))
        return f"{a}{b}"

    result = lt.sweep(fn, grid={"a": [1, 2], "b": ["x", "y", "z"]}, progress=False)
    expected = [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]
    assert calls == expected
    assert result.total == 6
    assert result.ran == [{"a": a, "b": b} for a, b in expected]
    assert result.skipped == [] and result.failed == [] and result.done_elsewhere == []
    assert result.complete
    runs = lt.search_runs("grid")
    assert len(runs) == 6 and {r.status for r in runs} == {lt.RunStatus.FINISHED}
    assert sorted(r.result for r in runs) == sorted(f"{a}{b}" for a, b in expected)


def test_a_second_sweep_skips_everything() -> None:
    calls = []

    def fn(a: int, b: int) -> int:
        calls.append((a, b))
        return a * b

    grid = {"a": [1, 2, 3], "b": [10, 20]}
    first = lt.sweep(fn, grid=grid, progress=False)
    assert len(first.ran) == 6 and len(calls) == 6
    second = lt.sweep(fn, grid=grid, progress=False)
    assert second.skipped == first.ran
    assert second.ran == [] and second.failed == []
    assert second.complete
    assert len(calls) == 6
    assert len(lt.search_runs("fn")) == 6  # a plain function is tracked under its name


def test_a_sweep_skips_configurations_already_run_by_the_tracked_function() -> None:
    calls = []

    @lt.track("mixed")
    def fn(a: int) -> int:
        calls.append(a)
        return a

    fn(2)
    result = lt.sweep(fn, grid={"a": [1, 2, 3]}, progress=False)
    assert result.skipped == [{"a": 2}]
    assert result.ran == [{"a": 1}, {"a": 3}]
    assert calls == [2, 1, 3]


def test_a_failing_configuration_is_reported_and_rerun_by_the_next_sweep() -> None:
    calls = []
    broken = {"on": True}

    def fn(a: int) -> int:
        calls.append(a)
        if a == 2 and broken["on"]:
            raise ValueError("bad config 2")
        return a

    first = lt.sweep(fn, grid={"a": [1, 2, 3]}, experiment="flaky", progress=False)
    assert first.ran == [{"a": 1}, {"a": 3}]
    assert len(first.failed) == 1
    config, error = first.failed[0]
    assert config == {"a": 2}
    assert "ValueError" in error and "bad config 2" in error
    assert not first.complete
    assert calls.count(2) == 1  # not retried within the same sweep
    assert lt.track("flaky")(fn).exists(a=2) is False

    broken["on"] = False
    second = lt.sweep(fn, grid={"a": [1, 2, 3]}, experiment="flaky", progress=False)
    assert second.ran == [{"a": 2}]
    assert second.skipped == [{"a": 1}, {"a": 3}]
    assert second.failed == [] and second.complete
    assert calls.count(2) == 2
    assert lt.track("flaky")(fn).exists(a=2) is True
    statuses = sorted(r.status.value for r in lt.search_runs("flaky") if r.params["a"] == 2)
    assert statuses == ["FAILED", "FINISHED"]


def test_configs_list_form_runs_each_given_configuration() -> None:
    calls = []

    def fn(lr: float, layers: int = 2) -> float:
        calls.append((lr, layers))
        return lr

    configs = [{"lr": 0.1}, {"lr": 0.01, "layers": 4}, {"lr": 0.1, "layers": 2}]
    result = lt.sweep(fn, configs=configs, experiment="listed", progress=False)
    # the third configuration is the first one with its default spelled out: the same experiment
    assert calls == [(0.1, 2), (0.01, 4)]
    assert result.ran == configs[:2]
    assert result.total == 3 and result.complete
    assert len(lt.search_runs("listed")) == 2


def test_a_sweep_with_two_worker_processes_runs_every_configuration_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()

    def fn(i: int) -> int:
        (marks / f"{i}-{os.getpid()}").touch()
        return i * i

    result = lt.sweep(fn, grid={"i": list(range(8))}, workers=2, experiment="parallel", progress=False)
    assert sorted(c["i"] for c in result.ran) == list(range(8))
    assert result.failed == [] and result.complete
    done = Counter(name.split("-")[0] for name in os.listdir(marks))
    assert done == Counter(str(i) for i in range(8))
    runs = lt.search_runs("parallel")
    assert len(runs) == 8
    assert {r.status for r in runs} == {lt.RunStatus.FINISHED}
    assert sorted(r.result for r in runs) == [i * i for i in range(8)]


def test_a_failure_in_a_worker_process_is_reported_and_the_rest_completes() -> None:
    def fn(i: int) -> int:
        if i == 3:
            raise ValueError(f"config {i} is broken")
        return i

    result = lt.sweep(fn, grid={"i": list(range(6))}, workers=2, experiment="parallel-fail", progress=False)
    assert sorted(c["i"] for c in result.ran) == [0, 1, 2, 4, 5]
    assert [(c, "ValueError" in e and "config 3 is broken" in e) for c, e in result.failed] == [({"i": 3}, True)]
    assert not result.complete
    statuses = {r.params["i"]: r.status.value for r in lt.search_runs("parallel-fail")}
    assert statuses == {0: "FINISHED", 1: "FINISHED", 2: "FINISHED", 3: "FAILED", 4: "FINISHED", 5: "FINISHED"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"grid": {}}, "grid", id="empty-grid"),
        pytest.param({"grid": {"a": 3}}, "grid['a']", id="scalar-values"),
        pytest.param({"grid": {"a": "abc"}}, "grid['a']", id="string-values"),
        pytest.param({"grid": [("a", [1])]}, "grid", id="grid-not-a-dict"),
        pytest.param({}, "grid", id="neither-grid-nor-configs"),
        pytest.param({"grid": {"a": [1]}, "configs": [{"a": 1}]}, "grid", id="both-grid-and-configs"),
        pytest.param({"configs": [{"a": 1}, 5]}, "configs", id="config-not-a-dict"),
        pytest.param({"grid": {"a": [1]}, "workers": 0}, "workers", id="zero-workers"),
        pytest.param({"grid": {"b": [1]}}, "params", id="grid-names-no-parameter"),
    ],
)
def test_a_bad_sweep_is_refused_before_running_anything(kwargs: dict[str, Any], field: str) -> None:
    calls = []

    def fn(a: int) -> int:
        calls.append(a)
        return a

    with pytest.raises(lt.InvalidInput) as info:
        lt.sweep(fn, experiment="bad", progress=False, **kwargs)
    assert info.value.field == field
    assert calls == []
    assert len(lt.search_runs("bad")) == 0


def test_a_lease_not_longer_than_the_heartbeat_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_INTERVAL", "5")
    with pytest.raises(lt.InvalidInput, match="LABTRACK_HEARTBEAT_INTERVAL"):
        lt.sweep(lambda a: a, grid={"a": [1]}, experiment="lease", lease=5, progress=False)


def test_the_first_worker_to_claim_a_configuration_gets_it(store_url: str) -> None:
    """The claim a sweep takes before running a configuration: free -> claimed, held -> busy,
    released done -> done; an expired lease is taken over."""
    from labtrack.store import open_store

    store = open_store(store_url)
    try:
        key = "a" * 64
        assert store.claim(key, "sweep1/host/1", 60.0, 1000.0) == "claimed"
        assert store.claim(key, "sweep2/host/2", 60.0, 1001.0) == "busy"
        assert store.claim(key, "sweep2/host/2", 60.0, 1061.0) == "claimed"  # the lease expired
        assert store.claim(key, "sweep1/host/1", 60.0, 1062.0) == "busy"
        store.release_claim(key, "sweep2/host/2", done=True)
        assert store.claim(key, "sweep3/host/3", 60.0, 1063.0) == "done"
    finally:
        store.close()


def test_a_sweep_on_any_backend_runs_everything_and_then_skips_it(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_INTERVAL", "0.5")
    calls = []

    @lt.track("backend", store=store_url)
    def fn(a: int) -> int:
        calls.append(a)
        return a

    first = lt.sweep(fn, grid={"a": [1, 2, 3]}, lease=3, poll=0.05, progress=False)
    assert first.ran == [{"a": 1}, {"a": 2}, {"a": 3}] and first.complete
    second = lt.sweep(fn, grid={"a": [1, 2, 3]}, progress=False)
    assert second.skipped == first.ran and second.ran == []
    assert calls == [1, 2, 3]


# -- many processes on one store ---------------------------------------------------------------------

CROWD = """
    import json, os, sys, time
    import labtrack as lt

    marks, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    @lt.track("crowd")
    def work(i):
        open(os.path.join(marks, f"{i}-{os.getpid()}"), "x").close()
        time.sleep(0.01)
        return i

    print("waiting", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    # a short lease (renewed every 0.5 s by the heartbeat) keeps a wrongly held claim from costing a minute
    r = lt.sweep(work, grid={"i": list(range(n))}, lease=5, poll=0.05, progress=False)
    print(json.dumps({"ran": [c["i"] for c in r.ran], "failed": [str(f) for f in r.failed],
                      "complete": r.complete}), flush=True)
"""


def run_crowd(tmp_path: Path, env: dict[str, str], processes: int, configs: int) -> list[dict[str, Any]]:
    """Start ``processes`` sweeps over the same ``configs`` configurations, release them together."""
    script = tmp_path / "crowd.py"
    script.write_text(textwrap.dedent(CROWD))
    marks = tmp_path / "marks"
    marks.mkdir()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(marks), str(go), str(configs)], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "waiting", f"a worker did not start: {line!r} {p.communicate()[1]}"
        go.write_text("go")
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    done = Counter(int(name.split("-")[0]) for name in os.listdir(marks))
    assert sorted(done) == list(range(configs)), "every configuration ran"
    assert [i for i, n in done.items() if n > 1] == [], "no configuration ran twice"
    assert sum(len(o["ran"]) for o in outputs) == configs
    assert all(o["failed"] == [] and o["complete"] for o in outputs)
    return outputs


def assert_one_finished_run_per_config(store: str, experiment: str, configs: int) -> None:
    runs = lt.search_runs(experiment, store=store, max_results=10 * configs)
    assert len(runs) == configs
    assert {r.status for r in runs} == {lt.RunStatus.FINISHED}
    assert sorted(r.params["i"] for r in runs) == list(range(configs))


def test_eight_processes_sweeping_one_sqlite_store_run_each_configuration_once(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    store = str(tmp_path / "store")
    env = {**python_env, "LABTRACK_STORE": store, "LABTRACK_HEARTBEAT_INTERVAL": "0.5"}
    run_crowd(tmp_path, env, processes=8, configs=40)
    assert_one_finished_run_per_config(store, "crowd", 40)


@pytest.mark.postgres
def test_four_processes_sweeping_one_postgres_store_run_each_configuration_once(
    tmp_path: Path, python_env: dict[str, str], postgres_url: str
) -> None:
    env = {**python_env, "LABTRACK_STORE": postgres_url, "LABTRACK_ARTIFACTS": str(tmp_path / "artifacts"),
           "LABTRACK_HEARTBEAT_INTERVAL": "0.5"}
    run_crowd(tmp_path, env, processes=4, configs=20)
    assert_one_finished_run_per_config(postgres_url, "crowd", 20)


# -- a killed worker's claim expires and another worker completes its configuration -----------------

LEASED = """
    import json, os, sys, time
    import labtrack as lt

    marks, block = sys.argv[1], sys.argv[2] == "block"

    @lt.track("leased")
    def work(i):
        if i == 2 and block:
            open(os.path.join(marks, "started"), "w").close()
            time.sleep(600)  # killed here, holding the claim on i=2
        open(os.path.join(marks, f"{i}-{os.getpid()}"), "x").close()
        return i

    r = lt.sweep(work, grid={"i": list(range(5))}, lease=2, poll=0.1, progress=False)
    print(json.dumps({"ran": [c["i"] for c in r.ran], "skipped": [c["i"] for c in r.skipped],
                      "failed": [str(f) for f in r.failed], "complete": r.complete}), flush=True)
"""


def kill_a_worker_then_finish_with_another(tmp_path: Path, env: dict[str, str], store: str) -> None:
    script = tmp_path / "leased.py"
    script.write_text(textwrap.dedent(LEASED))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**env, "LABTRACK_HEARTBEAT_INTERVAL": "0.3"}
    a = subprocess.Popen([sys.executable, str(script), str(marks), "block"], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (marks / "started").exists() or a.poll() is not None, timeout=60)
        assert a.poll() is None, f"worker A ended before blocking: {a.communicate()[1]}"
        a.send_signal(signal.SIGKILL)
        a.communicate(timeout=30)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert a.returncode == -signal.SIGKILL
    b = subprocess.run([sys.executable, str(script), str(marks), "run"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert b.returncode == 0, b.stderr
    report = json.loads(b.stdout.strip().splitlines()[-1])
    assert report["skipped"] == [0, 1]  # finished by A before it was killed
    assert sorted(report["ran"]) == [2, 3, 4]  # including the configuration A held
    assert report["failed"] == [] and report["complete"]

    done = Counter(int(name.split("-")[0]) for name in os.listdir(marks) if name != "started")
    assert done == Counter(range(5))
    runs = lt.search_runs("leased", store=store, max_results=100)
    by_config: dict[int, list[str]] = {}
    for r in runs:
        by_config.setdefault(r.params["i"], []).append(r.status.value)
    assert {i: sorted(s) for i, s in by_config.items()} == {
        0: ["FINISHED"], 1: ["FINISHED"], 2: ["CRASHED", "FINISHED"], 3: ["FINISHED"], 4: ["FINISHED"],
    }


def test_a_sigkilled_workers_configuration_is_completed_by_another_after_the_lease(
    tmp_path: Path, python_env: dict[str, str]
) -> None:
    store = str(tmp_path / "store")
    kill_a_worker_then_finish_with_another(tmp_path, {**python_env, "LABTRACK_STORE": store}, store)


@pytest.mark.postgres
def test_a_sigkilled_workers_configuration_is_completed_by_another_on_postgres(
    tmp_path: Path, python_env: dict[str, str], postgres_url: str
) -> None:
    env = {**python_env, "LABTRACK_STORE": postgres_url, "LABTRACK_ARTIFACTS": str(tmp_path / "artifacts")}
    kill_a_worker_then_finish_with_another(tmp_path, env, postgres_url)
