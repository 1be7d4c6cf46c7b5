"""Can this machine reproduce that run? And is this environment healthy? Pure verdict logic.

``check_reproducibility(recorded, current)`` compares two environment snapshots and returns a verdict:

- ``identical``: same fingerprint-relevant environment (exit code 0);
- ``compatible``: only differences unlikely to change results — other packages' patch releases, OS,
  kernel, CPU model, hostname, environment variables (exit code 0);
- ``at-risk``: differences that may change results — framework or numerical-package versions, CUDA
  or cuDNN builds, GPU model or driver, Python minor version, missing ordinary packages (exit code 1);
- ``incompatible``: the run cannot be reproduced as recorded — it used a GPU and there is none, the
  driver is too old for the recorded CUDA build, a framework's major version differs, a framework or
  numerical package is missing, Python's major version differs (exit code 2).

Packages are judged by what the run imported (recorded at its end: ``imported``): a change in a package it
never loaded, or in a build or developer tool (pip, setuptools, pytest, ruff ...), is at most
``compatible``; packages installed here but absent from the run are one line. Each reason carries its
level; they are ranked, worst first, and within a level GPU and builds, then imported numerical packages,
then other imported packages. ``doctor_findings`` reads one snapshot:
dependency conflicts, CUDA consistency (framework built for a newer CUDA than the driver supports, a GPU
whose compute capability the build has no kernels for).

The outcomes of the reproducibility verbs are records here too, in the wire format of ``core.wire``: a
``Verdict`` (check), a ``DoctorReport`` (doctor) and a ``Reproduction`` (reproduce: each metric and
artifact of the original against the new run's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from labtrack.core.diff import version_change
from labtrack.core.environment import section_of
from labtrack.core.wire import to_wire

__all__ = [
    "BUILD_TOOLS",
    "EXIT_CODES",
    "FRAMEWORKS",
    "LEVELS",
    "NUMERICAL",
    "ArtifactCheck",
    "DoctorReport",
    "Finding",
    "MetricCheck",
    "Reason",
    "Reproduction",
    "Verdict",
    "check_reproducibility",
    "doctor_findings",
    "imported_by",
    "is_build_tool",
]

BUILD_TOOLS = frozenset({
    "pip", "setuptools", "wheel", "build", "hatchling", "flit-core", "poetry-core", "setuptools-scm", "uv",
    "virtualenv", "pipx", "twine", "pytest", "coverage", "tox", "nox", "ruff", "mypy", "mypy-extensions",
    "black", "isort", "flake8", "pylint", "pre-commit", "pyright", "bandit",
})
LEVELS = ("identical", "compatible", "at-risk", "incompatible")
EXIT_CODES = {"identical": 0, "compatible": 0, "at-risk": 1, "incompatible": 2}
FRAMEWORKS = ("torch", "tensorflow", "jax", "jaxlib")
NUMERICAL = {
    "torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "numpy", "scipy", "scikit-learn", "xgboost",
    "lightgbm", "transformers", "triton", "nvidia-cudnn-cu11", "nvidia-cudnn-cu12", "nvidia-cublas-cu12",
}


@dataclass(frozen=True)
class Reason:
    level: str  # compatible | at-risk | incompatible
    message: str

    def to_dict(self) -> dict[str, str]:
        return cast("dict[str, str]", to_wire(self))


@dataclass
class Verdict:
    level: str  # identical | compatible | at-risk | incompatible
    reasons: list[Reason] = field(default_factory=list)

    wire_derived: ClassVar[tuple[str, ...]] = ("exit_code",)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    topic: str  # dependencies | cuda | settings | store
    message: str

    def to_dict(self) -> dict[str, str]:
        return cast("dict[str, str]", to_wire(self))


@dataclass
class DoctorReport:
    """What ``labtrack doctor`` found about this environment, and its fingerprint."""

    findings: list[Finding]
    environment_fingerprint: str | None

    wire_derived: ClassVar[tuple[str, ...]] = ("ok",)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))


@dataclass(frozen=True)
class MetricCheck:
    """One metric of the original run against the reproduction's (None when it logged no such metric)."""

    key: str
    original: float
    new: float | None
    within_tolerance: bool
    ignored: bool = False  # noisy (a timing, say): --ignore or the run's labtrack.noisy tag; not in the verdict


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact of the original run against the reproduction's, by content (sha256; None when missing)."""

    path: str
    original: str
    new: str | None
    identical: bool


