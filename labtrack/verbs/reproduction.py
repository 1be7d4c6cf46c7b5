"""Reproducibility verbs: doctor (is this environment healthy?), check (can this machine reproduce a
run?), export (a recipe that rebuilds it) and reproduce (rebuild it and run it again, then compare).

``reproduce`` works in a directory of its own: a virtualenv with the recorded packages pinned (uv when it
is installed, else venv + pip), the code at the recorded commit in a git worktree (or a clone of the
recorded remote) with the recorded uncommitted diff applied and recorded untracked files copied when
they are still here unchanged, then the recorded command, with ``LABTRACK_REPRODUCES`` set so the new
run is tagged ``reproduces=<run id>``. Its metrics are compared with the original's within ``rtol``,
its artifacts by content hash.
"""

from __future__ import annotations

import fnmatch
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labtrack.core.checks import (
    ArtifactCheck,
    DoctorReport,
    Finding,
    MetricCheck,
    Reproduction,
    Verdict,
    check_reproducibility,
    doctor_findings,
)
from labtrack.core.errors import InvalidInput, LabtrackError
from labtrack.core.recipes import Recipe, render
from labtrack.env.untracked import MAX_INPUT_BYTES, skip_reasons
from labtrack.run.handle import GIT_DIFF_ARTIFACT, NOISY_TAG, Run
from labtrack.verbs import capture
from labtrack.verbs.runs import RunClient

__all__ = ["DoctorReport", "Reproduction", "check", "doctor", "export", "recipe_for", "reproduce"]

_INTERNAL_ARTIFACTS = ("labtrack/",)  # the recorded diff, pickled results: not outputs to compare


def doctor(client: RunClient | Callable[[], RunClient]) -> DoctorReport:
    """This environment's health: dependency conflicts, CUDA consistency, settings and the store (the
    client, or a callable that opens it: opening it is one of the checks)."""
    from labtrack.env import CaptureOptions
    from labtrack.env import capture as capture_now
    from labtrack.env.conflicts import find_conflicts_cached
    from labtrack.settings import load_settings

    findings: list[Finding] = []
    try:
        options = capture.capture_options(load_settings())
    except LabtrackError as exc:
        findings.append(Finding("error", "settings", str(exc)))
        options = CaptureOptions()
    environment = capture_now(options).environment
    findings += doctor_findings(environment.snapshot, find_conflicts_cached())
    try:
        opened = client if isinstance(client, RunClient) else client()
        opened.store.ping()
        opened.store.blobs.check()
    except LabtrackError as exc:
        findings.append(Finding("error", "store", str(exc)))
    return DoctorReport(findings, environment.fingerprint)



def check(client: RunClient, run: Run | str) -> Verdict:
    """Can this machine reproduce ``run``? ``identical``, ``compatible``, ``at-risk`` or ``incompatible``,
    with the reasons, worst first."""
    target = client.run_of(run)
    recorded = target.environment
    if recorded is None:
        raise InvalidInput(f"run {target.id} recorded no environment (capture was off): nothing to check against",
                           field="run")
    current = client.capture_environment()
    verdict = check_reproducibility(recorded.snapshot, current.snapshot)
    return verdict


def _diff_text(run: Run) -> str | None:
    if not any(a.path == GIT_DIFF_ARTIFACT for a in run.artifacts):
        return None
    with run.open_artifact(GIT_DIFF_ARTIFACT) as f:
        return f.read().decode("utf-8", errors="replace")


def recipe_for(client: RunClient, run: Run | str) -> Recipe:
    target = client.run_of(run)
    env = target.environment
    if env is None:
        raise InvalidInput(f"run {target.id} recorded no environment (capture was off): no recipe can be made",
                           field="run")
    return Recipe.from_run(target.id, target.experiment, env.snapshot, _diff_text(target))


def export(client: RunClient, run: Run | str, fmt: str = "requirements") -> str:
    """A recipe that rebuilds ``run``: ``requirements``, ``dockerfile``, ``conda`` or ``script``."""
    return render(recipe_for(client, run), fmt)


# -- reproduce -------------------------------------------------------------------------------------


class _Failed(Exception):
    pass


