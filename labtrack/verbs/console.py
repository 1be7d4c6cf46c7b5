"""The console of a run: what the process prints to ``sys.stdout`` and ``sys.stderr`` while the run is live,
kept as the artifact ``labtrack/console.log``.

**Python-level, not fd-level.** While a run is live, ``sys.stdout`` and ``sys.stderr`` are wrapped by a
``Tee`` that first writes to the stream it wraps (the user sees every character at once, with the same
buffering, colours and ``isatty()``) and then appends the text to each live run's ``Capture``. We chose
this over redirecting file descriptors 1 and 2 through a pipe because the pipe

- turns the terminal into a pipe for everything downstream: C stdio and child processes switch to full
  buffering (output shows up late), and libraries that test ``isatty()`` drop colours and progress bars;
- hides output from the user whenever the relaying thread stops: a SIGKILL, or a deadlock in the process,
  would lose what was printed just before — the moment the output matters most — and child processes
  that inherited the pipe would get EPIPE;
- fights the tools that already own those descriptors: pytest's ``capfd`` and Jupyter's kernel, which
  relays fd 1/2 into the notebook itself (a ``Tee`` around ipykernel's ``OutStream`` changes nothing there).

What it does not see: output of C extensions and child processes written straight to fds 1/2, writes to
``sys.stdout.buffer``, and ``logging`` handlers that took a reference to the stream before the run started
(``logging.basicConfig`` at import): those handlers are pointed at the tee while a run is live.

**One tee per process**, installed when the first run starts and removed when the last one ends (only if
nothing replaced it meanwhile). Every live run this process owns gets its own ``Capture`` of what is
printed while it is live: a nested child's console is also in its parent's. A forked child keeps none of
its parent's captures. A tee that could not be removed when the last run ended (``sys.stdout`` was
something else then: a ``contextlib.redirect_stdout`` that puts the tee back when it ends, or a forked
child) puts the original stream back at its next write.

**Carriage returns** are applied as a terminal applies them: a progress bar redrawn a thousand times with
``\\r`` is one line in the log, not a thousand.

**Size cap** (``console_log_max_mb``, default 10): beyond it the rest is not kept and the log ends with a
line saying so. Counted in characters, which is bytes for ASCII.

**Written in chunks, cheaply.** Artifacts are content-addressed blobs, so the log is re-stored whole
(``run.log_bytes``, crash-safe in the spool when the call returns) by the process's monitor thread
(``labtrack.verbs.monitor``) when it changed, at most every ``max(1 s, size / 64 KiB/s)``: a log under
64 KiB is at most about a second behind, and a growing log costs at most ~64 KiB/s of writes (10 MB: every
~2.5 minutes). The versions it replaces are unreferenced blobs that ``labtrack gc`` removes. When the run
ends, the complete log is stored before the end; a run that printed nothing has no console.log.

**Redaction** as for the command line: ``redact_text`` (token formats, URL credentials, ``password=...``),
plus the literal values that ``redact_argv`` removes from this process's command line and the values of
secret-named environment variables (``HF_TOKEN``...) wherever they are printed (values of 6+ characters).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labtrack.run.handle import Run

__all__ = ["CONSOLE_ARTIFACT", "Capture", "Tee", "attach", "detach", "redact", "reset_after_fork", "secret_values"]

CONSOLE_ARTIFACT = "labtrack/console.log"
_BYTES_PER_SECOND = 64 * 1024  # the most a growing log costs in writes, on average
_MIN_SECRET = 6  # shorter values would blank ordinary words in the output


class Capture:
    """One run's console text, as a terminal would show it (see the module docstring). Thread safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.RLock()  # RLock: a signal handler that prints can run inside ``add``
        self._done = io.StringIO()  # complete lines
        self._done_size = 0
        # The line being written, appended in place: a long line printed a few characters at a time
        # (``print(".", end="")``) costs linear time, not a copy of the whole line per write.
        self._line = io.StringIO()
        self._line_size = 0
        self._return = False  # a \r was written: the next text replaces the line
        self.cut = False
        self.changes = 0  # grows with every write
        self.stored_changes = 0  # ``changes`` when the log was last stored
        self.next_store = 0.0  # monotonic time before which it is not stored again
        self.closed = False
        self._store_lock = threading.Lock()
        self._written = 0  # the version last stored

    def add(self, text: str) -> None:
        with self.lock:
            if self.cut or self.closed or not text:
                return
            self.changes += 1
            lines = text.split("\n")
            for i, segment in enumerate(lines):
                if i:
                    self._end_line()
                    if self.cut:
                        return
                if segment:
                    self._feed(segment)
            if self._done_size + self._line_size > self.limit:
                self.cut = True
                self._clear_line()

    def _clear_line(self) -> None:
        self._line.seek(0)
        self._line.truncate()
        self._line_size = 0

    def _feed(self, segment: str) -> None:
        pieces = segment.split("\r")
        for j, piece in enumerate(pieces):
            if j:
                self._return = True
            if piece:
                if self._return:
                    self._clear_line()
                self._line.write(piece)
                self._line_size += len(piece)
                self._return = False

    def _end_line(self) -> None:
        line = self._line.getvalue() + "\n"
        self._clear_line()
        self._return = False
        if self._done_size + len(line) > self.limit:
            self.cut = True
            return
        self._done.write(line)
        self._done_size += len(line)

    @property
    def empty(self) -> bool:
        return self._done_size == 0 and not self._line_size and not self.cut

    def text(self) -> str:
        """What was captured (unredacted), with the cut-off marker if the cap was reached."""
        with self.lock:
            text = self._done.getvalue() + self._line.getvalue()
            if self.cut:
                mb = self.limit / (1 << 20)
                text += (f"{'' if not text or text.endswith(chr(10)) else chr(10)}[labtrack: the console output "
                         f"reached the {mb:.3g} MB cap here; the rest was not recorded (setting console_log_max_mb, "
                         "LABTRACK_CONSOLE_LOG_MAX_MB)]\n")
            return text

    def store(self, run: Run, *, final: bool = False, extra: str = "") -> bool:
        """Store the log as the run's ``labtrack/console.log`` if it changed since it was last stored; ``final``:
        the last time (``extra`` is added first; later writes are not kept). Returns whether it stored.

        The text is taken under the capture's lock, redacted and stored outside it (a print never waits
        for a file write); a version older than one already stored is dropped, so the final one stands."""
        with self.lock:
            if self.closed:
                return False
            if final and extra:
                self.add(extra)
            if final:
                self.closed = True
            if self.changes == self.stored_changes or self.empty:
                return False
            version = self.stored_changes = self.changes
            text = self.text()
            self.next_store = time.monotonic() + max(1.0, len(text) / _BYTES_PER_SECOND)
        data = redact(text).encode("utf-8", "replace")
        with self._store_lock:
            if version < self._written:
                return False
            self._written = version
            run.log_bytes(data, CONSOLE_ARTIFACT)
        return True

    def due(self, now: float) -> bool:
        return not self.closed and self.changes != self.stored_changes and now >= self.next_store


