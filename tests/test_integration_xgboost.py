"""labtrack.integrations.xgboost.LabtrackCallback with real XGBoost training tiny boosters on the CPU."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from framework_helpers import need

xgb = need("xgboost")
need("sklearn")

import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

import labtrack as lt  # noqa: E402
from labtrack import RunStatus  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.xgboost import LabtrackCallback  # noqa: E402

X, Y = make_classification(n_samples=160, n_features=6, random_state=0)
TRAIN = xgb.DMatrix(X[:120], label=Y[:120])
VALID = xgb.DMatrix(X[120:], label=Y[120:])
PARAMS = {"max_depth": 2, "eta": 0.5, "objective": "binary:logistic", "eval_metric": ["logloss", "auc"]}


def runs(experiment: str = "xgboost") -> list[lt.Run]:
    lt.flush()
    return list(lt.search_runs(experiment))


def only_run(experiment: str = "xgboost") -> lt.Run:
    found = runs(experiment)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def train(callback: Any, rounds: int = 4, params: dict[str, Any] | None = None, **options: Any) -> Any:
    return xgb.train(params or PARAMS, TRAIN, rounds, evals=[(TRAIN, "train"), (VALID, "valid")],
                     callbacks=[callback], verbose_eval=False, **options)


def test_each_iterations_evaluation_is_a_metric_series_by_data_and_metric() -> None:
    recorded: dict[str, Any] = {}
    train(LabtrackCallback(), evals_result=recorded)
    run = only_run()
    assert run.status is RunStatus.FINISHED
    assert {k for k in run.metrics if not k.startswith("system/")} == {"train-logloss", "train-auc", "valid-logloss",
                                                                 "valid-auc"}
    history = run.history("valid-logloss")
    assert list(history.steps) == [0, 1, 2, 3]
    assert list(history.values) == pytest.approx(recorded["valid"]["logloss"])


def test_the_boosters_params_are_logged_under_xgboost() -> None:
    train(LabtrackCallback())
    params = only_run().params
    assert params["xgboost.max_depth"] == 2
    assert params["xgboost.eta"] == pytest.approx(0.5)
    assert params["xgboost.objective"] == "binary:logistic"


def test_params_given_to_the_callback_are_logged_as_given() -> None:
    train(LabtrackCallback(params={"max_depth": 2, "eta": 0.5}))
    assert only_run().params == {"max_depth": 2, "eta": 0.5}


def test_the_scikit_learn_api_logs_its_eval_set() -> None:
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, callbacks=[LabtrackCallback()])
    model.fit(X, Y, eval_set=[(X[120:], Y[120:])], verbose=False)
    history = only_run().history("validation_0-logloss")
    assert list(history.steps) == [0, 1, 2]
    assert list(history.values) == pytest.approx(model.evals_result()["validation_0"]["logloss"])


def test_a_cloned_estimator_gets_a_fresh_callback_and_its_own_run() -> None:
    model = xgb.XGBClassifier(n_estimators=2, max_depth=2, callbacks=[LabtrackCallback()])
    copy = clone(model)
    assert copy.callbacks[0] is not model.callbacks[0]
    for each in (model, copy):
        each.fit(X, Y, eval_set=[(X, Y)], verbose=False)
    assert [r.status for r in runs()] == [RunStatus.FINISHED, RunStatus.FINISHED]


def test_training_inside_an_active_run_logs_into_it_and_leaves_it_running() -> None:
    with lt.start_run("mine") as run:
        train(LabtrackCallback())
        assert lt.active_run() is run
        assert run.status is RunStatus.RUNNING
        assert "valid-auc" in run.metrics
    assert runs() == []


def test_retraining_with_a_changed_param_in_one_run_warns_once_and_trains() -> None:
    with lt.start_run("mine") as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(LabtrackCallback())
        booster = train(LabtrackCallback(), params={**PARAMS, "max_depth": 3})
        train(LabtrackCallback(), params={**PARAMS, "max_depth": 4})
    about_depth = [w for w in caught if issubclass(w.category, IntegrationWarning) and "max_depth" in str(w.message)]
    assert len(about_depth) == 1
    assert run.params["xgboost.max_depth"] == 2
    assert booster.num_boosted_rounds() == 4


def test_log_model_stores_the_booster_as_json_that_loads_back() -> None:
    booster = train(LabtrackCallback(log_model=True))
    run = only_run()
    with run.open_artifact("model.json") as stream:
        data = stream.read()
    assert data.startswith(b"{")
    loaded = xgb.Booster()
    loaded.load_model(bytearray(data))
    assert np.allclose(loaded.predict(VALID), booster.predict(VALID))


def test_early_stopping_ends_the_run_and_records_the_best_iteration() -> None:
    booster = train(LabtrackCallback(), rounds=50, early_stopping_rounds=2)
    run = only_run()
    assert run.status is RunStatus.FINISHED
    assert run.metrics["best_iteration"] == booster.best_iteration
    assert len(run.history("valid-auc").steps) == booster.num_boosted_rounds()


def test_cross_validation_logs_the_mean_and_the_std_over_folds() -> None:
    result = xgb.cv({"max_depth": 2, "objective": "binary:logistic"}, TRAIN, 3, nfold=2, metrics="logloss",
                    callbacks=[LabtrackCallback()])
    run = only_run()
    assert list(run.history("test-logloss").values) == pytest.approx(list(result["test-logloss-mean"]))
    assert list(run.history("test-logloss-std").values) == pytest.approx(list(result["test-logloss-std"]))


class Crash(xgb.callback.TrainingCallback):
    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if epoch == 1:
            raise RuntimeError("out of memory")
        return False


def test_a_training_that_raised_is_marked_failed_when_the_callback_trains_again() -> None:
    callback = LabtrackCallback()
    with pytest.raises(RuntimeError, match="out of memory"):
        xgb.train(PARAMS, TRAIN, 4, evals=[(VALID, "valid")], callbacks=[callback, Crash()], verbose_eval=False)
    train(callback)
    assert sorted(r.status.value for r in runs()) == ["FAILED", "FINISHED"]


def test_only_rank_zero_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    booster = train(LabtrackCallback())
    assert runs() == []
    assert booster.num_boosted_rounds() == 4


def test_a_failing_store_call_warns_and_training_goes_on() -> None:
    with lt.start_run("ended") as run:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # warned once per process: maybe by an earlier test
        booster = train(LabtrackCallback(run=run))  # logging into a run this handle ended is refused
    assert booster.num_boosted_rounds() == 4
    assert [k for k in lt.get_run(run.id).metrics if not k.startswith("system/")] == []
