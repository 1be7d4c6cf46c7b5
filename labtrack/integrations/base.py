"""What every framework integration shares, built on the public API only.

- ``Attachment``: the run an integration logs into. The active run if there is one (the integration
  leaves it running), else a run the integration starts and ends — it ends only what it started.
- ``log_params`` on an attachment: frameworks re-log hyperparameters; the same value again is fine, a value
  that really changes is kept as first logged and reported once as a warning (``IntegrationWarning``), never
  as an exception in the middle of training.
- ``safe``: a tracker failure (a bad value, a full disk) warns once per kind and lets training go on.
- ``is_rank_zero``: in distributed training only the process of global rank zero logs.
- ``number``: framework scalars (tensors, numpy values) as floats; None for what is not a number.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import labtrack
from labtrack import InvalidInput, ParamConflict, Run, RunStatus

__all__ = ["Attachment", "IntegrationWarning", "Unfinished", "attach", "call_quietly", "flatten", "is_rank_zero", "number", "param_value",
           "safe", "warn_once"]

# Rank variables of the launchers (torchrun / accelerate / deepspeed, MPI, Slurm), global rank first.
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
_MAX_PARAM_TEXT = 6000  # longer values (a whole config as text) are cut: a param is a label, not a file

_warned: set[str] = set()
_warned_lock = threading.Lock()


class IntegrationWarning(RuntimeWarning):
    """A framework integration went on after something it could not record as asked."""


def warn_once(key: str, message: str) -> None:
    """Warn with ``message`` the first time ``key`` is seen in this process (the one way integrations report
    a degraded-but-going-on condition)."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(f"labtrack: {message}", IntegrationWarning, stacklevel=3)


def is_rank_zero() -> bool:
    """True unless a launcher says this process has a global rank other than 0."""
    for name in _RANK_VARIABLES:
        raw = os.environ.get(name)
        if raw is not None and raw.strip():
            try:
                return int(raw) == 0
            except ValueError:
                continue
    return True


def number(value: Any) -> float | None:
    """``value`` as a float if it is a single number (Python, numpy or a one-element tensor), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond a float's range is no metric value
            return None
    item = getattr(value, "item", None)  # numpy scalars and arrays, torch tensors
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    try:
        if callable(numel) and numel() != 1:
            return None
        if numel is None and isinstance(size, int) and size != 1:
            return None
        if callable(item):
            found = item()
            return float(found) if isinstance(found, (int, float)) else None
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def flatten(values: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings as one level of ``a.b.c`` keys; values that are not params (objects, callables) as text.

    A config that contains itself (a child pointing back at its parent) has ``"<cycle>"`` where it refers back,
    and mappings nested deeper than 32 levels are kept as their text: neither may recurse into the training."""
    out: dict[str, Any] = {}
    _flatten_into(out, values, prefix, sep, (id(values),))
    return out


_MAX_DEPTH = 32


def _flatten_into(out: dict[str, Any], values: Mapping[str, Any], prefix: str, sep: str,
                  enclosing: tuple[int, ...]) -> None:
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if not isinstance(value, Mapping):
            out[name] = param_value(value)
        elif id(value) in enclosing:
            out[name] = "<cycle>"
        elif len(enclosing) >= _MAX_DEPTH:
            out[name] = param_value(value)
        else:
            _flatten_into(out, value, name, sep, (*enclosing, id(value)))


