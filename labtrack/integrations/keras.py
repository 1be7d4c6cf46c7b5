"""Keras 3: ``LabtrackCallback``, on any backend (TensorFlow, JAX, PyTorch).

    from labtrack.integrations.keras import LabtrackCallback
    model.fit(x, y, epochs=5, callbacks=[LabtrackCallback("mnist")])

- Params when training begins: ``epochs``, ``steps`` per epoch (when Keras knows it), the model's
  ``model.class`` and ``model.parameters`` (its weight count), and the optimizer's ``optimizer.class`` and
  config (``optimizer.learning_rate``, ``optimizer.momentum``, ...). Names Keras makes up (``sgd_3``,
  ``sequential_2``) are left out: a new model in the same run would look like a changed setting.
- Each epoch's logs (loss, metrics, val_*) as metrics with the epoch as step; ``log_every_n_batches=N``
  also logs the running batch values every N batches as ``batch/<key>``, at the global batch number.
- ``log_model=True`` stores the trained model as ``model/model.keras`` when training ends.
- The run: ``run`` if given, else the active run (left running), else a run the callback starts and
  ends when training ends. A ``fit`` that raises never reaches ``on_train_end``: an uncaught exception ends
  its run FAILED at exit, as every labtrack run, and if the program catches it and trains again, the next
  ``fit`` with a LabtrackCallback ends the abandoned run FAILED before starting its own.
- Only the process of global rank zero logs (the launcher's RANK and friends).

Keras picks its backend when it is first imported, from ``KERAS_BACKEND`` or ``~/.keras/keras.json``, and
its default is TensorFlow. When neither names one and TensorFlow is not installed, importing this module
before Keras chooses ``torch`` (else ``jax``) by setting ``KERAS_BACKEND``, instead of letting
``import keras`` fail.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _choose_backend() -> None:
    """Set KERAS_BACKEND when Keras would otherwise fail to import for want of TensorFlow (see above)."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND") or importlib.util.find_spec("tensorflow"):
        return
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        configured = json.loads(Path(home, "keras.json").read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        configured = None
    if configured and configured != "tensorflow":
        return
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return


_choose_backend()

import keras  # noqa: E402 - after the backend is chosen

from labtrack import Run, RunStatus  # noqa: E402
from labtrack.integrations.base import Attachment, Unfinished, attach, flatten, is_rank_zero, safe  # noqa: E402

__all__ = ["LabtrackCallback"]

_unfinished = Unfinished()  # owned runs whose fit raised (Keras says nothing then)


def _shortest(value: Any) -> Any:
    """A float that is exactly a float32 (Keras keeps learning rates in float32 variables) as the shortest
    decimal of that float32: 0.01, not 0.009999999776482582, so that ``params.optimizer.learning_rate = 0.01``
    finds the run."""
    if isinstance(value, float) and math.isfinite(value):
        import numpy  # Keras depends on it

        as32 = numpy.float32(value)
        if float(as32) == value:
            return float(str(as32))
    return value


class LabtrackCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Records a Keras ``fit``: its settings and optimizer as params, epoch (and optionally batch) logs as
    metrics, and (opt-in) the trained model."""

    def __init__(self, experiment: str | None = None, run: Run | None = None, *,
                 tags: Mapping[str, Any] | None = None, log_every_n_batches: int | None = None,
                 log_model: bool = False, store: str | None = None) -> None:
        super().__init__()
        if log_every_n_batches is not None and (isinstance(log_every_n_batches, bool)
                                                or not isinstance(log_every_n_batches, int) or log_every_n_batches < 1):
            raise ValueError(f"log_every_n_batches must be a positive integer or None, not {log_every_n_batches!r}")
        self._experiment = experiment
        self._run = run
        self._tags = dict(tags) if tags else None
        self._every = log_every_n_batches
        self._log_model = log_model
        self._store = store
        self._attachment: Attachment | None = None
        self._batches = 0  # global batch number across epochs and fits of this callback

    @property
    def run(self) -> Run | None:
        """The run being logged into (None before training begins, on other ranks, and after it ended)."""
        return self._attachment.run if self._attachment is not None else None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not is_rank_zero():
            return
        with safe("start a run"):
            previous, self._attachment = self._attachment, None
            _unfinished.end_left_over(previous)
            self._attachment = attach(self._experiment, run=self._run, tags=self._tags, store=self._store)
            _unfinished.started(self._attachment)
            if self._attachment.owned:
                self._batches = 0
        if self._attachment is None:
            return
        params = {key: self.params.get(key) for key in ("epochs", "steps") if (self.params or {}).get(key) is not None}
        model = self.model
        with safe("read the model"):
            params["model.class"] = type(model).__name__
            params["model.parameters"] = int(model.count_params())
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            with safe("read the optimizer config"):
                config = dict(optimizer.get_config())
                config.pop("name", None)  # Keras numbers default names ("sgd_3"): not a setting
                params.update({k: _shortest(v) for k, v in flatten(config, "optimizer").items()})
                params["optimizer.class"] = type(optimizer).__name__
        self._attachment.log_params(params)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self._attachment is None or self._every is None or not logs or self._batches % self._every:
            return
        self._attachment.log_metrics({f"batch/{k}": v for k, v in logs.items()}, step=self._batches)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._attachment is not None and logs:
            self._attachment.log_metrics(logs, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        attachment = self._attachment
        if attachment is None:
            return
        if self._log_model:
            with safe("store the model"), tempfile.TemporaryDirectory(prefix="labtrack-model-") as folder:
                path = Path(folder, "model.keras")
                self.model.save(path)
                attachment.run.log_artifact(path, "model")
        _unfinished.ended(attachment)
        attachment.finish(RunStatus.FINISHED)
        if attachment.owned:
            self._attachment = None  # a later fit with this callback starts a new run
