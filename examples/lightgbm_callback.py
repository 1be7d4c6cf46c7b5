"""LightGBM with labtrack's callback: each iteration's evaluation metrics, the params, the model as text.

Run it from any directory: the runs land in ./.labtrack (or LABTRACK_STORE). Then try
`labtrack runs lightgbm-demo` and `labtrack show RUN`.
"""

from __future__ import annotations

import lightgbm as lgb
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

import labtrack as lt
from labtrack.integrations.lightgbm import labtrack_callback

if __name__ == "__main__":
    X, y = make_classification(n_samples=600, n_features=12, random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)
    train = lgb.Dataset(X_train, y_train)
    valid = lgb.Dataset(X_val, y_val, reference=train)
    params = {"objective": "binary", "num_leaves": 8, "learning_rate": 0.1, "metric": ["binary_logloss", "auc"],
              "verbose": -1}

    # Early stopping may end training before the last scheduled iteration, which LightGBM tells no callback:
    # leaving the with block ends the callback's run (FAILED if training raised), storing the model as model.txt.
    with labtrack_callback(experiment="lightgbm-demo", log_model=True) as callback:
        booster = lgb.train(params, train, 200, valid_sets=[valid], valid_names=["valid"],
                            callbacks=[callback, lgb.early_stopping(10, verbose=False)])
    print(f"stopped at iteration {booster.best_iteration} of 200")

    for found in lt.search_runs("lightgbm-demo"):
        history = found.history("valid-auc")
        print(found.id[:8], found.status.value, f"{len(history.steps)} iterations logged,",
              f"last valid-auc {history.values[-1]:.4f},", [a.path for a in found.artifacts])
