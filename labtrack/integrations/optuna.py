"""Optuna: each trial a labtrack run nested under the study's run, and finished configurations skipped.

    from labtrack.integrations.optuna import optimize

    def space(trial):                                   # the trial's params, suggested before training
        return {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
                "depth": trial.suggest_int("depth", 2, 8)}

    def objective(trial):
        params = space(trial)                           # Optuna returns the same values again
        for epoch in range(10):
            ...; trial.report(val_loss, epoch)           # also the metric series "intermediate"
        return val_loss

    optimize(study, objective, space=space, n_trials=50)      # the study's run, with a child run per trial
    # or, under a run of your own:  study.optimize(track_objective(objective, space=space), n_trials=50)

Each trial's run (tags ``labtrack.parent`` = the study's run, ``optuna.study``, ``optuna.trial``) holds the
trial's params, its value(s) as the metric ``objective`` (``objective_0``, ``objective_1``… for several
objectives), what ``trial.report`` reported as the series ``intermediate`` and the trial's state as its
status: COMPLETE → FINISHED, FAIL → FAILED, PRUNED → KILLED with the tag ``optuna.state=PRUNED``. The trial
gets the user attribute ``labtrack.run_id``.

Skipping: with ``space`` (a function suggesting the trial's params and returning them), the wrapper knows a
trial's configuration before training. If labtrack holds a FINISHED run of the same experiment with the same
run key (the params, this script and its code version: ``labtrack.find_run``), the objective is not called:
the trial returns that run's recorded value and gets the user attribute ``labtrack.skipped_as`` = its id.
``space`` must return every param the objective suggests: when the recorded trial suggested more (tag
``optuna.suggested``), the same space params may have been another configuration, so nothing is skipped
(with one warning).
A study run again (a GridSampler, or a seeded sampler) then trains only what is new. Without ``space``
Optuna's define-by-run params are known only once the objective ran, so nothing is skipped.

Trials run one at a time in a process (``n_jobs=1``; labtrack's active run is per process) — parallel
workers are processes sharing an Optuna storage and a labtrack store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

import labtrack
from labtrack import Run, RunStatus
from labtrack.integrations.base import Attachment, attach, flatten, is_rank_zero, number, safe, warn_once

__all__ = ["DEFAULT_EXPERIMENT", "Space", "optimize", "track_objective"]

DEFAULT_EXPERIMENT = "optuna"
_SUGGESTED = "optuna.suggested"  # tag: the JSON list of the params Optuna suggested in the trial
Space = Callable[[optuna.trial.Trial], Mapping[str, Any]]  # suggests a trial's params and returns them


def track_objective(objective: Callable[[optuna.trial.Trial], Any], experiment: str | None = None, *,
                    space: Space | None = None, skip_finished: bool = True) -> Callable[[optuna.trial.Trial], Any]:
    """``objective`` recording each trial as a run nested under the active run (see the module docs).

    ``experiment``: of the trials' runs (default: the active run's, else "optuna"); ``space``: suggests and
    returns the trial's params before the objective runs, which lets a trial skip a configuration labtrack
    already finished (``skip_finished``)."""

    def tracked_objective(trial: optuna.trial.Trial) -> Any:
        if not is_rank_zero():
            return objective(trial)
        parent = labtrack.active_run()
        name = experiment or (parent.experiment if parent is not None else DEFAULT_EXPERIMENT)
        params = flatten(space(trial)) if space is not None else None
        if params is not None and skip_finished:
            recorded = _recorded_value(trial, name, params)
            if recorded is not None:
                return recorded
        return _run_trial(objective, trial, name, params, parent)

    tracked_objective.__wrapped__ = objective  # type: ignore[attr-defined]
    return tracked_objective


def _recorded_value(trial: optuna.trial.Trial, experiment: str, params: dict[str, Any]) -> Any:
    """The value(s) a FINISHED run of this configuration recorded, or None (then the trial runs)."""
    found: Run | None = None
    with safe("look for a finished run of this trial's configuration"):
        found = labtrack.find_run(experiment, params)
    if found is None:
        return None
    count = len(trial.study.directions)
    keys = ["objective"] if count == 1 else [f"objective_{i}" for i in range(count)]
    metrics = found.metrics
    if not all(key in metrics for key in keys):
        return None  # a run of this configuration that recorded no objective (not a trial's): train again
    beyond = sorted(set(_suggested(found)) - set(params))
    if beyond:  # its objective also suggested these: the same space params may be another configuration
        warn_once(f"optuna:beyond:{experiment}", f"trials of {experiment!r} are not skipped: the objective suggests "
                  f"{', '.join(beyond)} beyond what space returns, so a finished run with the same space params "
                  "may have had other values for them; return every suggested param from space to skip")
        return None
    trial.set_user_attr("labtrack.skipped_as", found.id)
    values = [metrics[key] for key in keys]
    return values[0] if count == 1 else values


def _run_trial(objective: Callable[[optuna.trial.Trial], Any], trial: optuna.trial.Trial, experiment: str,
               params: dict[str, Any] | None, parent: Run | None) -> Any:
    tags = {"labtrack.integration": "optuna", "optuna.study": trial.study.study_name, "optuna.trial": trial.number}
    run: Run | None = None
    with safe("start a run for the trial"):
        run = labtrack.start_run(experiment, params=params, tags=tags, name=f"trial {trial.number}",
                                 nested=parent is not None)
    if run is None:
        return objective(trial)
    attachment = Attachment(run, owned=True)
    if params:
        attachment.log_params(params)  # known to the run already: only so that a changed value is told once
    with safe("link the trial to its run"):
        trial.set_user_attr("labtrack.run_id", run.id)
    _record_reports(trial, attachment)
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        _end(attachment, trial, RunStatus.KILLED, "PRUNED")
        raise
    except KeyboardInterrupt:
        _end(attachment, trial, RunStatus.KILLED, "INTERRUPTED")
        raise
    except BaseException:
        _end(attachment, trial, RunStatus.FAILED, "FAIL")
        raise
    values = _values(value, len(trial.study.directions))
    if values is None:  # Optuna fails a trial that returned None, NaN or the wrong number of values
        _end(attachment, trial, RunStatus.FAILED, "FAIL")
        return value
    attachment.log_metrics(values)
    _end(attachment, trial, RunStatus.FINISHED, "COMPLETE")
    return value


def _record_reports(trial: optuna.trial.Trial, attachment: Attachment) -> None:
    """``trial.report(value, step)`` also logs ``intermediate`` at ``step``, as it happens. The method is
    replaced on this trial object only (an Optuna Trial keeps a ``__dict__``), so ``isinstance`` checks of
    pruning integrations still hold."""
    report = trial.report

    def report_and_log(value: float, step: int) -> None:
        report(value, step)
        attachment.log_metrics({"intermediate": value}, step=step)

    try:
        trial.report = report_and_log  # type: ignore[method-assign]
    except AttributeError:
        warn_once("optuna:report", "this Optuna Trial does not let labtrack see trial.report; intermediate "
                  "values are not logged")


def _values(value: Any, count: int) -> dict[str, float] | None:
    if count == 1:
        single = number(value) if not isinstance(value, (list, tuple)) else None
        return {"objective": single} if single is not None and not math.isnan(single) else None
    if not isinstance(value, Sequence) or len(value) != count:
        return None
    values = [number(v) for v in value]
    if any(v is None or math.isnan(v) for v in values):
        return None
    return {f"objective_{i}": v for i, v in enumerate(values) if v is not None}


def _suggested(run: Run) -> list[str]:
    """The params Optuna suggested in the trial recorded by ``run`` (its tag ``optuna.suggested``)."""
    try:
        names = json.loads(str(run.tags.get(_SUGGESTED, "[]")))
    except ValueError:
        return []
    return [str(name) for name in names] if isinstance(names, list) else []


def _end(attachment: Attachment, trial: optuna.trial.Trial, status: RunStatus, state: str) -> None:
    suggested = flatten(trial.params)
    with safe("record the trial's params"):
        attachment.log_params(suggested)  # what the objective suggested beyond ``space``
    with safe("tag the trial's state"):
        attachment.run.set_tags({"optuna.state": state, _SUGGESTED: json.dumps(sorted(suggested))})
    attachment.finish(status)


def optimize(study: optuna.study.Study, objective: Callable[[optuna.trial.Trial], Any], *,
             experiment: str | None = None, space: Space | None = None, skip_finished: bool = True,
             **optimize_options: Any) -> optuna.study.Study:
    """``study.optimize(objective, **optimize_options)`` inside the study's run, each trial a child run.

    The study's run is the active run (left running) or one started in ``experiment`` (default "optuna"),
    named after the study, with the sampler and direction(s) as params and the best value and params when
    the study has a single objective; it ends FAILED if ``optimize`` raised. Returns the study."""
    attachment: Attachment | None = None
    if is_rank_zero():
        with safe("start a run for the study"):
            attachment = attach(experiment, name=study.study_name, default_experiment=DEFAULT_EXPERIMENT,
                                tags={"labtrack.integration": "optuna", "optuna.study": study.study_name})
    if attachment is not None:
        attachment.log_params({"optuna.sampler": type(study.sampler).__name__,
                               "optuna.directions": [d.name for d in study.directions]})
    tracked = track_objective(objective, attachment.run.experiment if attachment is not None else experiment,
                              space=space, skip_finished=skip_finished)
    try:
        study.optimize(tracked, **optimize_options)
    except KeyboardInterrupt:
        if attachment is not None:
            attachment.finish(RunStatus.KILLED)
        raise
    except BaseException:
        if attachment is not None:
            attachment.finish(RunStatus.FAILED)
        raise
    if attachment is not None:
        _record_best(attachment, study)
        attachment.finish()
    return study


def _record_best(attachment: Attachment, study: optuna.study.Study) -> None:
    if len(study.directions) != 1:
        return
    try:
        best = study.best_trial
    except ValueError:  # no trial completed
        return
    attachment.log_metrics({"best_value": best.value, "best_trial": best.number})
    attachment.log_params({f"best_{key}": value for key, value in flatten(best.params).items()})
