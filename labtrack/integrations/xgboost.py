"""XGBoost: a training callback that logs each iteration's evaluation metrics.

    from labtrack.integrations.xgboost import LabtrackCallback
    booster = xgb.train(params, dtrain, 100, evals=[(dvalid, "valid")], callbacks=[LabtrackCallback()])
    model = xgb.XGBClassifier(n_estimators=100, callbacks=[LabtrackCallback(log_model=True)])
    model.fit(X, y, eval_set=[(X_valid, y_valid)])

Each entry of XGBoost's evaluation log becomes the metric ``{data}-{metric}`` (``valid-logloss``,
``validation_0-auc``) at step = the boosting iteration; ``xgb.cv``'s (mean, std) pairs become
``{data}-{metric}`` and ``{data}-{metric}-std``. Before training the booster's configuration (learning rate,
depth, objective, …) is logged as params under ``xgboost.`` — or, when given, ``params=`` exactly as you pass
them. ``log_model=True`` stores the trained booster as ``model.json`` (XGBoost's own JSON format: loading
it with ``Booster.load_model`` runs no code, unlike a pickle).

The callback logs into ``run`` if given, else the active run (left running), else a run it starts in
``experiment`` (default "xgboost") and ends when training ends. Only rank zero logs. One callback object
serves one training at a time; a copy made by ``copy.deepcopy`` (scikit-learn's ``clone`` in a search) is a
fresh callback with the same options.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xgboost

from labtrack import Run, RunStatus
from labtrack.integrations.base import Attachment, attach, flatten, is_rank_zero, number, safe

__all__ = ["MODEL_FILE", "LabtrackCallback", "booster_params"]

MODEL_FILE = "model.json"
# Sections of Booster.save_config() that hold what a user sets (the rest is XGBoost's bookkeeping).
_CONFIG_SECTIONS = (("learner", "learner_train_param"), ("learner", "gradient_booster", "tree_train_param"),
                    ("learner", "gradient_booster", "gblinear_train_param"),
                    ("learner", "gradient_booster", "gbtree_train_param"), ("learner", "learner_model_param"),
                    ("learner", "generic_param"))
_LEFT_OUT = {"updater_seq", "process_type", "fail_on_invalid_gpu_id", "validate_parameters", "seed_per_iteration",
             "disable_default_eval_metric", "num_target", "boost_from_average", "nthread", "n_jobs"}


def booster_params(booster: Any) -> dict[str, Any]:
    """The params a booster trains with, read from ``Booster.save_config()``, numbers as numbers."""
    config = json.loads(booster.save_config())
    found: dict[str, Any] = {}
    for path in _CONFIG_SECTIONS:
        section: Any = config
        for part in path:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        for key, value in section.items():
            if key not in _LEFT_OUT and not isinstance(value, (dict, list)):
                found.setdefault(key, _parsed(value))
    return found


def _parsed(value: Any) -> Any:
    """XGBoost writes every config value as text: '2' -> 2, '0.300000012' -> 0.300000012, 'gbtree' stays."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


class LabtrackCallback(xgboost.callback.TrainingCallback):
    """Log XGBoost's evaluation metrics at each iteration (see the module docs)."""

    def __init__(self, run: Run | None = None, *, experiment: str | None = None, log_model: bool = False,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.run = run
        self.experiment = experiment
        self.log_model = log_model
        self.params = dict(params) if params is not None else None
        self._attachment: Attachment | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LabtrackCallback:
        """A fresh callback with the same options: a copy never shares (or duplicates) a run in progress."""
        return LabtrackCallback(self.run, experiment=self.experiment, log_model=self.log_model, params=self.params)

    def before_training(self, model: Any) -> Any:
        self._close(RunStatus.FAILED)  # a previous training that raised never reached after_training
        if not is_rank_zero():
            return model
        with safe("start a run for XGBoost"):
            self._attachment = attach(self.experiment, run=self.run, default_experiment="xgboost",
                                      tags={"labtrack.integration": "xgboost"})
        attachment = self._attachment
        if attachment is not None:
            if self.params is not None:
                attachment.log_params(flatten(self.params))
            elif callable(getattr(model, "save_config", None)):  # xgb.cv hands over a pack of boosters
                with safe("read the booster's params"):
                    attachment.log_params({f"xgboost.{k}": v for k, v in booster_params(model).items()})
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        attachment = self._attachment
        if attachment is None:
            return False
        values: dict[str, Any] = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if not history:
                    continue
                last = history[-1]
                if isinstance(last, tuple):  # xgb.cv: (mean, std) over the folds
                    values[f"{data}-{metric}"] = last[0]
                    values[f"{data}-{metric}-std"] = last[1]
                else:
                    values[f"{data}-{metric}"] = last
        attachment.log_metrics(values, step=int(epoch))
        return False  # never stops training

    def after_training(self, model: Any) -> Any:
        attachment = self._attachment
        if attachment is not None and self.log_model and callable(getattr(model, "save_model", None)):
            with safe("store the XGBoost model"), tempfile.TemporaryDirectory(prefix="labtrack-xgboost-") as folder:
                path = Path(folder) / MODEL_FILE
                model.save_model(path)
                attachment.run.log_artifact(path)
        if attachment is not None:
            best = number(getattr(model, "best_iteration", None)) if _has_best(model) else None
            if best is not None:
                attachment.log_metrics({"best_iteration": best})
        self._close()
        return model

    def _close(self, status: RunStatus = RunStatus.FINISHED) -> None:
        attachment, self._attachment = self._attachment, None
        if attachment is not None:
            attachment.finish(status)


def _has_best(model: Any) -> bool:
    """Whether early stopping set a best iteration (reading ``best_iteration`` otherwise raises)."""
    try:
        return "best_iteration" in (model.attributes() if callable(getattr(model, "attributes", None)) else {})
    except Exception:  # a pack of boosters (xgb.cv) has no attributes
        return False
