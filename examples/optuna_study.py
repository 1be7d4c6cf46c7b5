"""An Optuna study where each trial is a labtrack run nested under the study's run — run it twice: the
second time every configuration is already finished, and no objective is called.

Run it from any directory: the runs land in ./.labtrack (or LABTRACK_STORE). Then try
`labtrack runs optuna-demo --sort "metrics.objective asc"`.
"""

from __future__ import annotations

from typing import Any

import optuna
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from labtrack.integrations.optuna import optimize

X, Y = make_classification(n_samples=300, n_features=8, random_state=0)
calls = 0


def space(trial: optuna.trial.Trial) -> dict[str, Any]:
    """The trial's params, suggested before training: labtrack checks them against finished runs."""
    return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True),
            "fit_intercept": trial.suggest_categorical("fit_intercept", [True, False])}


def objective(trial: optuna.trial.Trial) -> float:
    global calls
    calls += 1
    params = space(trial)  # the same values again
    scores = cross_val_score(LogisticRegression(**params), X, Y, cv=3)
    for fold, score in enumerate(scores):
        trial.report(float(score), fold)  # also the metric series "intermediate"
    return float(scores.mean())


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]}
    for attempt in ("first", "second"):
        calls = 0
        study = optuna.create_study(study_name=f"{attempt} study", direction="maximize",
                                    sampler=optuna.samplers.GridSampler(grid, seed=0))
        optimize(study, objective, experiment="optuna-demo", space=space, n_trials=8)
        skipped = sum("labtrack.skipped_as" in t.user_attrs for t in study.trials)
        print(f"{attempt} study: {calls} objectives called, {skipped} skipped as already finished; "
              f"best {study.best_params} -> {study.best_value:.3f}")
