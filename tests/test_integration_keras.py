"""Keras 3's LabtrackCallback on the torch backend (CI has no TensorFlow): a real ``fit`` of a tiny model on the
CPU, what a user finds in the store afterwards, and the rules of every integration (attach or own,
tolerant params, failures, rank zero only)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from framework_helpers import need

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported: its backend is fixed then
need("torch")
keras = need("keras")
np = need("numpy")

import labtrack as lt  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.keras import LabtrackCallback  # noqa: E402

SAMPLES, BATCH = 64, 16  # 4 batches per epoch


def data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 4)).astype("float32")
    return x, (x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32"))[:, None]


def model(lr: float = 0.05) -> Any:
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="tiny")
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.5), loss="mse", metrics=["mae"])
    return net


class Explode(keras.callbacks.Callback):  # type: ignore[misc]
    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == 2:
            raise RuntimeError("the loss exploded")


def fit(callback: LabtrackCallback, net: Any = None, *, epochs: int = 2, more: list[Any] | None = None) -> Any:
    x, y = data()
    return (net or model()).fit(x, y, batch_size=BATCH, epochs=epochs, validation_split=0.25, verbose=0,
                                callbacks=[callback, *(more or [])])


def only_run(experiment: str) -> lt.Run:
    runs = lt.search_runs(experiment)
    assert len(runs) == 1, [r.id for r in runs]
    return lt.get_run(runs[0].id)


def stored(run: lt.Run) -> set[str]:
    """The run's artifacts apart from labtrack's own (the console log)."""
    return {a.path for a in run.artifacts if not a.path.startswith("labtrack/")}


def integration_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, IntegrationWarning)]


def test_the_backend_is_torch() -> None:
    assert keras.backend.backend() == "torch"


def test_a_run_it_starts_has_the_settings_optimizer_and_epoch_metrics_and_finishes() -> None:
    history = fit(LabtrackCallback("keras", tags={"team": "cv"}), epochs=3)

    run = only_run("keras")
    assert (run.status, run.tags["team"]) == ("FINISHED", "cv")
    assert lt.active_run() is None
    assert {"epochs": 3, "steps": 3, "model.class": "Sequential", "model.parameters": 5, "optimizer.class": "SGD",
            "optimizer.momentum": 0.5}.items() <= run.params.items()
    assert run.params["optimizer.learning_rate"] == 0.05  # not 0.05000000074505806, Keras' float32
    assert [r.id for r in lt.search_runs("keras", filter="params.`optimizer.learning_rate` = 0.05")] == [run.id]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        series = run.history(key)
        assert list(series.steps) == [0, 1, 2], key
        assert list(series.values) == pytest.approx(history.history[key]), key
    assert not any(key.startswith("batch/") for key in run.metrics)
    assert stored(run) == set()


@pytest.mark.parametrize(("every", "steps"), [(1, list(range(1, 7))), (2, [2, 4, 6]), (4, [4])])
def test_batch_values_are_logged_every_n_batches_at_the_global_batch(every: int, steps: list[int]) -> None:
    fit(LabtrackCallback("batches", log_every_n_batches=every))  # 48 training samples: 3 batches a epoch
    assert list(only_run("batches").history("batch/loss").steps) == steps


def test_the_model_is_stored_when_asked_and_loads_back(tmp_path: Path) -> None:
    net = model()
    fit(LabtrackCallback("saved", log_model=True), net)
    run = only_run("saved")
    assert stored(run) == {"model/model.keras"}
    run.download_artifacts(tmp_path)
    loaded = keras.saving.load_model(tmp_path / "model" / "model.keras")
    x, _ = data()
    assert np.allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0))


def test_attaching_to_the_active_run_leaves_it_running() -> None:
    with lt.start_run("mine") as run:
        fit(LabtrackCallback("ignored"))
        assert lt.active_run() is run
        got = lt.get_run(run.id)
        assert got.status == "RUNNING" and got.params["epochs"] == 2
        assert list(got.history("loss").steps) == [0, 1]
    assert lt.get_run(run.id).status == "FINISHED"
    assert lt.search_runs("ignored") == []


def test_a_fit_that_raises_leaves_its_run_to_the_next_fit_which_ends_it_failed() -> None:
    with pytest.raises(RuntimeError, match="exploded"):
        fit(LabtrackCallback("boom"), more=[Explode()])
    failed = only_run("boom")
    assert failed.status == "RUNNING"  # an uncaught exception ends it FAILED at exit

    fit(LabtrackCallback("boom"))
    runs = {r.id: lt.get_run(r.id).status for r in lt.search_runs("boom")}
    assert runs[failed.id] == "FAILED"
    assert sorted(runs.values()) == ["FAILED", "FINISHED"]


def test_a_relogged_setting_is_silent_and_a_changed_one_warns_once_and_training_finishes() -> None:
    callback = LabtrackCallback()
    with lt.start_run("relog") as run:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(callback)
            fit(callback)
        assert integration_warnings(caught) == []

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fit(callback, model(), epochs=3)
        found = integration_warnings(caught)
        assert len(found) == 1 and "'epochs'" in found[0], found
        assert len(history.history["loss"]) == 3
        assert lt.get_run(run.id).params["epochs"] == 2


def test_a_process_of_another_rank_logs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with lt.start_run("ranked") as run:
        monkeypatch.setenv("RANK", "1")
        fit(LabtrackCallback("other", log_every_n_batches=1, log_model=True))
        monkeypatch.delenv("RANK")
        seen = lt.get_run(run.id)
        mine = [k for k in seen.metrics if not k.startswith("system/")]  # not labtrack's own system metrics
        assert (seen.params, mine, stored(seen)) == ({}, [], set())
    assert lt.search_runs("other") == []


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "2"])
def test_a_bad_batch_interval_is_refused_naming_the_field(every: Any) -> None:
    with pytest.raises(ValueError, match="log_every_n_batches"):
        LabtrackCallback(log_every_n_batches=every)


def test_without_a_chosen_backend_or_tensorflow_the_import_picks_torch(tmp_path: Path) -> None:
    """Keras' default backend is TensorFlow, which CI lacks: importing the integration first picks torch."""
    import importlib.util
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path / "keras-home")  # no keras.json naming a backend
    code = "import labtrack.integrations.keras, keras, os; print(keras.backend.backend(), os.environ.get('KERAS_BACKEND'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = ["tensorflow", "None"] if importlib.util.find_spec("tensorflow") else ["torch", "torch"]
    assert done.stdout.split() == expected
