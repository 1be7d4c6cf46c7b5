"""labtrack.sklearn.autolog with real scikit-learn estimators on tiny synthetic data: what a user finds in
the store after a fit, a Pipeline, a search; loading the model back without unpickling untrusted data."""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from framework_helpers import need

sklearn = need("sklearn")
need("skops")

import numpy as np  # noqa: E402
import skops.io  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

import labtrack as lt  # noqa: E402
import labtrack.sklearn  # noqa: E402
from labtrack import InvalidInput, RunStatus  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402

X, Y = make_classification(n_samples=120, n_features=6, random_state=0)


@pytest.fixture(autouse=True)
def autologging() -> Iterator[None]:
    labtrack.sklearn.autolog()
    yield
    labtrack.sklearn.autolog(disable=True)


def runs(experiment: str = "sklearn") -> list[lt.Run]:
    lt.flush()
    return list(lt.search_runs(experiment))


def only_run(experiment: str = "sklearn") -> lt.Run:
    found = runs(experiment)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def stored(run: lt.Run) -> list[str]:
    """The run's artifacts apart from labtrack's own (the console log)."""
    return [a.path for a in run.artifacts if not a.path.startswith("labtrack/")]


CLASSIFIER_METRICS = {"training_score", "training_accuracy", "training_precision", "training_recall", "training_f1",
                      "training_log_loss", "training_roc_auc"}
REGRESSOR_METRICS = {"training_score", "training_mse", "training_rmse", "training_mae", "training_r2"}


@pytest.mark.parametrize(("make", "data", "params", "metrics"), [
    (lambda: LogisticRegression(C=0.5), (X, Y), {"C": 0.5}, CLASSIFIER_METRICS),
    (lambda: Ridge(alpha=2.0), make_regression(n_samples=80, n_features=4, random_state=0), {"alpha": 2.0},
     REGRESSOR_METRICS),
    (lambda: KMeans(n_clusters=3, n_init=2, random_state=0), (X,), {"n_clusters": 3}, {"training_score"}),
], ids=["classifier", "regressor", "clusterer"])
def test_a_fit_without_an_active_run_records_params_metrics_and_model_in_its_own_finished_run(
        make: Any, data: tuple[Any, ...], params: dict[str, Any], metrics: set[str]) -> None:
    estimator = make()
    estimator.fit(*data)
    run = only_run()
    assert run.status is RunStatus.FINISHED
    assert run.name == type(estimator).__name__
    assert run.tags["labtrack.integration"] == "sklearn"
    assert params.items() <= run.params.items()
    assert {k for k in run.metrics if not k.startswith("system/")} == metrics  # not labtrack's system metrics
    assert stored(run) == ["model.skops"]
    assert lt.active_run() is None


def test_the_training_score_is_the_estimators_own_score() -> None:
    model = LogisticRegression().fit(X, Y)
    assert only_run().metrics["training_score"] == pytest.approx(model.score(X, Y))


def test_the_stored_model_loads_back_and_predicts_the_same() -> None:
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.3))]).fit(X, Y)
    loaded = labtrack.sklearn.load_model(only_run().id)
    assert type(loaded) is Pipeline
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_a_pipeline_is_one_run_with_the_params_of_its_steps() -> None:
    Pipeline([("scale", StandardScaler(with_mean=False)), ("clf", LogisticRegression(C=0.3))]).fit(X, Y)
    run = only_run()
    assert run.name == "Pipeline"
    assert run.params["scale__with_mean"] is False
    assert run.params["clf__C"] == 0.3
    assert "LogisticRegression(C=0.3)" in run.params["clf"]  # an estimator inside is recorded as its text


def test_fit_transform_that_calls_fit_records_once() -> None:
    Pipeline([("scale", StandardScaler()), ("cube", FunctionTransformer(np.negative))]).fit_transform(X)
    assert [r.name for r in runs()] == ["Pipeline"]


def test_preprocessing_fitted_alone_and_metric_functions_record_nothing() -> None:
    from sklearn.metrics import log_loss

    StandardScaler().fit(X)
    log_loss(Y, np.full(len(Y), 0.5))  # fits a LabelBinarizer inside
    assert runs() == []


def test_fitting_inside_an_active_run_logs_into_it_and_leaves_it_running() -> None:
    with lt.start_run("mine") as run:
        LogisticRegression(C=2.0).fit(X, Y)
        assert lt.active_run() is run
        assert run.status is RunStatus.RUNNING
        assert run.params["C"] == 2.0
        assert "training_accuracy" in run.metrics
    assert runs() == []
    assert only_run("mine").status is RunStatus.FINISHED


