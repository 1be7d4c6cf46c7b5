"""labtrack: experiment tracking that makes every result explainable and reproducible.

    import labtrack as lt
    with lt.start_run("mnist", params={"lr": 0.01}) as run:
        run.log_metric("loss", 0.5, step=0)

Everything public is listed in ``__all__``; other modules are internal.
"""

from __future__ import annotations

from labtrack.core.errors import (
    AmbiguousRunId,
    DataDamaged,
    ExperimentNotFound,
    InvalidInput,
    LabtrackError,
    NoActiveRunError,
    ParamConflict,
    RunNotFound,
    SchemaOutdated,
    StoreConflict,
    StoreError,
)
from labtrack.core.model import ArtifactInfo, MetricHistory, MetricSummary, RunStatus
from labtrack.run.handle import Run
from labtrack.verbs.client import Client
from labtrack.verbs.tracking import (
    active_run,
    capture_environment,
    check,
    compute_key,
    delete_experiment,
    delete_run,
    diff,
    doctor,
    end_run,
    exists,
    export,
    find_run,
    flush,
    get_run,
    import_mlflow,
    list_experiments,
    log_artifact,
    log_artifacts,
    log_dict,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    reproduce,
    restore_experiment,
    restore_run,
    search_runs,
    seed_everything,
    set_store,
    set_tag,
    set_tags,
    start_run,
    sweep,
    track,
)

__version__ = "0.1.0"

# Loaded on first use, so that `import labtrack` stays fast: (module, name) for each lazy public name.
_LAZY = {
    "RunList": "labtrack.verbs.runlist",
    "SweepResult": "labtrack.verbs.sweeps",
    "TrackedFunction": "labtrack.verbs.sweeps",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labtrack' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "AmbiguousRunId",
    "ArtifactInfo",
    "Client",
    "DataDamaged",
    "ExperimentNotFound",
    "InvalidInput",
    "LabtrackError",
    "MetricHistory",
    "MetricSummary",
    "NoActiveRunError",
    "ParamConflict",
    "Run",
    "RunList",
    "RunNotFound",
    "RunStatus",
    "SchemaOutdated",
    "StoreConflict",
    "StoreError",
    "SweepResult",
    "TrackedFunction",
    "__version__",
    "active_run",
    "capture_environment",
    "check",
    "compute_key",
    "delete_experiment",
    "delete_run",
    "diff",
    "doctor",
    "end_run",
    "exists",
    "export",
    "find_run",
    "flush",
    "get_run",
    "import_mlflow",
    "list_experiments",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "reproduce",
    "restore_experiment",
    "restore_run",
    "search_runs",
    "seed_everything",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "sweep",
    "track",
]
