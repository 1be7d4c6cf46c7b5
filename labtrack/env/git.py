"""Git state of the working directory: commit, branch, remote, dirtiness, the uncommitted diff, untracked
files and submodules.

The ``git`` executable is the source of truth (its status logic — ignore rules, attributes, sparse
checkouts — is not something to re-implement). One capture starts at most four short git processes at
once and waits for them together: ``status --porcelain=v2`` (branch, changes, untracked, ignored
directories), ``diff HEAD`` (streamed: hashed in full, kept up to the cap), ``config`` for the remotes and
``ls-files`` for force-added tracked files under ignore rules, plus ``submodule status`` when ``.gitmodules`` exists.

Every git call runs with ``GIT_OPTIONAL_LOCKS=0`` so that capturing never takes ``index.lock`` or
rewrites the index under a user's concurrent git command, with ``LC_ALL=C`` for stable messages, and with
flags that neutralise user configuration that changes the diff's shape (colour, external diff tools,
prefixes, relative mode).

``diff_sha256`` hashes the whole raw diff — before redaction and truncation — so it identifies the code
exactly even when the stored text is cut. A repeat capture in the same process re-runs git only when
something it could have seen changed; see :mod:`labtrack.env.gitcache` for how that is decided.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from typing import Any

from labtrack.core.redact import redact_text, strip_url_credentials
from labtrack.env import gitcache
from labtrack.env.files import sha256_file
from labtrack.env.untracked import MAX_INPUT_BYTES, skip_reasons

__all__ = ["UNTRACKED_MAX_FILES", "find_root", "gather", "truncate_diff"]

UNTRACKED_MAX_FILES = 1000  # listed untracked files; the count is always exact
_UNTRACKED_HASH_BUDGET = 64 * 1024 * 1024  # total bytes hashed per capture (a data dir must not stall runs)
_EMPTY_TREES = ("4b825dc642cb6eb9a060e54bf8d69288fbee4904",
                "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321")
_DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--no-textconv", "--no-relative", "--submodule=short",
               "--src-prefix=a/", "--dst-prefix=b/")
_BINARY_LINE = re.compile(rb"^Binary files (?:a/(.*?)|/dev/null) and (?:b/(.*?)|/dev/null) differ$")
_CHUNK = 65536


class _GitFailed(Exception):
    pass


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    return env


def find_root(cwd: str) -> str | None:
    """The nearest ancestor of ``cwd`` holding a ``.git`` entry (git's own discovery, minus its corner cases)."""
    path = os.path.abspath(cwd)
    while True:
        if os.path.exists(os.path.join(path, ".git")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def truncate_diff(raw: bytes, total: int, cap: int) -> str:
    """The diff text to store: cut at a line boundary within ``cap`` bytes, with a note when cut.

    Cutting at a line boundary matters for secrets too: a token cut in half would no longer match the
    redaction patterns, so the partial last line is dropped rather than kept.
    """
    if total <= cap:
        return raw.decode("utf-8", "replace")
    kept = raw[:cap]
    cut = kept.rfind(b"\n")
    kept = kept[: cut + 1] if cut >= 0 else b""
    note = (f"\n[labtrack: diff truncated: {len(kept)} of {total} bytes kept "
            f"(git_diff_max_bytes={cap}); diff_sha256 covers the whole diff]\n")
    return kept.decode("utf-8", "replace") + note


def _stream_diff(proc: subprocess.Popen[bytes], cap: int) -> tuple[bytes, int, str, list[str]]:
    """Read a ``git diff`` to the end: (first cap+1 bytes, total size, sha256, binary files)."""
    assert proc.stdout is not None
    digest = hashlib.sha256()
    kept = bytearray()
    total = 0
    binary: list[str] = []
    carry = b""
    while True:
        chunk = proc.stdout.read(_CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
        if len(kept) <= cap:
            kept += chunk[: cap + 1 - len(kept)]
        if b"Binary files " in carry + chunk:
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for line in lines:
                m = _BINARY_LINE.match(line)
                if m:
                    binary.append((m.group(2) or m.group(1) or b"").decode("utf-8", "replace"))
        else:
            carry = (carry + chunk).rsplit(b"\n", 1)[-1]
    m = _BINARY_LINE.match(carry)
    if m:
        binary.append((m.group(2) or m.group(1) or b"").decode("utf-8", "replace"))
    return bytes(kept), total, digest.hexdigest(), binary


def _parse_status(out: bytes) -> dict[str, Any]:
    fields = out.split(b"\0")
    info: dict[str, Any] = {"oid": None, "head": None, "changed": 0, "untracked": [], "ignored_dirs": []}
    i = 0
    while i < len(fields):
        entry = fields[i].decode("utf-8", "surrogateescape")
        i += 1
        if not entry:
            continue
        kind = entry[0]
        if entry.startswith("# branch.oid "):
            oid = entry[len("# branch.oid "):]
            info["oid"] = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            head = entry[len("# branch.head "):]
            info["head"] = None if head == "(detached)" else head
        elif kind in "12u":
            info["changed"] += 1
            if kind == "2":
                i += 1  # a rename's original path is the next NUL-separated field
        elif kind == "?":
            info["untracked"].append(entry[2:])
        elif kind == "!" and entry.endswith("/"):
            info["ignored_dirs"].append(entry[2:].rstrip("/"))
    return info


def _untracked(root: str, paths: list[str]) -> tuple[list[dict[str, Any]], bool, dict[str, Any]]:
    """The untracked files that are inputs of the run (see ``env.untracked``), whether the list was cut,
    and what was skipped: counts by reason, and the largest files left out for their size."""
    reasons = skip_reasons(paths)
    skipped: dict[str, Any] = {}
    for reason in reasons.values():
        skipped[reason] = skipped.get(reason, 0) + 1
    large: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    budget = _UNTRACKED_HASH_BUDGET
    inputs = sorted(p for p in paths if p not in reasons)
    for rel in inputs:
        if len(listed) > UNTRACKED_MAX_FILES:  # enough to say the list was cut: no more stat calls
            break
        full = os.path.join(root, rel)
        item: dict[str, Any] = {"path": rel}
        try:
            st = os.lstat(full)
        except OSError:
            item.update(size=None, sha256=None)
            listed.append(item)
            continue
        if rel.endswith("/"):  # a nested repository: git lists the directory, not its files
            item.update(size=None, sha256=None, directory=True)
        elif os.path.islink(full):
            item.update(size=st.st_size, sha256=None, symlink=True)
        elif st.st_size > MAX_INPUT_BYTES:  # a checkpoint, a dataset: not an input to record or copy
            large.append({"path": rel, "size": st.st_size})
            continue
        elif st.st_size > budget:
            item.update(size=st.st_size, sha256=None, hash_skipped="hash budget")
        else:
            budget -= st.st_size
            item.update(size=st.st_size, sha256=sha256_file(full, st))
        listed.append(item)
    if large:
        skipped["too large"] = len(large)
        skipped["largest"] = sorted(large, key=lambda item: -item["size"])[:10]
    return listed[:UNTRACKED_MAX_FILES], len(listed) > UNTRACKED_MAX_FILES, skipped


def _remote(out: bytes) -> tuple[str | None, str | None]:
    remotes: dict[str, str] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        key, _, url = line.partition(" ")
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.setdefault(key[len("remote."):-len(".url")], url.strip())
    if not remotes:
        return None, None
    name = "origin" if "origin" in remotes else sorted(remotes)[0]
    return name, redact_text(strip_url_credentials(remotes[name]))


def _submodules(out: bytes) -> list[dict[str, Any]]:
    states = {" ": "ok", "+": "modified", "-": "uninitialized", "U": "conflict"}
    subs = []
    for line in out.decode("utf-8", "replace").splitlines():
        if len(line) < 42:
            continue
        parts = line[1:].split(" ")
        subs.append({"path": parts[1] if len(parts) > 1 else "", "commit": parts[0],
                     "state": states.get(line[0], line[0])})
    return subs


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _capture(git: str, cwd: str, root: str, cap: int, timeout: float) -> tuple[dict[str, Any], str | None]:
    env = _git_env()
    gitcache.mark_start(root)

    def start(*args: str, where: str = cwd) -> subprocess.Popen[bytes]:
        return subprocess.Popen([git, *args], cwd=where, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    procs = [
        start("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--ignored=matching"),
        start("diff", "HEAD", *_DIFF_FLAGS),
        start("config", "--get-regexp", r"^remote\..*\.url$"),
        # tracked files that match ignore rules (`git add -f`): the cache must stat them explicitly
        start("ls-files", "-z", "--cached", "--ignored", "--exclude-standard"),
    ]
    if os.path.exists(os.path.join(root, ".gitmodules")):
        procs.append(start("submodule", "status", where=root))
    try:
        kept, total, diff_sha, binary = _stream_diff(procs[1], cap)
        rc, out, err = _finish(procs[0], timeout)
        if rc != 0:
            message = err.decode("utf-8", "replace").strip()
            if "not a git repository" in message:
                return {"repo": False}, None
            raise _GitFailed(f"git status failed: {message}")
        status = _parse_status(out)
        diff_rc = procs[1].wait(timeout)
        if diff_rc != 0 and status["oid"] is None:  # unborn branch: compare with the empty tree
            for tree in _EMPTY_TREES:
                p = start("diff", tree, *_DIFF_FLAGS)
                kept, total, diff_sha, binary = _stream_diff(p, cap)
                if p.wait(timeout) == 0:
                    break
        elif diff_rc != 0:
            raise _GitFailed(f"git diff failed: {procs[1].stderr.read().decode('utf-8', 'replace').strip()}"
                             if procs[1].stderr else "git diff failed")
        _, config_out, _ = _finish(procs[2], timeout)
        _, tracked_out, _ = _finish(procs[3], timeout)
        submodules = []
        if len(procs) > 4:
            _, sub_out, _ = _finish(procs[4], timeout)
            submodules = _submodules(sub_out)
    except subprocess.TimeoutExpired as e:
        raise _GitFailed(f"git timed out after {timeout:g} s") from e
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()

    untracked, untracked_truncated, untracked_skipped = _untracked(root, status["untracked"])
    remote_name, remote_url = _remote(config_out)
    dirty = status["changed"] > 0
    section: dict[str, Any] = {
        "repo": True,
        "root": root,
        "commit": status["oid"],
        "branch": status["head"],
        "detached": status["head"] is None and status["oid"] is not None,
        "remote_name": remote_name,
        "remote_url": remote_url,
        "dirty": dirty,
        "changed_files": status["changed"],
        "diff_sha256": diff_sha if total else None,
        "diff_bytes": total,
        "diff_truncated": total > cap,
        "binary_files": binary,
        "untracked": untracked,
        "untracked_count": len(status["untracked"]),
        "untracked_truncated": untracked_truncated,
        "untracked_skipped": untracked_skipped,  # not inputs: {"store": n, "virtualenv": n, "cache": n, ...}
        "submodules": submodules,
    }
    diff_text = redact_text(truncate_diff(kept, total, cap)) if total else None
    tracked = [p.decode("utf-8", "surrogateescape") for p in tracked_out.split(b"\0") if p]
    gitcache.store(root, section, diff_text, cap, tracked, status["untracked"], status["ignored_dirs"])
    return section, diff_text


_git_path: list[str | None] = []


def gather(options: Any = None) -> tuple[dict[str, Any], str | None]:
    """The ``git`` section and the redacted, capped diff text (None when there is no change)."""
    cwd = getattr(options, "cwd", None) or os.getcwd()
    cap = int(getattr(options, "git_diff_max_bytes", 1_000_000))
    timeout = float(getattr(options, "timeout", 5.0))
    if not _git_path:
        _git_path.append(shutil.which("git"))
    git = _git_path[0]
    if git is None:
        return {"error": "the git executable was not found on PATH"}, None
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
        root = None  # git decides; we cannot find the work tree by walking up
    else:
        root = find_root(cwd)
        if root is None:
            return {"repo": False}, None
        hit = gitcache.lookup(root, cap)
        if hit is not None:
            return hit
    try:
        if root is None:
            out = subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=cwd, env=_git_env(),
                                 capture_output=True, timeout=timeout)
            if out.returncode != 0:
                return {"repo": False}, None
            root = out.stdout.decode("utf-8", "surrogateescape").strip()
        return _capture(git, cwd, root, cap, timeout)
    except _GitFailed as e:
        return {"error": str(e)}, None
