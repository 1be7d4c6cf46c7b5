"""scikit-learn autologging: ``labtrack.sklearn.autolog()`` and every ``fit`` records itself.

    import labtrack.sklearn
    labtrack.sklearn.autolog()
    model = LogisticRegression(C=0.5).fit(X_train, y_train)     # a run: params, training metrics, model
    labtrack.sklearn.log_eval(model, X_val, y_val)              # val_* metrics into that same run
    again = labtrack.sklearn.load_model(run_id)                 # skops: no unpickling of untrusted types

What a fit records, into the active run if there is one (left running), else into a run it starts in
``experiment`` (default "sklearn") and ends:

- params: ``get_params(deep=True)``, estimators inside as their text (``Pipeline`` steps, a search's
  ``estimator``);
- metrics: ``training_score`` (the estimator's own ``score``) and, for classifiers, ``training_accuracy``,
  ``_precision``, ``_recall``, ``_f1`` (weighted), ``_log_loss`` and ``_roc_auc`` where ``predict_proba``
  exists; for regressors ``training_mse``, ``_rmse``, ``_mae``, ``_r2``;
- the fitted model as the artifact ``model.skops`` (skops: loading it checks types instead of unpickling);
  an estimator skops cannot write is saved with joblib as ``model.joblib`` (a pickle: loading it needs
  ``trust=True``);
- ``GridSearchCV`` / ``RandomizedSearchCV``: ``best_<param>`` params and ``best_cv_score`` on the run, the
  best estimator as its model, and each candidate of ``cv_results_`` (best ranked first, at most
  ``max_tuning_runs``) as a child run (tag ``labtrack.parent``) with its params and mean/std/rank scores.

Only the outermost fit records: a Pipeline's steps, a search's candidates and ``fit_transform`` calling
``fit`` are part of it. The patched methods are the ``fit``, ``fit_transform`` and ``fit_predict`` that
scikit-learn's classes define (as ``mlflow.sklearn.autolog`` does); ``autolog(disable=True)`` puts the
originals back. While one autologged fit runs in this process, fits in other threads (joblib's threading
backend runs a search's candidates there) do not record — two user threads fitting at once record only
the first.
"""

from __future__ import annotations

import copy
import functools
import inspect
import io
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import labtrack
from labtrack import InvalidInput, Run, RunStatus
from labtrack.integrations.base import Attachment, attach, flatten, is_rank_zero, number, param_value, safe, warn_once

__all__ = ["MODEL_FILES", "autolog", "load_model", "log_eval"]

MODEL_FILES = ("model.skops", "model.joblib")  # the artifact names a fitted model is stored under
_METHODS = ("fit", "fit_transform", "fit_predict")
# Fitted alone they are data preparation, not models, and scikit-learn's metrics fit some internally
# (LabelEncoder, LabelBinarizer): as in mlflow.sklearn.autolog, they record only as steps of a Pipeline.
_NOT_RECORDED = ("sklearn.preprocessing.", "sklearn.impute.", "sklearn.feature_extraction.",
                 "sklearn.feature_selection.")
_TRUST = ("pass trust=True only for a store whose every writer you trust (loading a pickle runs whatever code its "
          "writer chose)")


@dataclass(frozen=True)
class _Config:
    log_models: bool
    experiment: str | None
    max_tuning_runs: int | None


_config: _Config | None = None
_patched: list[tuple[type, str, Any]] = []  # (class, method name, the original attribute) to restore
_lock = threading.Lock()
_busy = False  # an autologged fit is in progress in this process: fits inside it do not record
_fitted_into: weakref.WeakKeyDictionary[Any, Run] = weakref.WeakKeyDictionary()  # estimator -> its run


def autolog(*, log_models: bool = True, experiment: str | None = None, max_tuning_runs: int | None = None,
            disable: bool = False) -> None:
    """Record every outermost scikit-learn ``fit`` from now on (see the module docs); ``disable=True`` stops.

    ``experiment``: where a fit with no active run starts its run (default "sklearn"); ``log_models``: store
    the fitted model; ``max_tuning_runs``: the most candidates of a search recorded as child runs, best
    ranked first (None: all). Calling it again changes the options; patching the classes takes about a
    second once, as it imports every scikit-learn estimator."""
    global _config
    if disable:
        with _lock:
            _config = None
            _restore()
        return
    if max_tuning_runs is not None and (not isinstance(max_tuning_runs, int) or isinstance(max_tuning_runs, bool)
                                        or max_tuning_runs < 0):
        raise InvalidInput(f"max_tuning_runs must be a whole number >= 0 or None (all candidates), got "
                           f"{max_tuning_runs!r}", field="max_tuning_runs")
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise InvalidInput(f"experiment must be a non-empty name or None (\"sklearn\"), got {experiment!r}",
                           field="experiment")
    try:
        from sklearn.utils import all_estimators
    except ImportError as exc:
        raise ImportError(f"labtrack.sklearn.autolog needs scikit-learn: pip install 'labtrack[sklearn]' ({exc})") \
            from exc
    with _lock:
        _config = _Config(bool(log_models), experiment, max_tuning_runs)
        if not _patched:
            _patch([cls for _, cls in all_estimators()])