@dataclass
class Reproduction:
    """The outcome of ``reproduce``: ``reproduced`` (every metric not ignored within tolerance, every artifact
    identical), ``differs``, or ``failed`` (it could not be rebuilt or run: see ``problems``). ``matched``,
    ``ignored`` and ``differing`` name the metrics of each kind; ``kept``: whether the work directory (its
    virtualenv and checkout) was kept."""

    original: str
    new_run: str | None
    verdict: str  # reproduced | differs | failed
    workdir: str
    metrics: list[MetricCheck] = field(default_factory=list)
    artifacts: list[ArtifactCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kept: bool = False

    wire_derived: ClassVar[tuple[str, ...]] = ("exit_code", "matched", "ignored", "differing")

    @property
    def exit_code(self) -> int:
        return {"reproduced": 0, "differs": 1}.get(self.verdict, 2)

    @property
    def matched(self) -> list[str]:
        return [m.key for m in self.metrics if m.within_tolerance and not m.ignored]

    @property
    def ignored(self) -> list[str]:
        return [m.key for m in self.metrics if m.ignored]

    @property
    def differing(self) -> list[str]:
        return [m.key for m in self.metrics if not m.within_tolerance and not m.ignored]

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))


def _major_minor(version: Any) -> tuple[int, int] | None:
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?", str(version or ""))
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def _gpu_count(snapshot: dict[str, Any]) -> int:
    count = section_of(snapshot, "gpu").get("count")
    return int(count) if isinstance(count, int) else 0


def _gpu_names(snapshot: dict[str, Any]) -> list[str]:
    return sorted({str(d.get("name")) for d in section_of(snapshot, "gpu").get("devices") or [] if isinstance(d, dict)})