def _run(cmd: list[str], log: Callable[[str], None], **kwargs: Any) -> None:
    log("$ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise _Failed(f"`{' '.join(cmd[:4])} ...` failed (exit {done.returncode}):\n" + "\n".join(tail))


def _python_for(version: str | None) -> str:
    """An interpreter of the recorded major.minor version if one is on PATH, else this one."""
    if version:
        short = ".".join(version.split(".")[:2])
        if ".".join(map(str, sys.version_info[:2])) == short:
            return sys.executable
        found = shutil.which(f"python{short}")
        if found:
            return found
    return sys.executable


def _uv() -> str | None:
    """uv, when installed: on PATH or beside this interpreter (``pip install uv`` puts it there)."""
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else None


def _make_venv(recipe: Recipe, workdir: Path, log: Callable[[str], None], *, everything: bool = False) -> Path:
    """The virtualenv: the distributions the run imported, and what they depend on, each at its recorded
    version (the full pins as constraints) — or, when the run did not record its imports (or ``everything``),
    every recorded distribution."""
    venv = workdir / "venv"
    python = venv / "bin" / "python"
    if python.exists() and not everything:
        log(f"reusing the virtualenv {venv}")
        return python
    if not python.exists():
        uv = _uv()
        if uv:
            _run([uv, "venv", "--quiet", "--python", _python_for(recipe.python), str(venv)], log)
        else:
            _run([_python_for(recipe.python), "-m", "venv", str(venv)], log)
    requirements = workdir / "requirements.txt"
    indexes, lines, _ = recipe.requirement_lines(local=False)
    install = _installer(python)
    wanted = set(recipe.imported or ())
    needed = [line for line in lines if _requirement_name(line) in wanted]
    if recipe.imported is not None and not everything:
        constraints = workdir / "constraints.txt"
        constraints.write_text("\n".join(lines) + "\n", encoding="utf-8")
        requirements.write_text("\n".join([*indexes, *needed]) + "\n", encoding="utf-8")
        log(f"installing the {len(needed)} distributions the run imported (of {len(lines)} recorded) and what "
            "they depend on, each at its recorded version")
        _run([*install, "-r", str(requirements), "-c", str(constraints)], log)
    else:
        requirements.write_text("\n".join([*indexes, *lines]) + "\n", encoding="utf-8")
        _run([*install, "-r", str(requirements)], log)
    return python


def _installer(python: Path) -> list[str]:
    """The command that installs into the virtualenv of ``python``: uv's when installed, else pip's."""
    uv = _uv()
    return [uv, "pip", "install", "--quiet", "--python", str(python)] if uv else [
        str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


def _requirement_name(line: str) -> str:
    """The normalized distribution name a requirement line installs (``torch==2.1.0`` → ``torch``)."""
    from packaging.requirements import Requirement

    from labtrack.env.packages import normalize_name

    return normalize_name(Requirement(line).name)


def _install_local(recipe: Recipe, python: Path, src: Path, log: Callable[[str], None]) -> None:
    """The run's local installs: from the rebuilt checkout when they live in the repository (the code that
    ran), else from their recorded path, after the pins — with their dependencies at their recorded versions
    when only what the run imported was installed, else without (every recorded distribution is there)."""
    install = _installer(python)
    paths = []
    for item in recipe.local_installs():
        path = src / item.in_repo if item.in_repo is not None else Path(item.path)
        if path.exists():
            paths.append(str(path))
        else:
            log(f"warning: {item.name} was installed from {item.path}, which is not here: skipped")
    if paths:
        constraints = src.parent / "constraints.txt"
        if recipe.imported is not None and constraints.exists():  # their dependencies too, at recorded versions
            _run([*install, *paths, "-c", str(constraints)], log)
        else:
            _run([*install, "--no-deps", *paths], log)


def _checkout(recipe: Recipe, snapshot: dict[str, Any], workdir: Path, log: Callable[[str], None]) -> Path:
    src = workdir / "src"
    if src.exists():
        shutil.rmtree(src)
    root = Path(recipe.repo_root) if recipe.repo_root else None
    if not recipe.commit:
        raise _Failed("the run was not in a git repository: its code cannot be checked out")
    if root is not None and (root / ".git").exists():
        _run(["git", "-C", str(root), "worktree", "add", "--force", "--detach", str(src), recipe.commit], log)
    elif recipe.remote:
        _run(["git", "clone", "--quiet", recipe.remote, str(src)], log)
        _run(["git", "-C", str(src), "checkout", "--quiet", "--detach", recipe.commit], log)
    else:
        raise _Failed(f"the repository {recipe.repo_root} is not here and no remote was recorded")
    if recipe.diff:
        patch = workdir / "labtrack.diff"
        patch.write_text(recipe.diff, encoding="utf-8")
        _run(["git", "-C", str(src), "apply", "--whitespace=nowarn", str(patch)], log)
    git: dict[str, Any] = snapshot["git"] if isinstance(snapshot.get("git"), dict) else {}
    _copy_untracked(git, root, src, log)
    return src


_SKIPPED = {"store": "of a tracking store", "virtualenv": "in virtualenvs", "cache": "in caches",
            "too large": f"over {MAX_INPUT_BYTES >> 20} MB"}


def _copy_untracked(git: dict[str, Any], root: Path | None, src: Path, log: Callable[[str], None]) -> None:
    """Copy the run's untracked inputs into the rebuilt tree, never a store, a virtualenv, a cache or a file
    over the size limit (runs recorded before labtrack skipped those list them: they are skipped here), and
    say what was left out."""
    from labtrack.env.files import sha256_file

    items = [item for item in git.get("untracked") or [] if isinstance(item, dict) and item.get("path")]
    reasons = skip_reasons(item["path"] for item in items)
    skipped = {k: v for k, v in (git.get("untracked_skipped") or {}).items() if isinstance(v, int)}
    for item in items:
        reason = reasons.get(item["path"])
        if reason is None and (item.get("size") or 0) > MAX_INPUT_BYTES:
            reason = "too large"
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        origin = root / item["path"] if root is not None else None
        if origin is None or not origin.is_file():
            log(f"warning: untracked file {item['path']} is not here; the run may need it")
            continue
        if item.get("sha256") and sha256_file(str(origin)) != item["sha256"]:
            log(f"warning: untracked file {item['path']} changed since the run; copied as it is now")
        (src / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, src / item["path"])
    if skipped:
        what = ", ".join(f"{n} {_SKIPPED.get(reason, reason)}" for reason, n in sorted(skipped.items()))
        largest = [f"{item['path']} ({item['size'] / 2**20:,.0f} MB)"
                   for item in (git.get("untracked_skipped") or {}).get("largest") or [] if isinstance(item, dict)]
        log(f"untracked files not copied (not inputs): {what}" + (f"; largest: {', '.join(largest[:3])}" if largest else ""))


def _compare(original: Run, new: Run, rtol: float, atol: float,
             noisy: Sequence[str]) -> tuple[list[MetricCheck], list[ArtifactCheck]]:
    metrics = []
    new_metrics = new.metrics
    for key, value in sorted(original.metrics.items()):
        other = new_metrics.get(key)
        same = other is not None and (
            (math.isnan(value) and math.isnan(other)) or math.isclose(value, other, rel_tol=rtol, abs_tol=atol)
        )
        metrics.append(MetricCheck(key, value, other, same, any(fnmatch.fnmatchcase(key, p) for p in noisy)))
    new_artifacts = {a.path: a.sha256 for a in new.artifacts}
    artifacts = []
    for item in original.artifacts:
        if item.path.startswith(_INTERNAL_ARTIFACTS):
            continue
        new_sha = new_artifacts.get(item.path)
        artifacts.append(ArtifactCheck(item.path, item.sha256, new_sha, new_sha == item.sha256))
    return metrics, artifacts


def reproduce(
    client: RunClient,
    run: Run | str,
    *,
    workdir: str | os.PathLike[str] | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    ignore: Sequence[str] = (),
    keep: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Reproduction:
    """Rebuild ``run`` (packages, code, diff) in ``workdir``, run its command again, and compare.

    Metrics matching ``ignore`` (globs) or the run's noisy ones (``Run.mark_noisy``) are reported but do not
    decide the verdict. The virtualenv and checkout are removed afterwards (the git worktree unregistered
    from your repository) unless ``keep``; ``output.log`` stays in ``workdir``."""
    original = client.run_of(run)
    env = original.environment
    if env is None:
        raise InvalidInput(f"run {original.id} recorded no environment (capture was off): it cannot be rebuilt",
                           field="run")
    recipe = recipe_for(client, original)
    if not recipe.command:
        raise InvalidInput(f"run {original.id} recorded no re-runnable command (it ran as `python -c` or "
                           "interactively)", field="run")
    directory = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"labtrack-reproduce-{original.id[:8]}-"))
    directory.mkdir(parents=True, exist_ok=True)
    result = Reproduction(original=original.id, new_run=None, verdict="failed", workdir=str(directory.resolve()),
                          kept=keep)
    noisy = [*ignore, *(p.strip() for p in original.tags.get(NOISY_TAG, "").split(",") if p.strip())]
    try:
        return _reproduce(client, original, recipe, env.snapshot, directory, result, rtol, atol, noisy, log)
    finally:
        if not keep:
            _clean(recipe, directory, log)


def _clean(recipe: Recipe, directory: Path, log: Callable[[str], None]) -> None:
    """Remove the virtualenv and the checkout (unregistering the worktree from the user's repository)."""
    src = directory / "src"
    root = Path(recipe.repo_root) if recipe.repo_root else None
    if src.exists() and root is not None and (root / ".git").exists():
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(src)], capture_output=True,
                       check=False)
    for path in (src, directory / "venv", directory / "labtrack.diff", directory / "requirements.txt",
                 directory / "constraints.txt"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    if root is not None and (root / ".git").exists():
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True, check=False)
    log(f"removed the virtualenv and checkout from {directory} (--keep keeps them)")