def test_refitting_with_a_changed_param_in_one_run_warns_once_and_training_goes_on() -> None:
    with lt.start_run("refits") as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LogisticRegression(C=1.0).fit(X, Y)
        LogisticRegression(C=1.0).fit(X, Y)  # the same value again: nothing to report
        LogisticRegression(C=2.0).fit(X, Y)
        model = LogisticRegression(C=3.0).fit(X, Y)
    about_c = [w for w in caught if issubclass(w.category, IntegrationWarning) and "'C'" in str(w.message)]
    assert len(about_c) == 1, [str(w.message) for w in caught]
    assert run.params["C"] == 1.0
    assert model.coef_.shape == (1, 6)


def test_a_failing_fit_fails_its_run_and_raises_the_users_error() -> None:
    with pytest.raises(ValueError, match="class"):
        LogisticRegression().fit(X, np.zeros(len(X)))  # one class only
    run = only_run()
    assert run.status is RunStatus.FAILED


@pytest.mark.parametrize("search", [
    lambda: GridSearchCV(LogisticRegression(), {"C": [0.01, 0.1, 1.0]}, cv=3),
    lambda: RandomizedSearchCV(LogisticRegression(), {"C": [0.01, 0.1, 1.0]}, n_iter=3, cv=3, random_state=0),
], ids=["grid", "randomized"])
def test_a_search_records_each_candidate_as_a_child_of_the_search_run(search: Any) -> None:
    fitted = search().fit(X, Y)
    found = runs()
    parents = [r for r in found if "labtrack.parent" not in r.tags]
    assert len(parents) == 1  # the inner fits of the candidates record nothing of their own
    parent = parents[0]
    children = [r for r in found if r.tags.get("labtrack.parent") == parent.id]
    assert len(children) == len(found) - 1 == 3
    assert sorted(c.params["C"] for c in children) == [0.01, 0.1, 1.0]
    for child in children:
        assert child.status is RunStatus.FINISHED
        assert {"mean_test_score", "std_test_score", "rank_test_score"} <= set(child.metrics)
    assert parent.params["best_C"] == fitted.best_params_["C"]
    assert parent.metrics["best_cv_score"] == pytest.approx(fitted.best_score_)
    assert type(labtrack.sklearn.load_model(parent)) is LogisticRegression  # the best estimator


def test_max_tuning_runs_keeps_the_best_ranked_candidates() -> None:
    labtrack.sklearn.autolog(max_tuning_runs=2)
    search = GridSearchCV(LogisticRegression(), {"C": [0.0001, 0.1, 1.0]}, cv=3).fit(X, Y)
    children = [r for r in runs() if "labtrack.parent" in r.tags]
    worst = int(np.argmax(search.cv_results_["rank_test_score"]))
    assert len(children) == 2
    assert worst not in {int(c.tags["sklearn.cv_index"]) for c in children}


def test_a_search_inside_an_active_run_nests_its_candidates_under_that_run() -> None:
    with lt.start_run("tuning") as run:
        GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, Y)
        assert lt.active_run() is run
    found = runs("tuning")
    assert sorted(r.tags.get("labtrack.parent", "top") for r in found) == [run.id, run.id, "top"]


def test_log_eval_adds_validation_metrics_to_the_run_of_the_fit() -> None:
    model = LogisticRegression().fit(X[:80], Y[:80])
    logged = labtrack.sklearn.log_eval(model, X[80:], Y[80:])
    run = only_run()
    assert logged["val_accuracy"] == pytest.approx(model.score(X[80:], Y[80:]))
    assert {k: run.metrics[k] for k in logged} == pytest.approx(logged)
    assert run.status is RunStatus.FINISHED


def test_log_eval_without_a_run_says_how_to_get_one() -> None:
    labtrack.sklearn.autolog(disable=True)
    model = LogisticRegression().fit(X, Y)
    with pytest.raises(InvalidInput, match="run="):
        labtrack.sklearn.log_eval(model, X, Y)


def test_disable_restores_the_original_methods_and_records_nothing() -> None:
    labtrack.sklearn.autolog(disable=True)
    assert "fit_and_record" not in repr(LogisticRegression.fit)
    assert type(Pipeline.__dict__["fit_transform"]).__name__ == "_AvailableIfDescriptor"
    LogisticRegression().fit(X, Y)
    assert runs() == []