def _distributions(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return section_of(snapshot, "packages").get("distributions") or {}


def _cuda_builds(snapshot: dict[str, Any]) -> dict[str, str]:
    """framework -> the CUDA version it was built for (frameworks the run imported)."""
    out = {}
    for name, facts in section_of(snapshot, "frameworks").items():
        if isinstance(facts, dict) and facts.get("cuda"):
            out[name] = str(facts["cuda"])
    return out


def _level_for_package(name: str, change: str | None) -> str:
    if name in NUMERICAL:
        return "incompatible" if change == "major" and name in FRAMEWORKS else "at-risk"
    return "at-risk" if change in ("major", "minor") else "compatible"


def is_build_tool(name: str) -> bool:
    """Packaging and developer tools: they never change a run's results."""
    return name in BUILD_TOOLS or name.startswith(("pytest-", "types-", "flake8-", "sphinx"))


def imported_by(snapshot: dict[str, Any]) -> set[str] | None:
    """The distributions the run imported (recorded at its end), or None for a run recorded without them."""
    found = snapshot.get("imported")
    return {str(name) for name in found} if isinstance(found, list) else None


def check_reproducibility(recorded: dict[str, Any], current: dict[str, Any]) -> Verdict:
    """How well the ``current`` environment matches the ``recorded`` one (see the module docstring).

    Packages are judged by what the run imported (when it recorded that): a change in a package it
    loaded — a numerical one first — outranks anything else; packages it never imported, and build or
    developer tools, are at most ``compatible``; packages installed here but not in the run are one line."""
    # (rank within its level: GPU and builds, then imported numerical packages, other imported packages,
    # packages of a run that did not record its imports, Python/CPU/OS, the packages only installed here)
    reasons: list[tuple[int, Reason]] = []
    imported = imported_by(recorded)

    def add(level: str, message: str, rank: int = -1) -> None:
        reasons.append((rank, Reason(level, message)))

    def package(name: str, level: str, message: str) -> None:
        if is_build_tool(name):
            add("compatible", f"{message} (a build or developer tool)")
        elif imported is not None and name not in imported:
            add("compatible", f"{message} (not imported by the run)")
        else:
            add(level, message, 0 if name in NUMERICAL else 1 if imported is not None else 2)

    # GPU: used by the run, present here, same model, driver new enough for the recorded CUDA builds.
    used_gpu = _gpu_count(recorded) > 0
    if used_gpu and _gpu_count(current) == 0:
        why = section_of(current, "gpu").get("reason") or "no GPU found"
        add("incompatible", f"the run used {_gpu_count(recorded)} GPU(s) ({', '.join(_gpu_names(recorded))}); "
                            f"this machine has none ({why})")
    elif used_gpu:
        if _gpu_names(recorded) != _gpu_names(current):
            add("at-risk", f"GPU {', '.join(_gpu_names(recorded))} → {', '.join(_gpu_names(current))}")
        if _gpu_count(recorded) != _gpu_count(current):
            add("at-risk", f"GPU count {_gpu_count(recorded)} → {_gpu_count(current)}")
        old_driver = section_of(recorded, "gpu").get("driver_version")
        new_driver = section_of(current, "gpu").get("driver_version")
        if old_driver != new_driver:
            add("at-risk", f"GPU driver {old_driver} → {new_driver}")
    driver_cuda = _major_minor(section_of(current, "gpu").get("cuda_driver_version"))
    for name, cuda in _cuda_builds(recorded).items():
        build = _major_minor(cuda)
        if used_gpu and driver_cuda and build and build > driver_cuda:
            add("incompatible", f"{name} was built for CUDA {cuda}, but this driver supports CUDA "
                                f"{'.'.join(map(str, driver_cuda))} at most (update the NVIDIA driver)")
    # Frameworks' runtime builds, when both runs imported them.
    rec_fw, cur_fw = section_of(recorded, "frameworks"), section_of(current, "frameworks")
    for name in sorted(set(rec_fw) & set(cur_fw)):
        a, b = rec_fw[name] or {}, cur_fw[name] or {}
        for fact in ("cuda", "cudnn", "hip"):
            if a.get(fact) and b.get(fact) and a[fact] != b[fact]:
                add("at-risk", f"{name} {fact} build {a[fact]} → {b[fact]}")
    # Packages: missing, added, changed with the size of the change.
    rec, cur = _distributions(recorded), _distributions(current)
    extra = []
    for name in sorted(set(rec) | set(cur)):
        old = (rec.get(name) or {}).get("version")
        new = (cur.get(name) or {}).get("version")
        if old == new:
            continue
        if new is None:
            package(name, "incompatible" if name in NUMERICAL else "at-risk", f"{name} {old} is not installed here")
        elif old is None:
            extra.append(name)  # installed here only: the run cannot have used it
        else:
            change = version_change(old, new)
            package(name, _level_for_package(name, change), f"{name} {old} → {new} ({change})")
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        add("compatible", f"{len(extra)} package(s) installed here were not in the run's environment: {shown}", 4)
    # Python, OS, CPU.
    old_py = (section_of(recorded, "packages").get("python") or {}).get("version")
    new_py = (section_of(current, "packages").get("python") or {}).get("version")
    if old_py and new_py and old_py != new_py:
        change = version_change(old_py, new_py)
        level = {"major": "incompatible", "minor": "at-risk"}.get(change or "", "compatible")
        add(level, f"Python {old_py} → {new_py} ({change})", 3)
    old_cpu, new_cpu = section_of(recorded, "hardware"), section_of(current, "hardware")
    if old_cpu.get("arch") and new_cpu.get("arch") and old_cpu["arch"] != new_cpu["arch"]:
        add("at-risk", f"CPU architecture {old_cpu['arch']} → {new_cpu['arch']}", 3)
    elif old_cpu.get("model") != new_cpu.get("model"):
        add("compatible", f"CPU {old_cpu.get('model')} → {new_cpu.get('model')}", 3)
    old_sys, new_sys = section_of(recorded, "system"), section_of(current, "system")
    for key in ("os", "kernel", "libc"):
        if old_sys.get(key) != new_sys.get(key):
            add("compatible", f"{key} {old_sys.get(key)} → {new_sys.get(key)}", 3)
    order = {level: i for i, level in enumerate(LEVELS)}
    reasons.sort(key=lambda item: (-order[item[1].level], item[0]))  # stable: name order within a rank
    level = max((r.level for _, r in reasons), key=order.__getitem__) if reasons else "identical"
    return Verdict(level, [r for _, r in reasons])


def _runs_on(arch: list[str], major: int, minor: int) -> bool:
    """Whether a build with kernels for ``arch`` (sm_80, compute_90 ...) runs on compute capability
    major.minor: a cubin for sm_XY runs on the same major X with minor >= Y; PTX for compute_XY is JIT-compiled
    for any capability >= X.Y."""
    for entry in arch:
        kind, _, digits = entry.partition("_")
        if not digits.isdigit() or len(digits) < 2:
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def doctor_findings(snapshot: dict[str, Any], conflicts: list[dict[str, Any]] | None) -> list[Finding]:
    """Problems of one environment: dependency conflicts and CUDA inconsistencies."""
    findings = [Finding("error", "dependencies", c["message"]) for c in conflicts or []]
    gpu = section_of(snapshot, "gpu")
    driver_cuda = _major_minor(gpu.get("cuda_driver_version"))
    for name, cuda in _cuda_builds(snapshot).items():
        build = _major_minor(cuda)
        if driver_cuda and build and build > driver_cuda:
            findings.append(Finding("error", "cuda", f"{name} is built for CUDA {cuda} but the NVIDIA driver "
                                                     f"{gpu.get('driver_version')} supports CUDA "
                                                     f"{gpu.get('cuda_driver_version')} at most: update the driver "
                                                     f"or install a {name} build for an older CUDA"))
        elif build and _gpu_count(snapshot) == 0:
            findings.append(Finding("warning", "cuda", f"{name} is built for CUDA {cuda} but no GPU is usable here "
                                                       f"({gpu.get('reason') or 'no device'}): it will run on the CPU"))
    frameworks = section_of(snapshot, "frameworks")
    for device in gpu.get("devices") or []:
        capability = str(device.get("compute_capability") or "")
        if not re.fullmatch(r"\d+\.\d+", capability):
            continue
        for name, facts in frameworks.items():
            arch = facts.get("arch_list") if isinstance(facts, dict) else None
            if not arch:
                continue
            major, minor = (int(x) for x in capability.split("."))
            if not _runs_on(arch, major, minor):
                findings.append(Finding("error", "cuda", f"{device.get('name')} has compute capability {capability}, "
                                                         f"but this {name} build has kernels for "
                                                         f"{', '.join(arch)} only"))
    return findings