def _reproduce(client: RunClient, original: Run, recipe: Recipe, snapshot: dict[str, Any], directory: Path,
               result: Reproduction, rtol: float, atol: float, noisy: Sequence[str],
               log: Callable[[str], None]) -> Reproduction:
    started = time.time()
    try:
        log(f"1/4 virtualenv with {len(recipe.distributions)} pinned distributions in {directory / 'venv'}")
        python = _make_venv(recipe, directory, log)
        log(f"2/4 code at {recipe.commit[:12] if recipe.commit else '?'}" + (" + recorded diff" if recipe.diff else ""))
        src = _checkout(recipe, snapshot, directory, log)
        _install_local(recipe, python, src, log)
        location = client.store.url
        child_env = {**os.environ, **recipe.env, "LABTRACK_STORE": location, "LABTRACK_REPRODUCES": original.id}
        cwd = src / recipe.relative_cwd
        log(f"3/4 running {recipe.command_text()} in {cwd}")

        def rerun() -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(python), *recipe.command[1:]], cwd=cwd, env=child_env, capture_output=True,
                                  text=True)

        done = rerun()
        if done.returncode != 0 and recipe.imported is not None and "ModuleNotFoundError" in done.stderr:
            # It needed a distribution its main process never imported (a plugin, a worker's import):
            # install every recorded one and run it again.
            log("the run needs more than it imported in its main process: installing every recorded distribution")
            _make_venv(recipe, directory, log, everything=True)
            _install_local(recipe, python, src, log)
            done = rerun()
        (directory / "output.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise _Failed(f"the command exited with {done.returncode}:\n{tail}")
    except _Failed as exc:
        result.problems.append(str(exc))
        return result
    log("4/4 comparing with the original")
    found = [r for r in client.search_runs(filter=f"tags.reproduces = '{original.id}'")
             if r.start_time >= started - 1]
    if not found:
        result.problems.append("the command finished but started no run tagged reproduces=" + original.id)
        return result
    new = found[0]
    result.new_run = new.id
    result.metrics, result.artifacts = _compare(original, new, rtol, atol, noisy)
    ok = all(m.within_tolerance or m.ignored for m in result.metrics) and all(a.identical for a in result.artifacts)
    result.verdict = "reproduced" if ok else "differs"
    new.set_tag("labtrack.reproduction", result.verdict)
    return result
