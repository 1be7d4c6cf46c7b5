"""PyTorch Lightning: ``LabtrackLogger``, a Lightning ``Logger`` that records into a labtrack run.

    from labtrack.integrations.lightning import LabtrackLogger
    trainer = lightning.Trainer(logger=LabtrackLogger("mnist", log_model=True))
    trainer.fit(model, data)

- Hyperparameters (``self.save_hyperparameters()``, ``logger.log_hyperparams``; dicts, ``Namespace``,
  OmegaConf configs) become params, nested keys flattened as ``a.b.c``.
- Metrics are logged at Lightning's global step (``prefix`` puts ``<prefix>-`` before each key, as
  Lightning's own loggers do).
- ``log_model=True`` stores the best and the last checkpoint under ``checkpoints/`` when training ends;
  ``log_model="all"`` stores every checkpoint as it is saved.
- The run: ``run`` if given, else the active run (left running), else a run the logger starts and ends
  when the trainer finishes (``finalize``): FINISHED, or FAILED when training raised. A trainer used
  again after that (``trainer.test`` after ``trainer.fit``) starts a new run; wrap both in
  ``with labtrack.start_run(...)`` to record them in one.
- Only the process of global rank zero logs (Lightning's ``rank_zero_only`` and the launcher's RANK).
  Under ``ddp_spawn``/``ddp_fork`` the rank processes are children: rank zero starts the run and ends it in
  ``finalize`` — unless the run was started before they started (``logger.version`` read in the main
  process, or a run given or active there): then rank zero logs into it and the main process ends it (at
  exit, or when the program ends it).

Works with the ``lightning`` package, or ``pytorch_lightning`` when only that one is installed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

try:
    from lightning.pytorch.loggers.logger import DummyExperiment as _DummyExperiment
    from lightning.pytorch.loggers.logger import Logger as _Logger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
except ImportError:  # only the older package name installed
    from pytorch_lightning.loggers.logger import DummyExperiment as _DummyExperiment  # type: ignore[no-redef,assignment]
    from pytorch_lightning.loggers.logger import Logger as _Logger  # type: ignore[no-redef,assignment]
    from pytorch_lightning.utilities.rank_zero import rank_zero_only  # type: ignore[no-redef,assignment]

import labtrack
from labtrack import Run, RunStatus
from labtrack.integrations.base import Attachment, attach, flatten, is_rank_zero, param_value, safe, warn_once

__all__ = ["LabtrackLogger"]

# Lightning's finalize(status) words; anything else (a future word) is taken as a normal end.
_STATUS = {"success": RunStatus.FINISHED, "finished": RunStatus.FINISHED, "failed": RunStatus.FAILED}


def _rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0 and is_rank_zero()


def _as_dict(params: Any) -> dict[str, Any]:
    """Lightning hyperparameters as a plain dict: a Namespace, a mapping (AttributeDict) or an OmegaConf config."""
    if params is None:
        return {}
    if isinstance(params, argparse.Namespace):
        params = vars(params)
    if type(params).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf  # only when the user's config is one: omegaconf is installed

        params = OmegaConf.to_container(params, resolve=True)
    if not isinstance(params, Mapping):
        raise TypeError(f"hyperparameters must be a dict, Namespace or OmegaConf config, not {type(params).__name__}")
    return {str(k): (_as_dict(v) if isinstance(v, argparse.Namespace) else v) for k, v in params.items()}


class LabtrackLogger(_Logger):  # type: ignore[misc]
    """A Lightning logger writing params, metrics and (opt-in) checkpoints to a labtrack run.

    ``experiment`` names the experiment of a run the logger starts (default "default"); ``run`` is a run
    to log into; ``tags`` are set on the run; ``store`` is the store of a run the logger starts."""

    LOGGER_JOIN_CHAR = "-"

    def __init__(self, experiment: str | None = None, run: Run | None = None, *, tags: Mapping[str, Any] | None = None,
                 log_model: bool | Literal["all"] = False, prefix: str = "", store: str | None = None) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise ValueError(f"log_model must be True, False or 'all', not {log_model!r}")
        self._experiment_name = experiment
        self._run = run
        self._tags = dict(tags) if tags else None
        self._log_model = log_model
        self._prefix = prefix
        self._store = store
        self._attachment: Attachment | None = None
        self._attached_in: int | None = None  # the process that attached (a forked rank must not end the run)
        self._run_id: str | None = None  # the run of the process this logger was pickled in (ddp_spawn)
        self._checkpoint_callback: Any = None
        self._logged_checkpoints: dict[str, float] = {}  # path -> mtime when stored

    def _attach(self) -> Attachment | None:
        """The run's attachment, started on first use; None (after one warning) if no run could be started."""
        if self._attachment is None:
            with safe("start a run"):
                run = self._run
                if run is None and self._run_id is not None:  # in a spawned process: the parent's run
                    run = labtrack.get_run(self._run_id, store=self._store)
                self._attachment = attach(self._experiment_name, run=run, tags=self._tags, store=self._store)
                self._attached_in = os.getpid()
        return self._attachment

    def __getstate__(self) -> dict[str, Any]:
        """What a spawned process (Lightning's ``ddp_spawn``) receives: the run by its id, not this process's
        handle on it (which holds the store's connections); the store gets the run first, so that the child
        finds it. The child logs into it and leaves it running: the process that started it ends it."""
        run = self._attachment.run if self._attachment is not None else self._run
        if run is not None:
            with safe("flush the run for a spawned process"):
                run.flush()
        state = self.__dict__.copy()
        state.update(_attachment=None, _run=None, _attached_in=None, _run_id=run.id if run is not None else None)
        return state

    @property
    def experiment(self) -> Run | Any:
        """The labtrack run (on other ranks than zero, Lightning's do-nothing stand-in)."""
        attachment = self._attach() if _rank_zero() else None
        return attachment.run if attachment is not None else _DummyExperiment()

    @property
    def name(self) -> str:
        """The experiment's name (Lightning puts checkpoints under ``<save dir>/<name>/<version>``)."""
        attachment = self._attach() if _rank_zero() else None
        return attachment.run.experiment if attachment is not None else self._experiment_name or "default"

    @property
    def version(self) -> str:
        """The run's id (rank zero; other ranks receive it from rank zero through Lightning's broadcast)."""
        attachment = self._attach() if _rank_zero() else None
        return attachment.run.id if attachment is not None else ""

    @property
    def run(self) -> Run | None:
        """The run logged into, once the logger has one (``experiment`` starts it)."""
        return self._attachment.run if self._attachment is not None else None

    @rank_zero_only  # type: ignore[misc]
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params from a dict, Namespace or OmegaConf config; the same value again is fine, a changed one is
        kept as first logged and reported once as a warning."""
        if not is_rank_zero():
            return
        try:
            values = _as_dict(params)
        except TypeError as exc:
            warn_once("lightning:hparams", f"hyperparameters not logged: {exc}")
            return
        attachment = self._attach()
        if attachment is not None:
            attachment.log_params(flatten(values))

    @rank_zero_only  # type: ignore[misc]
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric metrics at ``step`` (Lightning's global step); other values are left out."""
        if not is_rank_zero():
            return
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        attachment = self._attach()
        if attachment is not None:
            attachment.log_metrics(metrics, step=step)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Model graphs are not recorded (a no-op, as Lightning's base logger)."""

    @rank_zero_only  # type: ignore[misc]
    def save(self) -> None:
        """Nothing to do: every call above is already crash-safe in labtrack's spool when it returns."""

    @rank_zero_only  # type: ignore[misc]
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Remember the checkpoint callback; with ``log_model="all"`` store its new checkpoints now."""
        if not is_rank_zero() or not self._log_model:
            return
        self._checkpoint_callback = checkpoint_callback
        if self._log_model == "all":
            self._log_checkpoints(checkpoint_callback)

    @rank_zero_only  # type: ignore[misc]
    def finalize(self, status: str) -> None:
        """Store the best and last checkpoints (``log_model``), then end the run if the logger started it."""
        if not is_rank_zero() or self._attachment is None:
            return
        if self._log_model and self._checkpoint_callback is not None:
            self._log_checkpoints(self._checkpoint_callback)
        attachment = self._attachment
        if attachment.owned and self._attached_in == os.getpid():  # not a forked rank's copy
            attachment.finish(_STATUS.get(status, RunStatus.FINISHED))
            self._attachment = None  # ended: a later fit/test of this logger starts a new run
            self._logged_checkpoints.clear()

    def _log_checkpoints(self, callback: Any) -> None:
        """Store the best and the last checkpoint files of ``callback`` (and the best k), each once per
        version of the file, under ``checkpoints/``."""
        paths = [getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")]
        paths += list(getattr(callback, "best_k_models", {}) or {})
        attachment = self._attach()
        if attachment is None:
            return
        run = attachment.run
        for raw in dict.fromkeys(p for p in paths if p):
            path = Path(raw)
            with safe("store a checkpoint"):
                if not path.is_file():
                    continue
                mtime = path.stat().st_mtime
                if self._logged_checkpoints.get(str(path)) == mtime:
                    continue
                run.log_artifact(path, "checkpoints")
                self._logged_checkpoints[str(path)] = mtime
                if raw == getattr(callback, "best_model_path", None):
                    score = getattr(callback, "best_model_score", None)
                    run.set_tags({"checkpoint.best": f"checkpoints/{path.name}"}
                                 | ({"checkpoint.best_score": str(param_value(score))} if score is not None else {}))
