"""scikit-learn autologging: every fit records itself — params, training metrics, the model (skops).

Run it from any directory: the runs land in ./.labtrack (or LABTRACK_STORE). Then try
`labtrack runs sklearn` and `labtrack show RUN`.
"""

from __future__ import annotations

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import labtrack as lt
import labtrack.sklearn

if __name__ == "__main__":
    labtrack.sklearn.autolog(max_tuning_runs=5)
    X, y = make_classification(n_samples=400, n_features=10, random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0)

    # One run for the whole pipeline: the steps' params, training_* metrics, model.skops.
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))]).fit(X_train, y_train)
    print("validation:", labtrack.sklearn.log_eval(pipeline, X_val, y_val))  # val_* metrics into the same run

    # A search: best_* on its run, each candidate a child run with its cross-validated scores.
    search = GridSearchCV(pipeline, {"clf__C": [0.01, 0.1, 1.0, 10.0]}, cv=3).fit(X_train, y_train)
    print("best:", search.best_params_, f"cv score {search.best_score_:.3f}")

    for run in lt.search_runs("sklearn"):
        parent = run.tags.get("labtrack.parent")
        print(f"{run.id[:8]} {run.name:<28} {'child of ' + parent[:8] if parent else 'top-level':<18} "
              f"score={run.metrics.get('training_score', run.metrics.get('mean_test_score', float('nan'))):.3f}")

    first = lt.search_runs("sklearn", filter="tags.sklearn.estimator = 'sklearn.pipeline.Pipeline'",
                           order_by=["start_time asc"])[0]
    model = labtrack.sklearn.load_model(first)  # skops: types are checked, nothing is unpickled
    print("reloaded model predicts like the original:", (model.predict(X_val) == pipeline.predict(X_val)).all())