def param_value(value: Any) -> Any:
    """A value the params table takes: numbers, strings, booleans and None as they are, lists and tuples of
    those as lists, anything else (a class, a callable, an enum) as its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) or len(value) <= _MAX_PARAM_TEXT else value[:_MAX_PARAM_TEXT]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value) if len(repr(value)) <= _MAX_PARAM_TEXT else repr(value)[:_MAX_PARAM_TEXT]
    as_number = number(value)
    if as_number is not None and not isinstance(value, (list, tuple)):
        return as_number
    name = getattr(value, "name", None) if type(value).__module__ == "enum" else None
    text = name if isinstance(name, str) else getattr(value, "__name__", None)
    if not isinstance(text, str):
        try:
            text = repr(value)
        except Exception:  # a framework object that cannot describe itself (half built): its type says enough
            text = f"<{type(value).__module__}.{type(value).__qualname__} object>"
    return str(text)[:_MAX_PARAM_TEXT]


@contextmanager
def safe(what: str) -> Iterator[None]:
    """Run a tracker call from inside training: a labtrack error, a bad value or a bug of ours warns once per
    ``what`` and the training goes on (a failing store is already absorbed by the background writer). Not
    ``BaseException``: Ctrl-C and ``SystemExit`` still stop the program."""
    try:
        yield
    except Exception as exc:  # any failure of the tracker's, not only the expected ones: training comes first
        warn_once(f"safe:{what}", f"could not {what} ({type(exc).__name__}: {exc}); training goes on")


@dataclass
class Attachment:
    """The run an integration logs into, and whether the integration started it (then it also ends it)."""

    run: Run
    owned: bool
    _params: dict[str, Any] = field(default_factory=dict)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params, tolerating the same value again; a changed value is reported once and not logged."""
        fresh = {}
        for key, value in params.items():
            value = param_value(value)
            if key in self._params:
                if self._params[key] != value:
                    warn_once(f"param:{self.run.id}:{key}", f"param {key!r} of run {self.run.id[:8]} was logged as "
                              f"{self._params[key]!r} and is now {value!r}; the first value is kept (params are "
                              "immutable: log the new value under another key or start a new run)")
                continue
            fresh[key] = value
        if not fresh:
            return
        try:
            self.run.log_params(fresh)
            self._params.update(fresh)
        except ParamConflict:
            for key, value in fresh.items():  # one at a time: keep every key that does not conflict
                try:
                    self.run.log_param(key, value)
                except ParamConflict as exc:
                    warn_once(f"param:{self.run.id}:{key}", f"{exc}; the first value is kept")
                except InvalidInput as exc:
                    warn_once(f"param:{self.run.id}:{key}", f"param {key!r} was not logged: {exc}")
                self._params[key] = value
        except InvalidInput:
            for key, value in fresh.items():
                with safe(f"log param {key!r}"):
                    self.run.log_param(key, value)
                self._params[key] = value
        except Exception as exc:  # never into the training loop
            warn_once("safe:log params", f"could not log params ({type(exc).__name__}: {exc}); training goes on")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the numeric values of ``metrics`` (others are left out) at ``step``; never raises."""
        numbers = {str(k): v for k, v in ((k, number(v)) for k, v in metrics.items()) if v is not None}
        if not numbers:
            return
        try:
            self.run.log_metrics(numbers, step=step)
        except InvalidInput:  # one bad key refuses the whole call: log the others one by one
            for key, value in numbers.items():
                with safe(f"log metric {key!r}"):
                    self.run.log_metric(key, value, step=step)
        except Exception as exc:  # never into the training loop
            warn_once("safe:log metrics", f"could not log metrics ({type(exc).__name__}: {exc}); training goes on")

    def finish(self, status: RunStatus | str = RunStatus.FINISHED) -> None:
        """End the run if this attachment started it; a run that was active before is left running."""
        if self.owned:
            with safe("end the run"):
                self.run.end(status)


class Unfinished:
    """Owned runs whose training has not reported its end — it raised, and the framework tells a callback
    nothing then — by run id. The next training of the same integration ends them FAILED (``end_left_over``);
    if none comes, labtrack's exit hook ends the run."""

    def __init__(self) -> None:
        self._runs: dict[str, Attachment] = {}

    def started(self, attachment: Attachment) -> None:
        if attachment.owned:
            self._runs[attachment.run.id] = attachment

    def ended(self, attachment: Attachment) -> None:
        self._runs.pop(attachment.run.id, None)

    def end_left_over(self, previous: Attachment | None) -> None:
        """Before a new training: end FAILED this callback's ``previous`` run and the active run, each if it is a
        run a training of this integration started and never finished."""
        if previous is not None and self._runs.pop(previous.run.id, None) is not None:
            previous.finish(RunStatus.FAILED)
        active = labtrack.active_run()
        abandoned = self._runs.pop(active.id, None) if active is not None else None
        if abandoned is not None:
            abandoned.finish(RunStatus.FAILED)


def attach(experiment: str | None = None, *, run: Run | None = None, params: Mapping[str, Any] | None = None,
           tags: Mapping[str, Any] | None = None, name: str | None = None, nested: bool = False,
           store: str | None = None, default_experiment: str = "default") -> Attachment:
    """The run to log into: ``run`` if given, else the active run (unless ``nested``), else a new one.

    A new run is started under ``experiment`` (or ``default_experiment``) and is ended by ``finish``; with
    ``nested=True`` and a run active, the new run is its child."""
    if run is not None:
        attachment = Attachment(run, owned=False)
    else:
        active = labtrack.active_run()
        if active is not None and not nested:
            attachment = Attachment(active, owned=False)
        else:
            started = labtrack.start_run(experiment or default_experiment, tags=tags, name=name,
                                         nested=active is not None, store=store)
            attachment = Attachment(started, owned=True)
            tags = None
    if tags:
        with safe("set tags"):
            attachment.run.set_tags(tags)
    if params:
        attachment.log_params(params)
    return attachment


def call_quietly(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under ``safe(what)``; None if it failed."""
    with safe(what):
        return fn(*args, **kwargs)
    return None
