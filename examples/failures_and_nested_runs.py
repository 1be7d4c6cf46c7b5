"""Runs that end badly are recorded honestly: an exception gives FAILED with the error kept.

Shows nested runs (one child per fold), tags, notes and reading a failed run back.
"""

from __future__ import annotations

import labtrack as lt

with lt.start_run("cross-validation", params={"folds": 3, "model": "ridge"}) as parent:
    for fold in range(3):
        with lt.start_run("cross-validation", params={"fold": fold}, nested=True) as child:
            child.log_metric("rmse", 1.0 + 0.1 * fold)
    parent.set_note("3-fold CV of a ridge model; fold runs are children of this one")

try:
    with lt.start_run("cross-validation", params={"folds": 3, "model": "broken"}) as bad:
        bad.log_metric("rmse", 2.0)
        raise RuntimeError("out of memory on fold 1")
except RuntimeError:
    pass

failed = lt.get_run(bad.id)
print(failed.status, failed.error["type"], failed.error["message"])
children = [r for r in lt.search_runs("cross-validation") if r.tags.get("labtrack.parent") == parent.id]
print(f"{len(children)} fold runs under {parent.id[:8]}")
assert failed.status == "FAILED" and len(children) == 3
