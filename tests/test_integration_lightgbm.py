"""labtrack.integrations.lightgbm's callback with real LightGBM training tiny boosters on the CPU."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from framework_helpers import need

lgb = need("lightgbm")
need("sklearn")

import numpy as np  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

import labtrack as lt  # noqa: E402
from labtrack import RunStatus  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.lightgbm import labtrack_callback  # noqa: E402

X, Y = make_classification(n_samples=160, n_features=6, random_state=0)
PARAMS = {"objective": "binary", "num_leaves": 4, "learning_rate": 0.5, "metric": ["binary_logloss", "auc"],
          "verbose": -1, "num_threads": 1}


def datasets() -> tuple[Any, Any]:
    train = lgb.Dataset(X[:120], Y[:120])
    return train, lgb.Dataset(X[120:], Y[120:], reference=train)


def runs(experiment: str = "lightgbm") -> list[lt.Run]:
    lt.flush()
    return list(lt.search_runs(experiment))


def only_run(experiment: str = "lightgbm") -> lt.Run:
    found = runs(experiment)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def train(callback: Any, rounds: int = 4, params: dict[str, Any] | None = None, extra: list[Any] | None = None,
          recorded: dict[str, Any] | None = None) -> Any:
    train_set, valid = datasets()
    more = [lgb.record_evaluation(recorded)] if recorded is not None else []
    return lgb.train(params or PARAMS, train_set, rounds, valid_sets=[train_set, valid],
                     valid_names=["train", "valid"], callbacks=[callback, *more, *(extra or [])])


def test_each_iterations_evaluation_is_a_metric_series_by_data_and_metric() -> None:
    recorded: dict[str, Any] = {}
    train(labtrack_callback(), recorded=recorded)
    run = only_run()
    assert run.status is RunStatus.FINISHED
    assert {k for k in run.metrics if not k.startswith("system/")} == {"train-binary_logloss", "train-auc",
                                                                 "valid-binary_logloss", "valid-auc"}
    history = run.history("valid-auc")
    assert list(history.steps) == [0, 1, 2, 3]
    assert list(history.values) == pytest.approx(recorded["valid"]["auc"])


def test_the_training_params_are_logged_under_lightgbm() -> None:
    train(labtrack_callback())
    params = only_run().params
    assert params["lightgbm.num_leaves"] == 4
    assert params["lightgbm.learning_rate"] == 0.5
    assert params["lightgbm.metric"] == ["binary_logloss", "auc"]


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")  # eval_X/eval_y: LightGBM >= 4.7 only
def test_the_scikit_learn_api_logs_its_eval_set() -> None:
    model = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1)
    model.fit(X, Y, eval_set=[(X[120:], Y[120:])], eval_names=["held_out"], callbacks=[labtrack_callback()])
    run = only_run()
    assert run.status is RunStatus.FINISHED
    history = run.history("held_out-binary_logloss")
    assert list(history.steps) == [0, 1, 2]
    assert list(history.values) == pytest.approx(model.evals_result_["held_out"]["binary_logloss"])


def test_training_inside_an_active_run_logs_into_it_and_leaves_it_running() -> None:
    with lt.start_run("mine") as run:
        train(labtrack_callback())
        assert lt.active_run() is run
        assert run.status is RunStatus.RUNNING
        assert "valid-auc" in run.metrics
    assert runs() == []


def test_retraining_with_a_changed_param_in_one_run_warns_once_and_trains() -> None:
    with lt.start_run("mine") as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(labtrack_callback())
        train(labtrack_callback(), params={**PARAMS, "num_leaves": 5})
        booster = train(labtrack_callback(), params={**PARAMS, "num_leaves": 6})
    about = [w for w in caught if issubclass(w.category, IntegrationWarning) and "num_leaves" in str(w.message)]
    assert len(about) == 1
    assert run.params["lightgbm.num_leaves"] == 4
    assert booster.current_iteration() == 4


def test_log_model_stores_the_booster_as_text_that_loads_back() -> None:
    booster = train(labtrack_callback(log_model=True))
    with only_run().open_artifact("model.txt") as stream:
        text = stream.read().decode()
    loaded = lgb.Booster(model_str=text)
    assert np.allclose(loaded.predict(X), booster.predict(X))


def test_early_stopping_logs_the_stopping_iteration_and_finish_ends_the_run() -> None:
    callback = labtrack_callback(log_model=True)
    recorded: dict[str, Any] = {}
    booster = train(callback, rounds=200, extra=[lgb.early_stopping(2, verbose=False)], recorded=recorded)
    trained = len(recorded["valid"]["auc"])
    assert trained < 200
    run = only_run()
    assert run.status is RunStatus.RUNNING  # LightGBM told no callback that training ended
    assert list(run.history("valid-auc").steps) == list(range(trained))
    callback.finish(booster)
    assert only_run().status is RunStatus.FINISHED
    assert [a.path for a in only_run().artifacts if not a.path.startswith("labtrack/")] == ["model.txt"]
    assert lt.active_run() is None


def test_as_a_context_manager_a_training_that_raised_ends_failed() -> None:
    def crash(env: Any) -> None:
        if env.iteration == 1:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"), labtrack_callback() as callback:
        train(callback, extra=[crash])
    assert only_run().status is RunStatus.FAILED
    assert lt.active_run() is None


def test_a_run_left_open_ends_when_the_callback_trains_again() -> None:
    callback = labtrack_callback()
    train(callback, rounds=200, extra=[lgb.early_stopping(2, verbose=False)])
    train(callback)
    assert [r.status for r in runs()] == [RunStatus.FINISHED, RunStatus.FINISHED]


def test_cross_validation_logs_the_mean_and_the_std_over_folds() -> None:
    train_set, _ = datasets()
    result = lgb.cv({**PARAMS, "metric": "auc"}, train_set, 3, nfold=2, callbacks=[labtrack_callback()])
    run = only_run()
    assert list(run.history("valid-auc").values) == pytest.approx(list(result["valid auc-mean"]))
    assert list(run.history("valid-auc-std").values) == pytest.approx(list(result["valid auc-stdv"]))


def test_only_rank_zero_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    booster = train(labtrack_callback())
    assert runs() == []
    assert booster.current_iteration() == 4
