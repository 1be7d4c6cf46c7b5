"""The run page: what ran, how, on what, with what result — and its artifacts and recipes.

Artifacts are anyone's bytes. A preview shows text (text, JSON, YAML, CSV, logs, diffs) escaped inside the
page, and raster images through an ``<img>``; everything else, SVG and HTML included, is only downloaded:
sent as an attachment with ``nosniff`` and a sandboxing CSP, so it never runs in the UI's origin.
"""

from __future__ import annotations

import json
import mimetypes
import posixpath
import tempfile
import zipfile
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from labtrack.core.environment import section_of
from labtrack.core.errors import ArtifactNotFound, InvalidInput, LabtrackError
from labtrack.run.handle import GIT_DIFF_ARTIFACT
from labtrack.store.base import Store
from labtrack.ui import render
from labtrack.ui.pages import client_of
from labtrack.ui.state import ChartSettings

__all__ = ["DIFF_BYTES", "IMAGE_TYPES", "PREVIEW_BYTES", "RECIPES", "TEXT_TYPES", "artifact", "artifact_preview", "artifacts_zip", "recipe", "run_page"]

PREVIEW_BYTES = 256 * 1024
DIFF_BYTES = 1_000_000
TEXT_TYPES = (".txt", ".log", ".json", ".yaml", ".yml", ".csv", ".tsv", ".md", ".diff", ".patch", ".py", ".toml",
              ".ini", ".cfg", ".out", ".err")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}
RECIPES = {"requirements": ("requirements.txt", "text/plain"), "dockerfile": ("Dockerfile", "text/plain"),
           "conda": ("environment.yml", "text/yaml"), "script": ("reproduce.sh", "text/x-shellscript")}
_DOWNLOAD = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
             "Cache-Control": "no-store"}


def _kind(path: str) -> str:
    ext = posixpath.splitext(path.lower())[1]
    if ext in IMAGE_TYPES:
        return "image"
    if ext in TEXT_TYPES:
        return "text"
    return "binary"


def _diff_lines(text: str) -> list[tuple[str, str]]:
    """A unified diff's lines with their kind (file, hunk, add, del, context) for the viewer's colours."""
    out = []
    for line in text.splitlines():
        if line.startswith(("diff --git", "+++", "---", "index ")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


def run_page(request: Request, store: Store) -> Response:
    client = client_of(store)
    run = client.get_run(request.path_params["run_id"])
    record = run.record
    env = run.environment
    snapshot = env.snapshot if env is not None else {}
    artifacts = run.artifacts
    git = section_of(snapshot, "git")
    diff = None
    if any(a.path == GIT_DIFF_ARTIFACT for a in artifacts):
        with run.open_artifact(GIT_DIFF_ARTIFACT) as handle:
            raw = handle.read(DIFF_BYTES + 1)
        diff = _diff_lines(raw[:DIFF_BYTES].decode("utf-8", "replace"))
    same_key = []
    if record.run_key:
        same_key = [r for r in client.search_runs(None, key=record.run_key, max_results=20) if r.id != run.id]
    context = store.get_context(run.id) or {}
    conflicts = context.get("conflicts") or snapshot.get("conflicts") or []
    sections = {name: json.dumps(value, indent=2, sort_keys=True, default=str)
                for name, value in sorted(snapshot.items()) if name != "conflicts"}
    return render.page(request, "run.html", run=run, record=record, summary=env.summary() if env else [],
                       git=git, diff=diff, same_key=same_key, conflicts=conflicts, sections=sections,
                       artifacts=[(a, _kind(a.path)) for a in artifacts if a.path != GIT_DIFF_ARTIFACT],
                       metrics=sorted(record.metrics.items()), recipes=list(RECIPES),
                       chart_settings=ChartSettings.from_query(request.query_params))


def _artifact_of(run: Any, path: str) -> Any:
    for item in run.artifacts:
        if item.path == path:
            return item
    raise ArtifactNotFound(f"run {run.id} has no artifact {path!r}")


def artifact_preview(request: Request, store: Store) -> Response:
    """A piece of the run page: an artifact's text (escaped), or its image."""
    run = client_of(store).get_run(request.path_params["run_id"])
    path = request.query_params.get("path", "")
    item = _artifact_of(run, path)
    kind = _kind(path)
    text = None
    if kind == "text":
        with run.open_artifact(path) as handle:
            raw = handle.read(PREVIEW_BYTES + 1)
        text = raw[:PREVIEW_BYTES].decode("utf-8", "replace")
        if path.lower().endswith(".json"):
            try:
                text = json.dumps(json.loads(text), indent=2, sort_keys=False)
            except ValueError:
                pass  # not valid JSON (or cut short): shown as it is
    return render.fragment(request, "_artifact.html", run=run, item=item, kind=kind, text=text,
                           truncated=kind == "text" and item.size > PREVIEW_BYTES)


def artifact(request: Request, store: Store) -> Response:
    """An artifact's content: an attachment; a raster image inline (``inline=1``) for the preview's ``<img>``."""
    run = client_of(store).get_run(request.path_params["run_id"])
    path = request.path_params["path"]
    item = _artifact_of(run, path)
    inline = request.query_params.get("inline") == "1" and _kind(path) == "image"
    media = IMAGE_TYPES[posixpath.splitext(path.lower())[1]] if inline else (
        mimetypes.guess_type(path)[0] if _kind(path) == "text" else None) or "application/octet-stream"
    if media.startswith("text/") or media in ("application/json",):
        media = "text/plain; charset=utf-8"  # shown as text if opened, never as HTML
    name = quote(posixpath.basename(path))
    disposition = "inline" if inline else f"attachment; filename*=UTF-8''{name}"
    return StreamingResponse(_pieces(run.open_artifact(path)), media_type=media, headers={**_DOWNLOAD, "Content-Disposition": disposition,
                                                                  "Content-Length": str(item.size)})


def _pieces(handle: Any) -> Any:
    """A file's content a MiB at a time (a 5 GB checkpoint never sits in memory), closed at the end."""
    try:
        while piece := handle.read(1 << 20):
            yield piece
    finally:
        handle.close()


def artifacts_zip(request: Request, store: Store) -> Response:
    """Every artifact of a run in one zip (built in a temporary file: a big run never sits in memory)."""
    run = client_of(store).get_run(request.path_params["run_id"])
    spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in run.artifacts:
            with run.open_artifact(item.path) as source, archive.open(item.path, "w", force_zip64=True) as target:
                while piece := source.read(1 << 20):
                    target.write(piece)
    spool.seek(0)
    name = f"{run.id[:8]}-artifacts.zip"
    return StreamingResponse(_pieces(spool), media_type="application/zip",
                             headers={**_DOWNLOAD, "Content-Disposition": f'attachment; filename="{name}"'})


def recipe(request: Request, store: Store) -> Response:
    """A recipe that rebuilds the run (requirements, Dockerfile, conda, script), as a download."""
    fmt = request.path_params["fmt"]
    if fmt not in RECIPES:
        raise InvalidInput(f"recipe must be one of {', '.join(RECIPES)}, got {fmt!r}", field="fmt")
    client = client_of(store)
    run = client.get_run(request.path_params["run_id"])
    try:
        text = client.export(run, fmt)
    except LabtrackError as exc:
        text = f"# labtrack could not export this run as {fmt}: {exc}\n"
    filename, media = RECIPES[fmt]
    return Response(text.encode(), media_type=f"{media}; charset=utf-8",
                    headers={**_DOWNLOAD, "Content-Disposition": f'attachment; filename="{filename}"'})
