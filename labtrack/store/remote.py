"""The remote store: ``LABTRACK_STORE=http(s)://host:port`` — a tracking server's API as a ``Store``.

Every method is one request to the route of the same name in ``labtrack.server.api``, bodies in the wire
format (large ones gzipped); it passes the same contract suite as SQLite and PostgreSQL. The token comes
from ``LABTRACK_TOKEN`` or, failing that, the password of the server's host in a netrc file
(``LABTRACK_NETRC``, else ``~/.netrc``) — never from the URL, which a run's records may show.

Requests that fail for want of the server (no connection, 429, 502-504) are tried again a few times with
jittered backoff, honouring ``Retry-After``; then ``StoreError`` tells the caller, and a run's writer keeps
what it holds in its local spool until the server is back (``labtrack.run.writer``). A write resent
after an unknown outcome is sent as a careful write (``retry=True``), which stores everything once.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, cast
from urllib.parse import quote, urlsplit

from labtrack.core import wire
from labtrack.core.errors import InvalidInput, LabtrackError, StoreError
from labtrack.core.frame import RunTable
from labtrack.core.model import (
    ArtifactInfo,
    ClaimState,
    Collected,
    Experiment,
    IngestMark,
    Lifecycle,
    MetricHistory,
    RunRecord,
    RunWrite,
    Search,
    StoreCheck,
)
from labtrack.core.series import deflated_series
from labtrack.core.tokens import Role, TokenInfo
from labtrack.core.views import ExperimentRuns
from labtrack.store.base import Store
from labtrack.store.blobs import BlobInfo, BlobStore, check_sha256, content_digest, discard
from labtrack.store.clock import ServerClock

__all__ = ["RemoteBlobs", "RemoteStore", "token_for"]

_GZIP_ABOVE = 32 * 1024  # bytes of a body worth compressing
_ATTEMPTS = 3
_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
_MAX_WAIT = 10.0  # seconds at most between attempts, whatever Retry-After says
_CHUNK = 1 << 20


def token_for(url: str) -> str | None:
    """The token for the server at ``url``: ``LABTRACK_TOKEN``, else its host's password in a netrc file."""
    token = os.environ.get("LABTRACK_TOKEN", "").strip()
    if token:
        return token
    import netrc

    path = os.environ.get("LABTRACK_NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(urlsplit(url).hostname or "")
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry and entry[2] else None


class RemoteStore(Store):
    """A tracking server, spoken to over HTTP(S) with httpx."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        import httpx

        parts = urlsplit(url)
        if parts.username or parts.password:
            raise InvalidInput(f"store {parts.scheme}://…@{parts.hostname}: put the token in LABTRACK_TOKEN, never in "
                               "the URL (a URL is shown and recorded)", field="store")
        if parts.query or parts.fragment:
            raise InvalidInput("store: a server URL has no query or fragment", field="store")
        self.url = url.rstrip("/")
        headers = {"User-Agent": "labtrack", "Accept": "application/json"}
        token = token if token is not None else token_for(url)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False)
        self._transport_error: type[Exception] = httpx.TransportError
        self._clock = ServerClock(lambda: float(self._call("GET", "/now", tp=float)))
        self.blobs: RemoteBlobs = RemoteBlobs(self)

    # -- the transport ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, body: bytes | Callable[[], Iterator[bytes]] | None = None,
              headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None, stream: bool = False,
              attempts: int = _ATTEMPTS) -> Any:
        """The response to one request, tried again (``attempts`` in all) while the server is missing or busy;
        StoreError if it stays so, the decoded error of the server otherwise. ``body`` may be a function that
        gives the body's pieces afresh for each attempt (a large file, streamed)."""
        for attempt in range(attempts):
            wait = 0.2 * (4 ** attempt) * random.uniform(0.5, 1.0)
            try:
                content = body() if callable(body) else body
                request = self._http.build_request(method, path, content=content, headers=headers, params=params)
                response = self._http.send(request, stream=stream)
            except self._transport_error as exc:
                problem = f"cannot reach the tracking server {self.display_url}: {exc or type(exc).__name__}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in _RETRY_STATUSES:
                    raise self._error(response)
                problem = f"the tracking server {self.display_url} answered {response.status_code}"
                after = response.headers.get("retry-after", "")
                if after.replace(".", "", 1).isdigit():
                    wait = min(float(after), _MAX_WAIT)
                if response.status_code in (502, 503, 504) and _is_error_body(response):
                    error = self._error(response)
                    if not isinstance(error, StoreError) or error.status_code != 503:
                        raise error  # the server answered for itself: not a missing server
                    problem = str(error)
                response.close()
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise StoreError(problem)

    def _error(self, response: Any) -> LabtrackError:
        response.read()
        try:
            return wire.error_from_wire(response.json())
        except (ValueError, InvalidInput):
            return StoreError(f"the tracking server {self.display_url} answered {response.status_code}: "
                              f"{response.text[:200]}")

    def _call(self, method: str, path: str, body: object = None, *, body_type: object = None, tp: object = None,
              params: Mapping[str, str] | None = None, attempts: int = _ATTEMPTS, gzip_body: bool = True) -> Any:
        content = headers = None
        if body is not None:
            content = wire.dumps(body, body_type).encode("utf-8")
            headers = {"Content-Type": "application/json"}
            if gzip_body and len(content) > _GZIP_ABOVE:
                content = gzip.compress(content, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
        response = self._send(method, path, body=content, headers=headers, params=params, attempts=attempts)
        return wire.loads(tp, response.content) if tp is not None else None

    # -- experiments ----------------------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> Experiment:
        return cast(Experiment, self._call("POST", "/experiments", {"name": name}, tp=Experiment))

    def list_experiments(self, lifecycle: Lifecycle = Lifecycle.ACTIVE) -> list[tuple[Experiment, int]]:
        found = self._call("GET", "/experiments", params={"lifecycle": lifecycle.value}, tp=list[ExperimentRuns])
        return [(Experiment(e.id, e.name, e.created_time, e.deleted_time), e.runs) for e in found]

    def delete_experiment(self, name: str) -> int:
        return cast(int, self._call("POST", "/experiments/delete", {"name": name}, tp=int))

    def restore_experiment(self, name: str) -> int | None:
        return cast("int | None", self._call("POST", "/experiments/restore", {"name": name}, tp=int | None))

    # -- reading runs ---------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        return cast(RunRecord, self._call("GET", f"/runs/{_part(run_id)}", tp=RunRecord))

    def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        return cast("list[RunRecord]", self._call("POST", "/runs/get", list(run_ids), tp=list[RunRecord]))

    def resolve_run_id(self, id_or_prefix: str) -> str:
        return cast(str, self._call("GET", f"/runs/resolve/{_part(id_or_prefix)}", tp=str))

    def search_ids(self, search: Search) -> list[str]:
        return cast("list[str]", self._call("POST", "/runs/search", search, body_type=Search, tp=list[str]))

    def run_table(self, run_ids: Sequence[str], search: Search | None = None) -> RunTable:
        body = {"ids": [] if search is not None else list(run_ids), "search": wire.to_wire(search, Search | None)}
        return cast(RunTable, self._call("POST", "/runs/table", body, tp=RunTable))

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        return cast(MetricHistory, self._call("GET", f"/runs/{_part(run_id)}/metrics/{_part(key)}", tp=MetricHistory))

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        return cast("list[ArtifactInfo]", self._call("GET", f"/runs/{_part(run_id)}/artifacts", tp=list[ArtifactInfo]))

    def get_context(self, run_id: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self._call("GET", f"/runs/{_part(run_id)}/context",
                                                        tp=dict[str, Any] | None))

    def get_environment(self, fingerprint: str) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self._call("GET", f"/environments/{_part(fingerprint)}",
                                                        tp=dict[str, Any] | None))

    def ingest_mark(self, run_id: str, source: str) -> IngestMark | None:
        return cast("IngestMark | None", self._call("GET", f"/runs/{_part(run_id)}/marks/{_part(source)}",
                                                    tp=IngestMark | None))

    def now(self) -> float:
        return self._clock.now()

    def ping(self) -> None:
        self._call("GET", "/now", tp=float)

    def check_data(self) -> StoreCheck:
        return cast(StoreCheck, self._call("GET", "/check", tp=StoreCheck))

    # -- writing runs ---------------------------------------------------------------------------

    def write(self, writes: Sequence[RunWrite], *, retry: bool = False) -> None:
        if writes:
            # A careless write (trusting the writer's hints) is sent once: if its outcome is unknown, the
            # writer sends it again as a careful one, which stores what the first did not (and nothing twice).
            # Points travel with their steps and timestamps deflated and their values raw: the body is then
            # little larger than gzipped, for a fraction of the CPU on both sides (values barely compress).
            with deflated_series():
                body = {"writes": wire.to_wire(list(writes), list[RunWrite]), "retry": retry}
            self._call("POST", "/write", body, attempts=_ATTEMPTS if retry else 1, gzip_body=not _has_points(writes))

    def heartbeat(self, run_id: str, now: float) -> None:
        self._call("POST", f"/runs/{_part(run_id)}/heartbeat", now, body_type=float)

    def mark_crashed(self, run_id: str, observed_heartbeat: float | None, end_time: float | None = None) -> bool:
        body = {"observed_heartbeat": observed_heartbeat, "end_time": end_time}
        return bool(self._call("POST", f"/runs/{_part(run_id)}/crashed", body, tp=bool))

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call("DELETE", f"/runs/{_part(run_id)}/tags/{_part(key)}")

    def put_environment(self, fingerprint: str, snapshot: Mapping[str, Any]) -> None:
        self._call("PUT", f"/environments/{_part(fingerprint)}", dict(snapshot), body_type=dict[str, Any])

    def delete_runs(self, run_ids: Sequence[str]) -> list[str]:
        return cast("list[str]", self._call("POST", "/runs/delete", list(run_ids), tp=list[str]))

    def restore_runs(self, run_ids: Sequence[str]) -> list[str]:
        return cast("list[str]", self._call("POST", "/runs/restore", list(run_ids), tp=list[str]))

    def collect_garbage(self, deleted_before: float, *, stale_before: float, dry_run: bool = False,
                        compact: bool = False) -> Collected:
        body = {"deleted_before": deleted_before, "stale_before": stale_before, "dry_run": dry_run, "compact": compact}
        return cast(Collected, self._call("POST", "/gc", body, tp=Collected))

    # -- identity and claims --------------------------------------------------------------------

    def find_finished_run(self, run_key: str) -> str | None:
        return cast("str | None", self._call("GET", f"/keys/{_part(run_key)}/finished", tp=str | None))

    def finished_keys(self, run_keys: Sequence[str]) -> set[str]:
        return set(self._call("POST", "/keys/finished", list(run_keys), tp=list[str]))

    def claim(self, run_key: str, owner: str, lease: float, now: float) -> ClaimState:
        body = {"run_key": run_key, "owner": owner, "lease": lease, "now": now}
        return cast(ClaimState, self._call("POST", "/claims", body, tp=ClaimState))

    def renew_claims(self, owner: str, lease: float, now: float) -> None:
        self._call("POST", "/claims/renew", {"owner": owner, "lease": lease, "now": now})

    def release_claim(self, run_key: str, owner: str, *, done: bool, run_id: str | None = None) -> None:
        self._call("POST", "/claims/release", {"run_key": run_key, "owner": owner, "done": done, "run_id": run_id})

    # -- tokens (an admin's) ----------------------------------------------------------------------

    def create_token(self, name: str, role: Role, *, experiments: Sequence[str] | None = None,
                     expires_time: float | None = None) -> tuple[str, TokenInfo]:
        body = {"name": name, "role": role.value, "experiments": list(experiments) if experiments is not None else None,
                "expires_time": expires_time}
        made = self._call("POST", "/tokens", body, tp=dict[str, Any])
        return str(made["token"]), wire.from_wire(TokenInfo, made["info"])

    def list_tokens(self) -> list[TokenInfo]:
        return cast("list[TokenInfo]", self._call("GET", "/tokens", tp=list[TokenInfo]))

    def revoke_token(self, id_or_name: str) -> list[TokenInfo]:
        return cast("list[TokenInfo]", self._call("POST", "/tokens/revoke", {"token": id_or_name}, tp=list[TokenInfo]))

    def close(self) -> None:
        self._http.close()
        self.blobs._direct.close()


class RemoteBlobs(BlobStore):
    """Artifact content through the server's ``/api/v1/blobs``: the server says where content goes — nowhere
    when it has it, a presigned URL of its bucket (bytes go straight there; S3 checks them against their
    sha256), or its own route (it hashes what it receives). Content read is checked against its sha256."""

    def __init__(self, store: RemoteStore) -> None:
        import httpx

        self.store = store
        self.url = store.url + "/api/v1/blobs"
        self._direct = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))  # to the bucket: no token sent

    def put_file(self, path: str | os.PathLike[str], *, move: bool = False) -> tuple[str, int]:
        sha, size = content_digest(path)
        with open(path, "rb") as source:
            self._upload(sha, source, size)
        if move:
            discard(path)
        return sha, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        import io

        sha = hashlib.sha256(data).hexdigest()
        self._upload(sha, io.BytesIO(data), len(data))
        return sha, len(data)

    def _upload(self, sha: str, source: BinaryIO, size: int) -> None:
        target = self.store._call("POST", f"/blobs/{sha}/upload", tp=dict[str, Any])
        if target["exists"]:
            return
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if target["url"] is None:
            def pieces() -> Iterator[bytes]:
                source.seek(0)
                return _chunks(source)

            self.store._send("PUT", f"/blobs/{sha}", body=pieces, headers=headers)
            return
        try:
            answer = self._direct.put(target["url"], content=_chunks(source), headers={**headers, **target["headers"]})
        except Exception as exc:  # httpx.TransportError and the like: the bucket is unreachable from here
            raise StoreError(f"cannot send artifact content to the bucket of {self.store.display_url}: {exc}") from exc
        if answer.status_code == 412:
            return  # stored meanwhile by someone else: the same bytes
        if answer.status_code >= 300:
            raise StoreError(f"the bucket of {self.store.display_url} refused artifact content "
                             f"({answer.status_code}: {answer.text[:200]})")

    def open(self, sha256: str) -> BinaryIO:
        import tempfile

        from labtrack.core.errors import DataDamaged

        response = self.store._send("GET", f"/blobs/{check_sha256(sha256)}", stream=True)
        if response.status_code in (302, 303, 307):  # a presigned URL of the bucket
            location = response.headers["location"]
            response.close()
            response = self._direct.send(self._direct.build_request("GET", location), stream=True)
            if response.status_code >= 300:
                response.close()
                raise StoreError(f"the bucket of {self.store.display_url} answered {response.status_code} for "
                                 f"artifact content {sha256}")
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK)
        digest = hashlib.sha256()
        try:
            for block in response.iter_bytes(_CHUNK):
                digest.update(block)
                spooled.write(block)
        finally:
            response.close()
        if digest.hexdigest() != sha256:
            spooled.close()
            raise DataDamaged(f"artifact content {sha256} from {self.store.display_url} does not match its sha256 "
                              f"(got {digest.hexdigest()}): it was damaged or replaced in storage")
        spooled.seek(0)
        return cast(BinaryIO, spooled)

    def exists(self, sha256: str) -> bool:
        return bool(self.store._call("GET", f"/blobs/{check_sha256(sha256)}/exists", tp=bool))

    def list_blobs(self) -> Iterator[BlobInfo]:
        raise StoreError(f"the content of {self.store.display_url} is collected by its server (`labtrack gc`)")

    def delete_blob(self, sha256: str, *, unchanged_since: float) -> bool:
        raise StoreError(f"the content of {self.store.display_url} is collected by its server (`labtrack gc`)")


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while block := source.read(_CHUNK):
        yield block


def _has_points(writes: Sequence[RunWrite]) -> bool:
    return any(len(chunk) for write in writes for chunk in write.metrics.values())


def _part(value: str) -> str:
    """A path segment: every character that means something in a URL escaped (a metric key may hold /)."""
    return quote(value, safe="")


def _is_error_body(response: Any) -> bool:
    return bool(response.headers.get("content-type", "").startswith("application/json"))