def test_log_models_false_stores_no_model() -> None:
    labtrack.sklearn.autolog(log_models=False)
    LogisticRegression().fit(X, Y)
    assert stored(only_run()) == []


def test_only_rank_zero_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    LogisticRegression().fit(X, Y)
    assert runs() == []


def test_the_experiment_option_names_the_experiment_of_started_runs() -> None:
    labtrack.sklearn.autolog(experiment="churn")
    LogisticRegression().fit(X, Y)
    assert only_run("churn").name == "LogisticRegression"


@pytest.mark.parametrize(("options", "field"), [
    ({"max_tuning_runs": -1}, "max_tuning_runs"),
    ({"max_tuning_runs": "3"}, "max_tuning_runs"),
    ({"max_tuning_runs": True}, "max_tuning_runs"),
    ({"experiment": " "}, "experiment"),
])
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=field) as raised:
        labtrack.sklearn.autolog(**options)
    assert raised.value.field == field


# -- loading a model never runs untrusted code by default ------------------------------------------------


class ComplexLR(LogisticRegression):
    """skops cannot write a complex number; joblib (pickle) can: its model falls back to joblib."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ComplexLR:
        self.phase_ = complex(1, 2)
        return super().fit(X, y, sample_weight=sample_weight)


def test_a_model_skops_cannot_write_is_stored_with_joblib_and_loads_only_when_trusted() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ComplexLR().fit(X, Y)
    assert any("joblib" in str(w.message) for w in caught)
    run = only_run()
    assert stored(run) == ["model.joblib"]
    with pytest.raises(InvalidInput, match="trust=True") as raised:
        labtrack.sklearn.load_model(run)
    assert raised.value.field == "trust"
    assert labtrack.sklearn.load_model(run, trust=True).phase_ == complex(1, 2)


def planted(tmp_path: Path, name: str, data: bytes) -> lt.Run:
    """A run whose model artifact an attacker wrote."""
    path = tmp_path / name
    path.write_bytes(data)
    with lt.start_run("planted") as run:
        run.log_artifact(path)
    return run


def test_a_skops_model_with_an_untrusted_type_is_refused_unless_trusted(tmp_path: Path) -> None:
    evil = FunctionTransformer(func=os.system, kw_args={"command": "touch pwned"})
    run = planted(tmp_path, "model.skops", skops.io.dumps(evil))
    with pytest.raises(InvalidInput, match="system") as raised:
        labtrack.sklearn.load_model(run.id)
    assert raised.value.field == "trusted"
    with pytest.raises(InvalidInput):
        labtrack.sklearn.load_model(run.id, trusted=["functools.partial"])  # trusting something else is no help
    loaded = labtrack.sklearn.load_model(run.id, trusted=[os.system.__module__ + ".system"])  # after checking it
    assert loaded.func is os.system
    assert not Path("pwned").exists()  # loading never called it


class Planted:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path("pwned"),))


def test_a_joblib_model_is_never_unpickled_by_default(tmp_path: Path) -> None:
    run = planted(tmp_path, "model.joblib", pickle.dumps(Planted()))
    with pytest.raises(InvalidInput, match="pickle"):
        labtrack.sklearn.load_model(run.id)
    assert not Path("pwned").exists()


@pytest.mark.parametrize("trust", [False, True], ids=["default", "trust"])
def test_a_pickle_renamed_to_skops_is_refused_as_no_skops_file_and_never_unpickled(tmp_path: Path,
                                                                                   trust: bool) -> None:
    run = planted(tmp_path, "model.skops", pickle.dumps(Planted()))
    with pytest.raises(InvalidInput, match="not a skops file") as raised:
        labtrack.sklearn.load_model(run.id, trust=trust)
    assert raised.value.field == "path"
    assert not Path("pwned").exists()


def test_load_model_of_a_run_without_a_model_says_so() -> None:
    with lt.start_run("empty") as run:
        pass
    with pytest.raises(InvalidInput, match="has no model"):
        labtrack.sklearn.load_model(run)


def test_a_search_on_joblibs_threads_records_no_run_for_the_fits_in_its_threads() -> None:
    import joblib

    with joblib.parallel_backend("threading", n_jobs=2):
        GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(X, Y)
    found = runs()
    assert sorted(r.name for r in found if "labtrack.parent" not in r.tags) == ["GridSearchCV"]
    assert len(found) == 3
