"""Why do two runs differ? A structured, ranked diff of params, metrics, code, artifacts and environment.

Pure: it compares two ``RunView`` values (what the store recorded about each run); the tracking layer
builds them and adds what needs I/O (``git log`` between the two commits).

Sections are ranked by how likely they are to change results: params, code, declared inputs and seeds
first, then the GPU and the frameworks' CUDA/cuDNN builds, framework versions, other packages (major
before minor before patch before local builds), Python, CPU, OS, environment variables and the rest.
Identical sections are reported as identical, so a reader can collapse them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from labtrack.core.environment import section_of
from labtrack.core.identity import canonical_json
from labtrack.core.wire import to_wire

__all__ = [
    "Change",
    "MetricDelta",
    "RunDiff",
    "RunView",
    "Section",
    "diff_runs",
    "identical_artifacts",
    "version_change",
]

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$")
# Packages whose version most directly decides numerical results (ranked with the frameworks).
_FRAMEWORK_PACKAGES = {
    "torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "numpy", "scipy", "scikit-learn", "xgboost",
    "lightgbm", "transformers", "nvidia-cudnn-cu11", "nvidia-cudnn-cu12", "nvidia-cublas-cu12", "triton",
}
_LEVEL_ORDER = {"major": 0, "minor": 1, "patch": 2, "pre-release": 3, "local build": 4, "other": 5, None: 6}


@dataclass
class RunView:
    """What a diff needs to know about one run."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> sha256
    environment: dict[str, Any] = field(default_factory=dict)  # merged snapshot (shared + per-run)
    status: str = ""
    run_key: str | None = None


@dataclass
class Change:
    key: str
    a: Any
    b: Any
    kind: str  # changed | added | removed
    level: str | None = None  # for versions: major | minor | patch | pre-release | local build | other
    note: str = ""

    def describe(self) -> str:
        arrow = {"added": f"(none) → {_show(self.b)}", "removed": f"{_show(self.a)} → (none)"}.get(
            self.kind, f"{_show(self.a)} → {_show(self.b)}"
        )
        extra = f" ({self.level})" if self.level else ""
        return f"{self.key} {arrow}{extra}{'; ' + self.note if self.note else ''}"

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))


@dataclass
class Section:
    name: str
    rank: int
    changes: list[Change] = field(default_factory=list)
    compared: bool = True  # False when either run lacks the information

    wire_derived: ClassVar[tuple[str, ...]] = ("identical",)

    @property
    def identical(self) -> bool:
        return self.compared and not self.changes

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))


@dataclass(frozen=True)
class MetricDelta:
    """One metric's last value in both runs (None where a run did not log it). ``delta`` is b − a and ``pct``
    the change in percent of |a|, when both are finite (no percentage of 0); ``same`` counts NaN as NaN."""

    key: str
    a: float | None
    b: float | None
    delta: float | None = None
    pct: float | None = None
    same: bool = False


@dataclass
class RunDiff:
    a: str
    b: str
    metrics: list[MetricDelta]
    sections: list[Section]
    identical_artifacts: list[str] = field(default_factory=list)  # same path, same content in both runs

    wire_derived: ClassVar[tuple[str, ...]] = ("identical",)

    @property
    def identical(self) -> bool:
        return all(s.identical or not s.compared for s in self.sections)

    def differing(self) -> list[Section]:
        return [s for s in self.sections if s.changes]

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", to_wire(self))

    def _repr_html_(self) -> str:
        """The diff as ``labtrack diff`` shows it, as HTML in Jupyter (``labtrack.core.html``)."""
        from labtrack.core.html import diff_html

        return diff_html(self)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return canonical_json(value) if isinstance(value, (dict, list)) else str(value)


def version_change(a: str | None, b: str | None) -> str | None:
    """How far apart two versions are: major, minor, patch, pre-release, local build (``+cu118`` →
    ``+cu121`` on the same release) or other (unparsable). None when they are equal."""
    if a == b:
        return None
    if a is None or b is None:
        return "other"
    pa, _, la = str(a).partition("+")
    pb, _, lb = str(b).partition("+")
    ma, mb = _RELEASE.match(pa), _RELEASE.match(pb)
    if not ma or not mb:
        return "other"
    ra = [int(x) for x in ma.group(1).split(".")]
    rb = [int(x) for x in mb.group(1).split(".")]
    width = max(len(ra), len(rb), 3)
    ra += [0] * (width - len(ra))
    rb += [0] * (width - len(rb))
    if ra[0] != rb[0]:
        return "major"
    if ra[1] != rb[1]:
        return "minor"
    if ra[2:] != rb[2:]:
        return "patch"
    if ma.group(2) != mb.group(2):
        return "pre-release"
    if la != lb:
        return "local build"
    return None