# -- redaction ---------------------------------------------------------------------------------------

_secrets_cache: tuple[tuple[Any, ...], tuple[str, ...]] | None = None


def secret_values(argv: Iterable[str] | None = None, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The literal secrets this process knows of: values ``redact_argv`` takes out of the command line, and
    values of secret-named environment variables; longest first, each at least 6 characters."""
    global _secrets_cache
    from labtrack.core.redact import REDACTED, redact_argv  # on first use: `import labtrack` stays fast

    args = tuple(sys.argv if argv is None else argv)
    env = os.environ if environ is None else environ
    named = tuple(sorted((k, v) for k, v in env.items() if _secret_name(k)))
    key = (args, named)
    if _secrets_cache is not None and _secrets_cache[0] == key:
        return _secrets_cache[1]
    found = {v for _, v in named}
    for original, redacted in zip(args, redact_argv(args)):
        if redacted != original and REDACTED in redacted:
            head = _shared(original, redacted)
            tail = _shared(original[::-1], redacted[::-1])
            found.add(original[head:len(original) - tail] if head + tail < len(original) else original)
        elif redacted == REDACTED:  # the value after a secret flag
            found.add(original)
    values = tuple(sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True))
    _secrets_cache = (key, values)
    return values


_names: dict[str, bool] = {}


def _secret_name(name: str) -> bool:
    """``is_secret_name``, remembered: the environment is looked through at every store of a log."""
    found = _names.get(name)
    if found is None:
        from labtrack.core.redact import is_secret_name

        found = _names[name] = is_secret_name(name)
    return found


def _shared(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def redact(text: str) -> str:
    """The console text as it is stored (see the module docstring)."""
    from labtrack.core.redact import REDACTED, redact_text

    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_text(text)


# -- the tee -----------------------------------------------------------------------------------------

class Tee:
    """A text stream that writes to ``stream`` and then to every live capture; the rest is ``stream``'s."""

    def __init__(self, stream: Any, captures: dict[str, Capture], name: str = "") -> None:
        self._stream = stream
        self._captures = captures
        self._name = name  # "stdout" or "stderr": where it stands in ``sys``

    @property
    def wrapped(self) -> Any:
        return self._stream

    def write(self, text: str) -> int:
        written = self._stream.write(text)  # first: the user sees it even if capturing fails
        if not self._captures:
            _step_aside(self)
        elif isinstance(text, str):
            try:
                for capture in list(self._captures.values()):
                    capture.add(text)
            except Exception as exc:  # a bug of ours must not break print: stop capturing, say so once
                _give_up(exc)
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_lock = threading.RLock()
_captures: dict[str, Capture] = {}  # run id -> its capture, for every run this process captures
_handlers: list[Any] = []  # logging handlers pointed at a tee: (handler, original stream)
# Every tee ever installed, by (name, id of its stream), kept for the life of the process and reused. A tee
# must outlive its time in ``sys``: ``print`` holds ``sys.stdout`` without a reference of its own (CPython
# 3.11/3.12), so a tee freed when another thread ends the last run — or a signal handler does — between the
# text and the newline of a print crashed the process (SIGSEGV). Reuse keeps this to one tee per stream.
_tees: dict[tuple[str, int], Tee] = {}


def _give_up(exc: Exception) -> None:
    with _lock:  # what the captures hold is still stored when their runs end
        _captures.clear()
        _uninstall()
    import warnings

    warnings.warn(f"labtrack: stopped keeping the console log: {type(exc).__name__}: {exc}", RuntimeWarning,
                  stacklevel=3)


def attach(run_id: str, limit: int) -> Capture:
    """Start capturing the console for run ``run_id`` (installing the tee if it is the first)."""
    capture = Capture(limit)
    with _lock:
        _captures[run_id] = capture
        if len(_captures) == 1:
            _install()
    return capture


def detach(run_id: str) -> Capture | None:
    """Stop capturing for the run; the last run out removes the tee."""
    with _lock:
        capture = _captures.pop(run_id, None)
        if capture is not None and not _captures:
            _uninstall()
    return capture


def _install() -> None:
    originals = {}
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        if isinstance(stream, Tee) and stream._captures is _captures:
            originals[id(stream.wrapped)] = stream
            continue  # already ours (a forked child, or a tee someone re-installed)
        tee = _tees.get((name, id(stream)))
        if tee is None:
            tee = _tees[(name, id(stream))] = Tee(stream, _captures, name)
        setattr(sys, name, tee)
        originals[id(stream)] = tee
    logging = sys.modules.get("logging")
    if logging is None:
        return
    for handler in _stream_handlers(logging):
        ours = originals.get(id(handler.stream))
        if ours is not None:
            _handlers.append((handler, handler.stream))
            handler.stream = ours  # not setStream: it flushes and takes the handler's lock


def _uninstall() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, Tee) and stream._captures is _captures:
            setattr(sys, name, stream.wrapped)
    for handler, original in _handlers:
        if isinstance(handler.stream, Tee):
            handler.stream = original
    _handlers.clear()


def _step_aside(tee: Tee) -> None:
    """A tee that outlived every run puts its stream back in ``sys``: it was out of place when the last run
    ended (inside ``contextlib.redirect_stdout``, which put it back when the redirect ended; a forked child)."""
    if tee._name and getattr(sys, tee._name, None) is tee:
        with _lock:
            if not _captures and getattr(sys, tee._name, None) is tee:
                setattr(sys, tee._name, tee.wrapped)


def _stream_handlers(logging: Any) -> list[Any]:
    loggers = [logging.getLogger(), *(v for v in list(logging.Logger.manager.loggerDict.values())
                                      if isinstance(v, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def reset_after_fork() -> None:
    """In a forked child: the parent's runs are not the child's; the tee stays and passes text through."""
    global _lock
    _lock = threading.RLock()
    _captures.clear()
    _handlers.clear()
