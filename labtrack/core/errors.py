"""The one exception tree of labtrack.

    LabtrackError                  root: catch this to catch everything labtrack raises
    ├── InvalidInput (400)         a bad key, value, step, path or setting; names the field and the fix
    │   └── ParamConflict (409)    a param logged again with a different value
    ├── NoActiveRunError (400)     a module-level call with no active run
    ├── RunNotFound (404)          no run with that id (or id prefix)
    │   └── AmbiguousRunId (400)   an id prefix that matches several runs
    ├── ExperimentNotFound (404)
    └── StoreError (503)           the store cannot be opened, read or written
        ├── DataDamaged (500)      stored data fails its checksum: the message names the run and key
        ├── StoreConflict (409)    a write collided with what the store holds (a key already taken):
        │                          retried as a careful write, which checks instead of assuming
        └── SchemaOutdated (503)   the store's schema needs `labtrack db upgrade`

Each class carries the HTTP status the tracking server answers with, so that one JSON error body
serves every route. Third-party errors (SQLAlchemy, OS) are translated at the store boundary with
``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousRunId",
    "ArtifactNotFound",
    "AuthenticationFailed",
    "DataDamaged",
    "ExperimentNotFound",
    "InvalidInput",
    "LabtrackError",
    "NoActiveRunError",
    "ParamConflict",
    "PermissionDenied",
    "RequestTooLarge",
    "RunNotFound",
    "SchemaOutdated",
    "StoreConflict",
    "StoreError",
    "UnsupportedMediaType",
]


class LabtrackError(Exception):
    """Root of every error labtrack raises."""

    status_code: int = 500
    field: str | None = None  # the input at fault, when there is one (see InvalidInput)

    def to_dict(self) -> dict[str, object]:
        """The JSON error body of the CLI's ``--json`` and the server: ``{"error": {"code": <class name>,
        "message", "field", "status"}}`` (``core.wire.error_from_wire`` reads it back)."""
        return {"error": {"code": type(self).__name__, "message": str(self), "field": self.field,
                          "status": self.status_code}}


class InvalidInput(LabtrackError, ValueError):
    """A value the caller passed is not acceptable; the message names the field and the fix."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.column = column  # where in the input text (1-based), for a syntax error: a UI points at it


class ParamConflict(InvalidInput):
    """A param is immutable: logging the same key again with a different value is refused."""

    status_code = 409


class NoActiveRunError(LabtrackError):
    """A module-level logging call was made while no run is active."""

    status_code = 400


class RunNotFound(LabtrackError, LookupError):
    status_code = 404


class AmbiguousRunId(RunNotFound):
    status_code = 400


class ExperimentNotFound(LabtrackError, LookupError):
    status_code = 404


class StoreError(LabtrackError):
    """The store could not be opened, read or written."""

    status_code = 503


class DataDamaged(StoreError):
    """Stored bytes fail their checksum (a damaged disk, a copy cut short, a hand edit): labtrack raises
    this instead of returning wrong data. The message names the run, the key and what to do."""

    status_code = 500


class StoreConflict(StoreError):
    """The store refused a write because a unique key was taken: e.g. a run created again, or points of a
    metric the writer believed new. Writers retry it as a careful write (``Store.write(..., retry=True)``)."""

    status_code = 409


class SchemaOutdated(StoreError):
    """The store was created by another labtrack version; the message names the command to run."""


class ArtifactNotFound(StoreError, LookupError):
    """No stored content has this sha256."""

    status_code = 404


class RequestTooLarge(InvalidInput):
    """A request body larger than the server takes (after decompression)."""

    status_code = 413


class AuthenticationFailed(StoreError):
    """The tracking server did not accept the token: none was sent, or it is unknown, expired or revoked.
    Runs keep logging into the local spool meanwhile; nothing is lost."""

    status_code = 401


class PermissionDenied(StoreError):
    """The token's role does not allow this (a reader writing, a writer managing tokens)."""

    status_code = 403


class UnsupportedMediaType(InvalidInput):
    """A request body that is not JSON (the server takes no forms: a form is what another site can make a
    browser send)."""

    status_code = 415
