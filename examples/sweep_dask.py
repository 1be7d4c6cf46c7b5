"""A sweep whose trials run on a Dask cluster (docs/sweeps.md): labtrack's claims keep each configuration to one
run, and a second sweep of the same grid runs nothing.

Here the cluster is a LocalCluster of two worker processes; on a real one, pass
``distributed.Client("tcp://scheduler:8786").get_executor()`` instead, with the store shared (PostgreSQL or a
labtrack server: LABTRACK_STORE, and LABTRACK_TOKEN in the workers' environment for a server).
"""
# needs: distributed

from __future__ import annotations

import math

import labtrack as lt


def train(lr: float, depth: int) -> float:
    """A stand-in for training: a loss curve and a score (a top-level function: cloudpickle and plain pickle
    both send it)."""
    for step in range(10):
        lt.log_metric("loss", math.exp(-lr * step) / depth, step=step)
    return 1 - math.exp(-lr * depth)


if __name__ == "__main__":
    from distributed import Client, LocalCluster

    grid = {"lr": [0.3, 0.1, 0.03], "depth": [2, 4]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as dask:
        first = lt.sweep(train, grid=grid, executor=dask.get_executor(), progress=False)
        again = lt.sweep(train, grid=grid, executor=dask.get_executor(), progress=False)
    assert len(first.ran) == 6 and first.complete, first.failed
    assert again.ran == [] and len(again.skipped) == 6
    best = lt.search_runs("train", order_by="attributes.start_time", max_results=10)
    print(f"{len(first.ran)} ran on the cluster, then {len(again.skipped)} skipped; {len(best)} runs recorded")