def _dict_changes(a: dict[str, Any], b: dict[str, Any], *, prefix: str = "") -> list[Change]:
    changes = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if key not in b:
            changes.append(Change(name, a[key], None, "removed"))
        elif key not in a:
            changes.append(Change(name, None, b[key], "added"))
        elif canonical_json(a[key]) != canonical_json(b[key]):
            changes.append(Change(name, a[key], b[key], "changed"))
    return changes


def _section(env: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The section, or None when it was not captured (or failed): then the runs cannot be compared on it."""
    return section_of(env, name) or None


def _metric_rows(a: RunView, b: RunView) -> list[MetricDelta]:
    rows = []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        if va is None or vb is None:
            rows.append(MetricDelta(key, va, vb))
            continue
        same = va == vb or (math.isnan(va) and math.isnan(vb))
        if math.isfinite(va) and math.isfinite(vb):
            rows.append(MetricDelta(key, va, vb, vb - va, (vb - va) / abs(va) * 100 if va != 0 else None, same))
        else:
            rows.append(MetricDelta(key, va, vb, same=same))
    return rows


def _code(a: RunView, b: RunView, log: list[str] | None) -> Section:
    section = Section("code", 2)
    ga, gb = _section(a.environment, "git"), _section(b.environment, "git")
    if ga is None or gb is None:
        section.compared = False
        return section
    if not ga.get("repo") or not gb.get("repo"):
        section.compared = bool(ga.get("repo")) == bool(gb.get("repo"))
        if not section.compared:
            section.changes.append(Change("repository", ga.get("root"), gb.get("root"), "changed"))
        return section
    if ga.get("commit") != gb.get("commit"):
        note = f"{len(log)} commit(s) between them" if log is not None else ""
        section.changes.append(Change("commit", ga.get("commit"), gb.get("commit"), "changed", note=note))
    if ga.get("branch") != gb.get("branch"):
        section.changes.append(Change("branch", ga.get("branch"), gb.get("branch"), "changed"))
    if (ga.get("dirty"), ga.get("diff_sha256")) != (gb.get("dirty"), gb.get("diff_sha256")):
        da = "uncommitted changes" if ga.get("dirty") else "clean"
        db_ = "uncommitted changes" if gb.get("dirty") else "clean"
        note = "the uncommitted diffs differ" if ga.get("dirty") and gb.get("dirty") else ""
        section.changes.append(Change("working tree", da, db_, "changed", note=note))
    if ga.get("remote_url") != gb.get("remote_url"):
        section.changes.append(Change("remote", ga.get("remote_url"), gb.get("remote_url"), "changed"))
    return section


def _gpu(a: dict[str, Any], b: dict[str, Any]) -> Section:
    section = Section("gpu", 5)
    ga, gb = _section(a, "gpu"), _section(b, "gpu")
    if ga is None or gb is None:
        section.compared = False
        return section

    def models(g: dict[str, Any]) -> str:
        names = [str(d.get("name")) for d in g.get("devices") or [] if isinstance(d, dict)]
        return ", ".join(sorted(set(names))) if names else "none"

    for key, va, vb in (
        ("model", models(ga), models(gb)),
        ("count", ga.get("count"), gb.get("count")),
        ("driver", ga.get("driver_version"), gb.get("driver_version")),
        ("driver CUDA", ga.get("cuda_driver_version"), gb.get("cuda_driver_version")),
    ):
        if va != vb:
            level = version_change(va, vb) if key in ("driver", "driver CUDA") and va and vb else None
            section.changes.append(Change(key, va, vb, "changed", level=level))
    return section


def _frameworks(a: dict[str, Any], b: dict[str, Any]) -> tuple[Section, Section]:
    """(CUDA/cuDNN builds and determinism flags, framework versions)."""
    builds, versions = Section("framework builds", 4), Section("frameworks", 6)
    fa, fb = _section(a, "frameworks"), _section(b, "frameworks")
    if fa is None or fb is None:
        builds.compared = versions.compared = False
        return builds, versions
    for name in sorted(set(fa) | set(fb)):
        ia, ib = fa.get(name) or {}, fb.get(name) or {}
        va, vb = ia.get("version"), ib.get("version")
        if va != vb:
            kind = "added" if va is None else "removed" if vb is None else "changed"
            versions.changes.append(Change(name, va, vb, kind, level=version_change(va, vb) if va and vb else None))
        for fact in sorted((set(ia) | set(ib)) - {"version", "module", "imported", "error", "devices", "device_count"}):
            xa, xb = ia.get(fact), ib.get(fact)
            if xa != xb and xa is not None and xb is not None:
                level = version_change(str(xa), str(xb)) if fact in ("cuda", "cudnn", "hip") else None
                builds.changes.append(Change(f"{name} {fact}", xa, xb, "changed", level=level))
    versions.changes.sort(key=lambda c: _LEVEL_ORDER.get(c.level, 6))
    return builds, versions


def _packages(a: dict[str, Any], b: dict[str, Any]) -> tuple[Section, Section]:
    """(numerical packages, every other package), each ranked major → local build."""
    key_section, rest = Section("numerical packages", 7), Section("packages", 8)
    pa, pb = _section(a, "packages"), _section(b, "packages")
    if pa is None or pb is None:
        key_section.compared = rest.compared = False
        return key_section, rest
    da, db_ = pa.get("distributions") or {}, pb.get("distributions") or {}
    # What either run imported (recorded at its end): a package neither loaded is said so and ranked last.
    loaded = [set(x) for x in (a.get("imported"), b.get("imported")) if isinstance(x, list)]
    imported = set().union(*loaded) if loaded else None
    unused = set() if imported is None else (set(da) | set(db_)) - imported
    for name in sorted(set(da) | set(db_)):
        ia, ib = da.get(name) or {}, db_.get(name) or {}
        va, vb = ia.get("version"), ib.get("version")
        target = key_section if name in _FRAMEWORK_PACKAGES else rest
        unloaded = "not imported by either run" if name in unused else ""
        if va != vb:
            kind = "added" if va is None else "removed" if vb is None else "changed"
            target.changes.append(Change(name, va, vb, kind, level=version_change(va, vb) if va and vb else None,
                                         note=unloaded))
        elif ia.get("commit") != ib.get("commit") or ia.get("source") != ib.get("source"):
            target.changes.append(Change(name, _provenance(va, ia), _provenance(vb, ib), "changed", level="other",
                                         note="; ".join(filter(None, ["same version, different source", unloaded]))))
    for section in (key_section, rest):
        section.changes.sort(key=lambda c: (c.key in unused, _LEVEL_ORDER.get(c.level, 6), c.kind != "changed", c.key))
    return key_section, rest


def _provenance(version: Any, info: dict[str, Any]) -> str:
    """``0.1.0 (editable, commit 1a2b3c4d5e6f)``: a version and where it was installed from."""
    parts = [str(info["source"])] if info.get("source") else []
    if info.get("commit"):
        parts.append(f"commit {str(info['commit'])[:12]}")
    return f"{version} ({', '.join(parts)})" if parts else str(version)


def _python(a: dict[str, Any], b: dict[str, Any]) -> Section:
    section = Section("python", 9)
    pa, pb = _section(a, "packages"), _section(b, "packages")
    if pa is None or pb is None:
        section.compared = False
        return section
    ya, yb = pa.get("python") or {}, pb.get("python") or {}
    for key in ("version", "implementation"):
        if ya.get(key) != yb.get(key):
            level = version_change(ya.get(key), yb.get(key)) if key == "version" else None
            section.changes.append(Change(f"python {key}", ya.get(key), yb.get(key), "changed", level=level))
    return section


def _hardware(a: dict[str, Any], b: dict[str, Any]) -> Section:
    section = Section("cpu", 10)
    ha, hb = _section(a, "hardware"), _section(b, "hardware")
    if ha is None or hb is None:
        section.compared = False
        return section
    for key in ("model", "arch", "vendor", "logical_cores", "physical_cores"):
        if ha.get(key) != hb.get(key):
            section.changes.append(Change(f"cpu {key}", ha.get(key), hb.get(key), "changed"))
    fa, fb = set(ha.get("flags") or []), set(hb.get("flags") or [])
    if fa != fb:
        section.changes.append(Change("cpu flags", sorted(fa - fb) or None, sorted(fb - fa) or None, "changed",
                                      note="flags only in A → only in B"))
    ma, mb = ha.get("memory_total"), hb.get("memory_total")
    if isinstance(ma, (int, float)) and isinstance(mb, (int, float)) and round(ma / 2**30) != round(mb / 2**30):
        section.changes.append(Change("memory GiB", round(ma / 2**30), round(mb / 2**30), "changed"))
    return section


def _system(a: dict[str, Any], b: dict[str, Any]) -> Section:
    section = Section("os", 11)
    sa, sb = _section(a, "system"), _section(b, "system")
    if sa is None or sb is None:
        section.compared = False
        return section
    for key in ("os", "kernel", "libc"):
        if sa.get(key) != sb.get(key):
            section.changes.append(Change(key, sa.get(key), sb.get(key), "changed"))
    da, db_ = (sa.get("distro") or {}).get("pretty_name"), (sb.get("distro") or {}).get("pretty_name")
    if da != db_:
        section.changes.append(Change("distribution", da, db_, "changed"))
    return section


def _process(a: dict[str, Any], b: dict[str, Any]) -> tuple[Section, Section]:
    """(allowlisted environment variables, command line and host)."""
    variables, command = Section("environment variables", 12), Section("command and host", 14)
    pa, pb = _section(a, "process"), _section(b, "process")
    if pa is None or pb is None:
        variables.compared = command.compared = False
    else:
        variables.changes = _dict_changes(pa.get("env") or {}, pb.get("env") or {})
        if pa.get("argv") != pb.get("argv"):
            command.changes.append(Change("command", " ".join(pa.get("argv") or []), " ".join(pb.get("argv") or []),
                                          "changed"))
        ea, eb = pa.get("entry") or {}, pb.get("entry") or {}
        if ea.get("sha256") != eb.get("sha256") and ea.get("sha256") and eb.get("sha256"):
            command.changes.append(Change("entry script", ea.get("path"), eb.get("path"), "changed",
                                          note="its content differs"))
    ha = (_section(a, "system") or {}).get("hostname")
    hb = (_section(b, "system") or {}).get("hostname")
    if ha != hb and ha and hb:
        command.changes.append(Change("host", ha, hb, "changed"))
    return variables, command


def _seed_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """What differs between two runs' seeding: the seed, which generators were seeded (now or on import),
    and each determinism switch by name — never a bare "settings differ"."""
    changes = _dict_changes({"seed": a.get("seed")}, {"seed": b.get("seed")})
    for name in ("seeded", "on_import"):
        la, lb = a.get(name) or [], b.get(name) or []
        if sorted(map(str, la)) != sorted(map(str, lb)):
            changes.append(Change(name, ", ".join(map(str, la)) or None, ", ".join(map(str, lb)) or None, "changed"))
    changes += _dict_changes(a.get("deterministic") or {}, b.get("deterministic") or {}, prefix="deterministic ")
    return changes


def diff_runs(a: RunView, b: RunView, *, git_log: list[str] | None = None) -> RunDiff:
    """Everything that differs between runs ``a`` and ``b``, ranked (see the module docstring).

    ``git_log``: the commits from a's to b's, when the caller could ask git (``git log --oneline a..b``).
    """
    sections = [Section("params", 1, _dict_changes(a.params, b.params))]
    sections.append(_code(a, b, git_log))
    seeds = Section("seeds", 3)
    sa, sb = a.environment.get("seeds"), b.environment.get("seeds")
    if sa is None and sb is None:
        seeds.compared = False
    elif canonical_json(sa) != canonical_json(sb):
        seeds.changes = _seed_changes(sa or {}, sb or {})
    sections.append(seeds)
    builds, versions = _frameworks(a.environment, b.environment)
    key_packages, packages = _packages(a.environment, b.environment)
    variables, command = _process(a.environment, b.environment)
    sections += [builds, _gpu(a.environment, b.environment), versions, key_packages, packages,
                 _python(a.environment, b.environment), _hardware(a.environment, b.environment),
                 _system(a.environment, b.environment), variables]
    artifacts = Section("artifacts", 13)
    for path in sorted(set(a.artifacts) | set(b.artifacts)):
        ha, hb = a.artifacts.get(path), b.artifacts.get(path)
        if ha != hb:
            kind = "added" if ha is None else "removed" if hb is None else "changed"
            artifacts.changes.append(Change(path, ha and ha[:12], hb and hb[:12], kind,
                                            note="content differs" if kind == "changed" else ""))
    sections += [artifacts, command, Section("tags", 15, _dict_changes(a.tags, b.tags))]
    sections.sort(key=lambda s: s.rank)
    return RunDiff(a=a.id, b=b.id, metrics=_metric_rows(a, b), sections=sections,
                   identical_artifacts=identical_artifacts(a, b))


def identical_artifacts(a: RunView, b: RunView) -> list[str]:
    """Paths both runs have with the same content ("model.pt identical")."""
    return sorted(p for p in set(a.artifacts) & set(b.artifacts) if a.artifacts[p] == b.artifacts[p])