def _patch(classes: Sequence[type]) -> None:
    """Wrap the fit methods each scikit-learn class defines itself (inherited ones are wrapped once, on the
    class that defines them)."""
    seen: set[type] = set()
    for estimator in classes:
        for cls in estimator.__mro__:
            if cls in seen or not cls.__module__.startswith("sklearn."):
                continue
            seen.add(cls)
            for name in _METHODS:
                original: Any = cls.__dict__.get(name)
                if inspect.isfunction(original):
                    wrapped: Any = _wrap(original)
                elif inspect.isfunction(getattr(original, "fn", None)):  # available_if: keep its check
                    wrapped = copy.copy(original)
                    wrapped.fn = _wrap(original.fn)
                else:
                    continue
                setattr(cls, name, wrapped)
                _patched.append((cls, name, original))


def _restore() -> None:
    while _patched:
        cls, name, original = _patched.pop()
        setattr(cls, name, original)


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit_and_record(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _config
        if config is None or type(self).__module__.startswith(_NOT_RECORDED) or not is_rank_zero():
            return original(self, *args, **kwargs)
        with _quiet() as outermost:
            if not outermost:
                return original(self, *args, **kwargs)
            return _record_fit(config, original, self, args, kwargs)

    return fit_and_record


@contextmanager
def _quiet() -> Iterator[bool]:
    """Fits inside this block do not record; yields whether it is the outermost such block."""
    global _busy
    with _lock:
        outermost = not _busy
        _busy = True
    try:
        yield outermost
    finally:
        if outermost:
            _busy = False


def _record_fit(config: _Config, original: Callable[..., Any], estimator: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    attachment: Attachment | None = None
    kind = type(estimator)
    with safe("start a run for a scikit-learn fit"):
        attachment = attach(config.experiment, name=kind.__name__, default_experiment="sklearn",
                            tags={"labtrack.integration": "sklearn",
                                  "sklearn.estimator": f"{kind.__module__}.{kind.__qualname__}"})
    if attachment is None:
        return original(estimator, *args, **kwargs)
    with safe("log the estimator's params"):
        attachment.log_params(flatten(estimator.get_params(deep=True)))
    try:
        result = original(estimator, *args, **kwargs)
    except KeyboardInterrupt:
        attachment.finish(RunStatus.KILLED)
        raise
    except BaseException:
        attachment.finish(RunStatus.FAILED)
        raise
    try:
        _record_outcome(config, attachment, estimator, *_data(args, kwargs), kwargs.get("sample_weight"))
    except Exception as exc:  # the model is trained: a recording failure must not lose it
        warn_once(f"sklearn:record:{type(exc).__name__}", f"the outcome of a {kind.__name__} fit was not fully "
                  f"recorded ({type(exc).__name__}: {exc}); training goes on")
    finally:
        attachment.finish()
    return result


def _record_outcome(config: _Config, attachment: Attachment, estimator: Any, x: Any, y: Any,
                    sample_weight: Any) -> None:
    run = attachment.run
    _fitted_into[estimator] = run
    attachment.log_metrics(_scores(estimator, x, y, sample_weight, "training_"))
    model = estimator
    if hasattr(estimator, "cv_results_"):
        _record_search(attachment, estimator, config.max_tuning_runs)
        model = getattr(estimator, "best_estimator_", None)
    if config.log_models and model is not None:
        _log_model(run, model)


def _data(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y", kwargs.get("Y"))
    return x, y


def _scores(estimator: Any, x: Any, y: Any, sample_weight: Any, prefix: str) -> dict[str, float]:
    """The estimator's score and the standard metrics of its kind on (x, y); one that cannot be computed
    (no labels, a multi-output target) is left out with one warning per metric."""
    if x is None:
        return {}
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    weight = {} if sample_weight is None else {"sample_weight": sample_weight}

    def measure(name: str, compute: Callable[[], Any]) -> None:
        try:
            value = number(compute())
        except Exception as exc:  # a metric scikit-learn refuses for this data is left out
            warn_once(f"sklearn:{type(estimator).__name__}:{name}", f"{prefix}{name} of {type(estimator).__name__} "
                      f"was not recorded ({type(exc).__name__}: {exc})")
            return
        if value is not None:
            out[prefix + name] = value

    if callable(getattr(estimator, "score", None)) and (y is not None or not is_classifier(estimator)):
        measure("score", lambda: estimator.score(x, y, **weight) if y is not None else estimator.score(x))
    if y is None or not callable(getattr(estimator, "predict", None)):
        return out
    try:
        predicted = estimator.predict(x)
        proba = estimator.predict_proba(x) if is_classifier(estimator) and hasattr(estimator, "predict_proba") \
            else None
    except Exception as exc:  # a model that cannot predict its own training data: its score says enough
        warn_once(f"sklearn:{type(estimator).__name__}:predict", f"{prefix} metrics of {type(estimator).__name__} "
                  f"were not recorded: predicting failed ({type(exc).__name__}: {exc})")
        return out
    if is_classifier(estimator):
        labels = getattr(estimator, "classes_", None)
        measure("accuracy", functools.partial(metrics.accuracy_score, y, predicted, **weight))
        for name, fn in (("precision", metrics.precision_score), ("recall", metrics.recall_score),
                         ("f1", metrics.f1_score)):
            measure(name, functools.partial(fn, y, predicted, average="weighted", zero_division=0, **weight))
        if proba is not None and getattr(proba, "ndim", 0) == 2:
            measure("log_loss", functools.partial(metrics.log_loss, y, proba, labels=labels, **weight))
            if proba.shape[1] == 2:
                measure("roc_auc", functools.partial(metrics.roc_auc_score, y, proba[:, 1], **weight))
            elif proba.shape[1] > 2:
                measure("roc_auc", functools.partial(metrics.roc_auc_score, y, proba, multi_class="ovr",
                                                     labels=labels, **weight))
    elif is_regressor(estimator):
        measure("mse", functools.partial(metrics.mean_squared_error, y, predicted, **weight))
        if prefix + "mse" in out:
            out[prefix + "rmse"] = out[prefix + "mse"] ** 0.5
        measure("mae", functools.partial(metrics.mean_absolute_error, y, predicted, **weight))
        measure("r2", functools.partial(metrics.r2_score, y, predicted, **weight))
    return out


def _record_search(attachment: Attachment, search: Any, max_tuning_runs: int | None) -> None:
    """Best params and score on the search's run; each candidate (best ranked first) as a child run."""
    best = getattr(search, "best_params_", None)
    if isinstance(best, dict):
        attachment.log_params({f"best_{key}": param_value(value) for key, value in best.items()})
    attachment.log_metrics({"best_cv_score": getattr(search, "best_score_", None)})
    results = search.cv_results_
    candidates = results.get("params", [])
    refit = getattr(search, "refit", True)
    rank_key = f"rank_test_{refit}" if isinstance(refit, str) else "rank_test_score"
    if rank_key not in results:
        rank_key = next((key for key in results if key.startswith("rank_test_")), "")
    ranks = results.get(rank_key)
    order = sorted(range(len(candidates)), key=lambda i: (number(ranks[i]) or 0.0) if ranks is not None else i)
    if max_tuning_runs is not None:
        order = order[:max_tuning_runs]
    scores = [key for key in results if key.startswith(("mean_", "std_", "rank_"))]
    parent = attachment.run
    estimator = getattr(search, "estimator", None)
    for index in order:
        with safe("record a search candidate as a child run"):
            child = labtrack.start_run(
                parent.experiment, params=flatten(candidates[index]), nested=True,
                name=f"{type(estimator).__name__} candidate {index}",
                tags={"labtrack.integration": "sklearn", "sklearn.cv_index": index, "labtrack.parent": parent.id})
            try:
                Attachment(child, owned=True).log_metrics({key: results[key][index] for key in scores})
            finally:
                child.end(RunStatus.FINISHED)


def _log_model(run: Run, model: Any) -> None:
    """The fitted model as ``model.skops``, or ``model.joblib`` when skops cannot write it."""
    with tempfile.TemporaryDirectory(prefix="labtrack-sklearn-") as folder:
        path = Path(folder) / MODEL_FILES[0]
        try:
            import skops.io

            skops.io.dump(model, path)
        except Exception as exc:  # skops refuses what it cannot represent; joblib is the fallback
            path = Path(folder) / MODEL_FILES[1]
            with safe("save the model with joblib"):
                import joblib

                joblib.dump(model, path)
                warn_once(f"sklearn:joblib:{type(model).__name__}", f"skops could not save the "
                          f"{type(model).__name__} model ({type(exc).__name__}: {exc}); it is stored with joblib "
                          f"(pickle) as {MODEL_FILES[1]}, and load_model will need trust=True to read it")
        if path.exists():
            with safe("store the model"):
                run.log_artifact(path)


def log_eval(estimator: Any, x: Any, y: Any, *, prefix: str = "val_", run: Run | str | None = None,
             sample_weight: Any = None) -> dict[str, float]:
    """Score ``estimator`` on held-out data and log the metrics as ``{prefix}score``, ``{prefix}accuracy``…

    They go to ``run`` if given, else to the run autolog recorded the estimator's last fit into (even if
    that run has ended), else to the active run. Returns the metrics logged."""
    if not isinstance(prefix, str):
        raise InvalidInput(f"prefix must be a string such as 'val_', got {prefix!r}", field="prefix")
    target: Run | None
    if isinstance(run, str):
        target = labtrack.get_run(run)
    elif run is not None:
        target = run
    else:
        target = _fitted_into.get(estimator) if _is_weakrefable(estimator) else None
        target = target or labtrack.active_run()
    if target is None:
        raise InvalidInput("log_eval found no run for this estimator: fit it under labtrack.sklearn.autolog(), "
                           "start a run, or pass run=", field="run")
    with _quiet():
        found = _scores(estimator, x, y, sample_weight, prefix)
    if found:
        with safe("log evaluation metrics"):
            try:
                target.log_metrics(found)
            except InvalidInput:  # this handle ended the run (autolog's own run): log through a fresh one
                labtrack.get_run(target.id).log_metrics(found)
    return found


def _is_weakrefable(value: Any) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


def load_model(run: Run | str, path: str | None = None, *, trusted: Sequence[str] = (), trust: bool = False,
               store: str | None = None) -> Any:
    """The model autolog stored with ``run`` (a Run or its id), loaded without running untrusted code.

    A ``model.skops`` file is checked with ``skops.io.get_untrusted_types``: types outside skops's trusted set
    are refused unless named in ``trusted`` (after you checked them) or ``trust=True``. A ``model.joblib``
    file is a pickle and needs ``trust=True`` — only for a store whose every writer you trust."""
    handle = labtrack.get_run(run, store=store) if isinstance(run, str) else run
    if isinstance(trusted, str) or not all(isinstance(name, str) for name in trusted):
        raise InvalidInput(f"trusted must be a list of type names such as ['numpy.dtype'], got {trusted!r}",
                           field="trusted")
    names = {item.path for item in handle.artifacts}
    if path is None:
        path = next((name for name in MODEL_FILES if name in names), None)
        if path is None:
            raise InvalidInput(f"run {handle.id[:8]} has no model ({' or '.join(MODEL_FILES)}); fit under "
                               "labtrack.sklearn.autolog(log_models=True), or pass path=", field="run")
    with handle.open_artifact(path) as stream:
        data = stream.read()
    if not path.endswith(".skops"):
        if not trust:
            raise InvalidInput(f"the model {path!r} of run {handle.id[:8]} is a pickle (joblib), and loading it "
                               f"runs whatever code its writer chose; {_TRUST}", field="trust")
        import joblib

        return joblib.load(io.BytesIO(data))
    import skops.io

    try:
        untrusted = list(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # a pickle named .skops, say: refused as it is (a .skops name never unpickles)
        raise InvalidInput(f"the model {path!r} of run {handle.id[:8]} is not a skops file ({type(exc).__name__}: "
                           f"{exc}); a model autolog stored as model.joblib loads with trust=True, other files are "
                           "yours to open (run.open_artifact)", field="path") from exc
    refused = [name for name in untrusted if name not in trusted]
    if refused and not trust:
        raise InvalidInput(f"the model {path!r} of run {handle.id[:8]} holds types skops does not trust: "
                           f"{', '.join(refused)}; loading them may run their code. Check each, then pass "
                           "trusted=[...] with their names (or trust=True for a store whose every writer you "
                           "trust)", field="trusted")
    return skops.io.loads(data, trusted=untrusted or None)
