"""XGBoost with labtrack's callback: each boosting round's evaluation metrics, the params, the model.

Run it from any directory: the runs land in ./.labtrack (or LABTRACK_STORE). Then try
`labtrack runs xgboost-demo` and `labtrack show RUN`.
"""

from __future__ import annotations

import xgboost as xgb
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

import labtrack as lt
from labtrack.integrations.xgboost import LabtrackCallback

if __name__ == "__main__":
    X, y = make_classification(n_samples=600, n_features=12, random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)

    # The native API: metrics "train-logloss", "valid-auc"... at each round; the booster as model.json.
    dtrain, dval = xgb.DMatrix(X_train, label=y_train), xgb.DMatrix(X_val, label=y_val)
    params = {"max_depth": 3, "eta": 0.2, "objective": "binary:logistic", "eval_metric": ["logloss", "auc"]}
    booster = xgb.train(params, dtrain, 50, evals=[(dtrain, "train"), (dval, "valid")], early_stopping_rounds=5,
                        callbacks=[LabtrackCallback(experiment="xgboost-demo", log_model=True)], verbose_eval=False)

    # The scikit-learn API, inside a run of your own: the callback logs into it and leaves it running.
    with lt.start_run("xgboost-demo", params={"api": "sklearn"}) as run:
        model = xgb.XGBClassifier(n_estimators=20, max_depth=2, callbacks=[LabtrackCallback()])
        model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)
        run.log_metric("val_accuracy", float((model.predict(X_val) == y_val).mean()))

    for found in lt.search_runs("xgboost-demo"):
        curve = [k for k in found.metrics if k.endswith("-logloss")]
        print(found.id[:8], {k: round(found.metrics[k], 4) for k in curve},
              f"{len(found.history(curve[0]).steps)} rounds", [a.path for a in found.artifacts])
