"""Hugging Face Transformers: ``LabtrackCallback`` for the ``Trainer``, and ``report_to="labtrack"``.

    import labtrack.integrations.transformers               # registers report_to="labtrack"
    args = TrainingArguments(..., report_to="labtrack")     # or Trainer(..., callbacks=[LabtrackCallback()])

- Training arguments (``args.to_dict()``) become params, and the model's config too, under ``model.``
  (``log_model_config=False`` leaves it out).
- What the Trainer logs (loss, learning rate, grad norm, eval metrics, the final train_* summary) becomes
  metrics at the Trainer's global step; run times and throughputs are marked noisy for ``reproduce``.
- ``log_model=True`` stores the final model (``save_pretrained``, with the tokenizer or processor the
  Trainer holds) under ``model/`` when training ends.
- The run: ``run`` if given, else the active run (left running: ``with labtrack.start_run("exp"):``
  around ``trainer.train()`` is how ``report_to`` users choose the experiment), else a run the callback
  starts under ``experiment`` (default "default"), named ``args.run_name``, and ends when training ends.
- ``trainer.evaluate()`` outside ``train()`` logs into the active run if there is one (a run the callback
  started has ended with its training).
- Only the world process zero logs.

A ``train()`` that raises never reaches ``on_train_end``, so the run it started is still active: an uncaught
exception ends it FAILED at exit (with the traceback), as every labtrack run; if the program catches the
exception and trains again, the next ``train()`` of any LabtrackCallback ends that abandoned run FAILED
first instead of logging into it.

Transformers has no entry point for reporting integrations: ``report_to="labtrack"`` works once this
module is imported (it adds itself to ``transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

from labtrack import Run, RunStatus
from labtrack.integrations.base import Attachment, Unfinished, attach, flatten, is_rank_zero, safe, warn_once

__all__ = ["LabtrackCallback"]

_NOISY = ("*_runtime", "*_per_second", "total_flos")
_unfinished = Unfinished()  # owned runs whose train() raised (Transformers says nothing then)


class LabtrackCallback(TrainerCallback):  # type: ignore[misc]
    """Records a Trainer's arguments, logs and (opt-in) final model in a labtrack run."""

    def __init__(self, experiment: str | None = None, run: Run | None = None, *,
                 tags: Mapping[str, Any] | None = None, log_model: bool = False, log_model_config: bool = True,
                 store: str | None = None) -> None:
        self._experiment = experiment
        self._run = run
        self._tags = dict(tags) if tags else None
        self._log_model = log_model
        self._log_model_config = log_model_config
        self._store = store
        self._attachment: Attachment | None = None

    @property
    def run(self) -> Run | None:
        """The run being logged into (None before training begins, on other processes, and after it ended)."""
        return self._attachment.run if self._attachment is not None else None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not (state.is_world_process_zero and is_rank_zero()):
            return
        with safe("start a run"):
            previous, self._attachment = self._attachment, None
            _unfinished.end_left_over(previous)
            name = getattr(args, "run_name", None)
            self._attachment = attach(self._experiment, run=self._run, tags=self._tags, store=self._store,
                                      name=name if isinstance(name, str) and name else None)
            _unfinished.started(self._attachment)
        attachment = self._attachment
        if attachment is None:
            return
        with safe("read the training arguments"):
            attachment.log_params(flatten(args.to_dict()))
        config = getattr(model, "config", None)
        if self._log_model_config and config is not None and callable(getattr(config, "to_dict", None)):
            with safe("read the model config"):
                attachment.log_params(flatten(config.to_dict(), "model"))
        with safe("mark timings noisy"):
            attachment.run.mark_noisy(*_NOISY)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or not is_rank_zero():
            return
        if self._attachment is None and self._run is None:  # evaluate() outside train(): into the active run, if any
            import labtrack

            active = labtrack.active_run()
            self._attachment = attach(run=active) if active is not None else None
        if self._attachment is not None:
            self._attachment.log_metrics(logs, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        attachment = self._attachment
        if attachment is None or not state.is_world_process_zero:
            return
        if self._log_model:
            if model is None or not callable(getattr(model, "save_pretrained", None)):
                warn_once("transformers:model", "log_model=True but the Trainer's model has no save_pretrained; "
                          "the model was not stored")
            else:
                with safe("store the model"), tempfile.TemporaryDirectory(prefix="labtrack-model-") as folder:
                    model.save_pretrained(folder)
                    processor = kwargs.get("processing_class") or kwargs.get("tokenizer")
                    if processor is not None and callable(getattr(processor, "save_pretrained", None)):
                        processor.save_pretrained(folder)
                    attachment.run.log_artifacts(folder, "model")
        _unfinished.ended(attachment)
        attachment.finish(RunStatus.FINISHED)
        if attachment.owned:
            self._attachment = None  # a later train() of this callback starts a new run


def _register() -> None:
    """Make ``report_to="labtrack"`` name this callback (Transformers looks names up in this table)."""
    try:
        from transformers.integrations import integration_utils
    except ImportError:  # a Transformers without the table: only callbacks=[LabtrackCallback()] works
        return
    table = getattr(integration_utils, "INTEGRATION_TO_CALLBACK", None)
    if isinstance(table, dict):
        table.setdefault("labtrack", LabtrackCallback)


_register()
