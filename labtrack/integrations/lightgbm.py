"""LightGBM: a callback that logs each iteration's evaluation metrics.

    from labtrack.integrations.lightgbm import labtrack_callback
    booster = lgb.train(params, train, 100, valid_sets=[valid], valid_names=["valid"],
                        callbacks=[labtrack_callback(log_model=True)])
    model = lgb.LGBMClassifier(n_estimators=100).fit(X, y, eval_set=[(X_valid, y_valid)],
                                                     callbacks=[labtrack_callback()])

Each entry of ``env.evaluation_result_list`` becomes the metric ``{data}-{metric}`` (``valid-auc``,
``training-binary_logloss``) at step = the iteration; ``lgb.cv``'s standard deviation over the folds becomes
``{data}-{metric}-std``. The params LightGBM trains with are logged on the first iteration under
``lightgbm.``. ``log_model=True`` stores the booster as ``model.txt`` (LightGBM's text format:
``lgb.Booster(model_str=...)`` reads it without running code).

The callback logs into ``run`` if given, else the active run (left running), else a run it starts in
``experiment`` (default "lightgbm"). LightGBM tells a callback of no ending, so a run the callback started
ends at the last scheduled iteration. When training stops before it (early stopping, an error), call
``callback.finish(booster)`` — or use the callback as a context manager, which ends the run FAILED if the
block raised — else the run ends when this callback trains again, or with the process.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from labtrack import Run, RunStatus
from labtrack.integrations.base import Attachment, attach, flatten, is_rank_zero, safe

__all__ = ["MODEL_FILE", "LabtrackCallback", "labtrack_callback"]

MODEL_FILE = "model.txt"


class LabtrackCallback:
    """A LightGBM callback (``callbacks=[...]``) logging evaluation results; see the module docs."""

    # After record_evaluation (20), before early_stopping (30): the iteration that stops training is logged.
    order = 25
    before_iteration = False

    def __init__(self, run: Run | None = None, *, experiment: str | None = None, log_model: bool = False) -> None:
        self.run = run
        self.experiment = experiment
        self.log_model = log_model
        self._attachment: Attachment | None = None
        self._booster: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LabtrackCallback:
        """A fresh callback with the same options (scikit-learn's ``clone``): never a shared run in progress."""
        return LabtrackCallback(self.run, experiment=self.experiment, log_model=self.log_model)

    def __call__(self, env: Any) -> None:
        if env.iteration == env.begin_iteration:
            self.finish()  # a training that stopped early, or raised, before this one
            if not is_rank_zero():
                return
            with safe("start a run for LightGBM"):
                self._attachment = attach(self.experiment, run=self.run, default_experiment="lightgbm",
                                          tags={"labtrack.integration": "lightgbm"})
            if self._attachment is not None and isinstance(env.params, dict):
                self._attachment.log_params(flatten(env.params, "lightgbm"))
        attachment = self._attachment
        if attachment is None:
            return
        self._booster = env.model
        values: dict[str, Any] = {}
        for entry in env.evaluation_result_list or ():
            data, metric, value = entry[0], entry[1], entry[2]
            values[f"{data}-{metric}"] = value
            if len(entry) > 4 and entry[4] is not None:  # lgb.cv: the standard deviation over the folds
                values[f"{data}-{metric}-std"] = entry[4]
        attachment.log_metrics(values, step=int(env.iteration))
        if env.iteration + 1 >= env.end_iteration:
            self.finish()

    def finish(self, booster: Any = None, status: RunStatus | str = RunStatus.FINISHED) -> None:
        """End the training's run if the callback started it (after storing the model when ``log_model``);
        ``booster``: the trained model, when training stopped early (default: the one last seen)."""
        attachment, self._attachment = self._attachment, None
        booster = booster if booster is not None else self._booster
        self._booster = None
        if attachment is None:
            return
        if self.log_model and status in (RunStatus.FINISHED, "FINISHED") \
                and callable(getattr(booster, "model_to_string", None)):
            with safe("store the LightGBM model"):
                attachment.run.log_text(booster.model_to_string(), MODEL_FILE)
        attachment.finish(status)

    def __enter__(self) -> LabtrackCallback:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.finish(status=RunStatus.FINISHED if kind is None else RunStatus.FAILED)


def labtrack_callback(run: Run | None = None, *, experiment: str | None = None,
                      log_model: bool = False) -> LabtrackCallback:
    """A LightGBM callback logging each iteration's evaluation into ``run``, the active run, or a new run."""
    return LabtrackCallback(run, experiment=experiment, log_model=log_model)
