"""The environment snapshot a run records: what it ran on. Pure — the gatherers live in ``labtrack.env``.

Snapshot schema, version 1 (a JSON-able dict; a section that is not requested is absent, and a
gatherer that failed or timed out leaves ``{"error": "..."}`` in place of its section)::

    schema        1
    captured_at   float, Unix time
    hardware      arch, vendor, model, physical_cores, logical_cores, flags (subset: sse4_2, avx, avx2,
                  avx512f, fma, neon, ...), memory_total (bytes)
    gpu           count, devices [{index, name, uuid, memory_total, compute_capability "8.0",
                  mig_mode "enabled"|"disabled"|None}], driver_version, cuda_driver_version "12.2"
                  (the newest CUDA the driver supports), reason (why count is 0), rocm {version, smi} or
                  None, mps bool (Apple silicon)
    frameworks    {name: {version, module, imported, + runtime facts when imported: torch cuda/cudnn/hip/
                  cuda_available/devices/deterministic..., numpy blas, ...}} — installed frameworks only
    packages      python {version, implementation, executable, prefix, base_prefix, venv, conda_env},
                  distributions {normalized name: {version, source "index"|"editable"|"local"|"url"|"vcs",
                  url?, vcs?, commit?, requested_revision?}}
    system        os, os_version, distro {id, name, version_id, pretty_name}, kernel, libc, hostname
                  (absent when disabled), container {runtime, kubernetes}, scheduler {slurm: {...}} or None
    process       argv (redacted), entry {path, sha256, size} | {kind: "-c"|"interactive"}, cwd, pid,
                  start_time, cpu_affinity, env {allowlisted name: value (redacted)}
    git           repo false | {repo true, root, commit, branch, detached, remote_url (no credentials),
                  dirty, changed_files, diff_sha256, diff_bytes, diff_truncated, binary_files,
                  untracked [{path, size, sha256}] (inputs only: see env.untracked), untracked_count,
                  untracked_truncated, untracked_skipped {reason: count, largest}, submodules}

Fingerprint: the sha256 of :func:`fingerprint_subset`, the part of the snapshot that decides whether two
runs executed on "the same" machine and software, so that thousands of runs on one machine share one
stored snapshot. In: CPU arch/vendor/model/core counts/flags and memory (whole GiB), GPU models, memory,
compute capability, MIG mode, driver and CUDA-driver versions, ROCm version, framework versions and
build facts (CUDA/cuDNN/HIP builds, BLAS) and determinism flags, the set of ``name==version`` (plus the
commit of VCS installs), Python version and implementation, OS/distribution/kernel release/libc.
Out, because they differ between runs that are equally reproducible: capture time, hostname, GPU
UUIDs (which physical card), container and scheduler ids, paths (executable, prefix, venv, editable
checkouts), whether a framework happened to be imported yet, and the whole ``process`` and ``git``
sections — code identity is the run key's business, not the environment's. :meth:`Environment.per_run`
returns what a store must keep per run for that reason.

On the wire (``core.wire``) an environment is its snapshot with ``"fingerprint"`` added beside the
sections; decoding reads the snapshot and computes the fingerprint again (it follows from the snapshot).
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import Any, cast

from labtrack.core.identity import canonical_json
from labtrack.core.wire import Json, from_wire, join_path, to_wire

__all__ = ["SCHEMA_VERSION", "SECTIONS", "Environment", "environment_facts", "fingerprint_subset", "section_of"]

SCHEMA_VERSION = 1
SECTIONS = ("hardware", "gpu", "frameworks", "packages", "system", "process", "git")

# Framework facts that describe the process state, not the installation (see the module docstring).
_FRAMEWORK_VOLATILE = frozenset({"imported", "module", "cuda_available", "devices", "device_count", "error"})
_GIB = 1024**3


def _ok(section: Any) -> bool:
    return isinstance(section, dict) and "error" not in section


def _hardware_subset(hw: dict[str, Any]) -> dict[str, Any]:
    keys = ("arch", "vendor", "model", "physical_cores", "logical_cores", "flags")
    out: dict[str, Any] = {k: hw.get(k) for k in keys}
    mem = hw.get("memory_total")
    # MemTotal moves by a few MiB between kernels and boots on the same machine: compare whole GiB.
    out["memory_gib"] = round(mem / _GIB) if isinstance(mem, (int, float)) else None
    return out


def _gpu_subset(gpu: dict[str, Any]) -> dict[str, Any]:
    devices = [
        {k: d.get(k) for k in ("name", "memory_total", "compute_capability", "mig_mode")}
        for d in gpu.get("devices") or []
    ]
    rocm = gpu.get("rocm")
    return {
        "count": gpu.get("count"),
        "devices": devices,
        "driver_version": gpu.get("driver_version"),
        "cuda_driver_version": gpu.get("cuda_driver_version"),
        "rocm": rocm.get("version") if isinstance(rocm, dict) else None,
        "mps": gpu.get("mps"),
    }


def _packages_subset(pk: dict[str, Any]) -> dict[str, Any]:
    py = pk.get("python") or {}
    dists: dict[str, str] = {}
    for name, info in (pk.get("distributions") or {}).items():
        version = str(info.get("version"))
        if info.get("source") == "vcs" and info.get("commit"):
            version += "@" + str(info["commit"])
        dists[name] = version
    return {"python": {"version": py.get("version"), "implementation": py.get("implementation")},
            "distributions": dists}


def _system_subset(sy: dict[str, Any]) -> dict[str, Any]:
    distro = sy.get("distro") or {}
    return {
        "os": sy.get("os"),
        "distro": {"id": distro.get("id"), "version_id": distro.get("version_id")},
        "kernel": sy.get("kernel"),
        "libc": sy.get("libc"),
    }


def fingerprint_subset(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The reproducibility-relevant part of a snapshot, which the fingerprint hashes.

    A section that failed contributes only the fact that it failed, so a transient gatherer error yields
    a distinct (and therefore never wrongly shared) fingerprint.
    """
    out: dict[str, Any] = {"schema": snapshot.get("schema", SCHEMA_VERSION)}
    reducers = {"hardware": _hardware_subset, "gpu": _gpu_subset, "packages": _packages_subset,
                "system": _system_subset}
    for name, reduce in reducers.items():
        if name in snapshot:
            section = snapshot[name]
            out[name] = reduce(section) if _ok(section) else {"error": True}
    if "frameworks" in snapshot:
        fw = snapshot["frameworks"]
        if _ok(fw):
            out["frameworks"] = {
                name: {k: v for k, v in facts.items() if k not in _FRAMEWORK_VOLATILE}
                for name, facts in fw.items() if isinstance(facts, dict)
            }
        else:
            out["frameworks"] = {"error": True}
    return out


class Environment:
    """An environment snapshot (see the module docstring for its schema) and its fingerprint.

    Treat it as immutable: the fingerprint is computed once, on first use.
    """

    def __init__(self, snapshot: dict[str, Any], *, fingerprint: str | None = None) -> None:
        """``fingerprint``: the snapshot's fingerprint when the caller knows it already (a capture that
        reused an earlier one's unchanged sections): hashing costs more than capturing again."""
        self.snapshot = snapshot
        if fingerprint is not None:
            self.__dict__["fingerprint"] = fingerprint  # cached_property's slot

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON of :func:`fingerprint_subset`."""
        import hashlib  # lazily: loading OpenSSL costs milliseconds, and `import labtrack.env` must be cheap

        return hashlib.sha256(canonical_json(fingerprint_subset(self.snapshot)).encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Environment) and self.snapshot == other.snapshot

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"Environment(fingerprint={self.fingerprint[:12]}…, sections={list(self.sections())})"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the snapshot (callers may mutate it freely)."""
        return copy.deepcopy(self.snapshot)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Environment:
        return cls(copy.deepcopy(d))

    def wire_encode(self) -> dict[str, Json]:
        if "fingerprint" in self.snapshot:
            raise ValueError("a snapshot has no 'fingerprint' section: the wire format puts the fingerprint there")
        encoded = cast("dict[str, Json]", to_wire(self.snapshot, dict[str, Any]))
        return {**encoded, "fingerprint": self.fingerprint}

    @classmethod
    def wire_decode(cls, data: object, path: str) -> Environment:
        snapshot = from_wire(dict[str, Any], data, path=path)
        from_wire(str | None, snapshot.pop("fingerprint", None), path=join_path(path, "fingerprint"))
        return cls(snapshot)

    def replace_section(self, name: str, section: dict[str, Any]) -> Environment:
        """A new Environment with one section replaced (the fingerprint is recomputed)."""
        snapshot = dict(self.snapshot)
        snapshot[name] = section
        return Environment(snapshot)

    def sections(self) -> dict[str, dict[str, Any]]:
        """The present sections in display order, for ``labtrack env``."""
        return {name: self.snapshot[name] for name in SECTIONS if isinstance(self.snapshot.get(name), dict)}

    def per_run(self) -> dict[str, Any]:
        """What differs between runs sharing this fingerprint; a store keeps it per run, not per snapshot."""
        system = self.snapshot.get("system")
        out: dict[str, Any] = {k: self.snapshot[k] for k in ("captured_at", "process", "git") if k in self.snapshot}
        if isinstance(system, dict) and "error" not in system:
            out["system"] = {k: system[k] for k in ("hostname", "container", "scheduler") if k in system}
        return out

    def summary(self) -> list[tuple[str, str]]:
        """Short human lines for ``labtrack show``: ``[("python", "3.11.7 (CPython)"), ...]``."""
        s = self.snapshot
        lines: list[tuple[str, str]] = []

        def add(label: str, section: str, render: Any) -> None:
            value = s.get(section)
            if value is None:
                return
            if not _ok(value):
                lines.append((label, f"error: {value.get('error') if isinstance(value, dict) else value}"))
                return
            text = render(value)
            if text:
                lines.append((label, text))

        add("python", "packages", _python_line)
        add("os", "system", _os_line)
        add("host", "system", _host_line)
        add("cpu", "hardware", _cpu_line)
        add("memory", "hardware", lambda hw: _bytes(hw.get("memory_total")))
        add("gpu", "gpu", _gpu_line)
        fw = s.get("frameworks")
        if isinstance(fw, dict) and "error" not in fw:
            for name, facts in fw.items():
                lines.append((name, _framework_line(facts)))
        elif isinstance(fw, dict):
            lines.append(("frameworks", f"error: {fw.get('error')}"))
        add("packages", "packages", lambda p: f"{len(p.get('distributions') or {})} distributions")
        add("container", "system", _container_line)
        add("scheduler", "system", _scheduler_line)
        add("command", "process", lambda p: " ".join(p.get("argv") or []))
        add("git", "git", _git_line)
        conflicts = s.get("conflicts")
        if isinstance(conflicts, list) and conflicts:
            first = conflicts[0].get("message") if isinstance(conflicts[0], dict) else str(conflicts[0])
            more = f" (+{len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            lines.append(("conflicts", f"{first}{more}"))
        return lines


def _bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return ""
    return f"{n / _GIB:.1f} GiB"


def _python_line(p: dict[str, Any]) -> str:
    py = p.get("python") or {}
    text = f"{py.get('version')} ({py.get('implementation')})"
    if py.get("conda_env"):
        text += f", conda env {py['conda_env']}"
    elif py.get("venv"):
        text += f", venv {py['venv']}"
    return text


def _os_line(sy: dict[str, Any]) -> str:
    distro = (sy.get("distro") or {}).get("pretty_name") or sy.get("os")
    parts = [str(distro), f"kernel {sy.get('kernel')}"]
    if sy.get("libc"):
        parts.append(str(sy["libc"]))
    return ", ".join(parts)


def _host_line(sy: dict[str, Any]) -> str:
    return str(sy.get("hostname") or "")


def _cpu_line(hw: dict[str, Any]) -> str:
    return (f"{hw.get('model') or hw.get('vendor') or 'unknown'}, {hw.get('physical_cores')} cores / "
            f"{hw.get('logical_cores')} threads, {hw.get('arch')}")


def _gpu_line(gpu: dict[str, Any]) -> str:
    devices = gpu.get("devices") or []
    extras = []
    if isinstance(gpu.get("rocm"), dict):
        extras.append(f"ROCm {gpu['rocm'].get('version')}")
    if gpu.get("mps"):
        extras.append("Apple MPS")
    if not devices:
        text = f"none ({gpu.get('reason') or 'no device'})"
        return "; ".join([text, *extras])
    names: dict[str, int] = {}
    for d in devices:
        label = str(d.get("name"))
        if d.get("memory_total"):
            label += f" ({round(d['memory_total'] / _GIB)} GiB)"
        names[label] = names.get(label, 0) + 1
    text = ", ".join(f"{n} x {label}" for label, n in names.items())
    text += f", driver {gpu.get('driver_version')}"
    if gpu.get("cuda_driver_version"):
        text += f", CUDA {gpu['cuda_driver_version']}"
    return "; ".join([text, *extras])


def _framework_line(facts: Any) -> str:
    if not isinstance(facts, dict):
        return str(facts)
    parts = [str(facts.get("version"))]
    if facts.get("cuda"):
        parts.append(f"CUDA {facts['cuda']}")
    if facts.get("cudnn"):
        parts.append(f"cuDNN {facts['cudnn']}")
    if facts.get("hip"):
        parts.append(f"HIP {facts['hip']}")
    if facts.get("blas"):
        parts.append(f"BLAS {facts['blas']}")
    if facts.get("error"):
        parts.append(f"(runtime facts failed: {facts['error']})")
    return " ".join(parts)


def _container_line(sy: dict[str, Any]) -> str:
    c = sy.get("container") or {}
    parts = [c["runtime"]] if c.get("runtime") else []
    if c.get("kubernetes"):
        parts.append("kubernetes")
    return ", ".join(parts)


def _scheduler_line(sy: dict[str, Any]) -> str:
    slurm = (sy.get("scheduler") or {}).get("slurm")
    if not slurm:
        return ""
    text = f"slurm job {slurm.get('job_id')}"
    if slurm.get("array_job_id"):
        text += f" (array {slurm['array_job_id']}_{slurm.get('array_task_id')})"
    return text


def _git_line(g: dict[str, Any]) -> str:
    if not g.get("repo"):
        return "not a git repository"
    commit = str(g["commit"])[:7] if g.get("commit") else "no commits yet"
    where = f"on {g['branch']}" if g.get("branch") else "detached HEAD"
    text = f"{commit} {where}, {'dirty' if g.get('dirty') else 'clean'}"
    skipped = sum(n for n in (g.get("untracked_skipped") or {}).values() if isinstance(n, int))
    inputs = (g.get("untracked_count") or 0) - skipped  # a store, virtualenv or cache is no input
    if inputs > 0:
        text += f", {inputs} untracked"
    return text


def section_of(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    """A section that was captured without error, else an empty dict."""
    value = snapshot.get(name)
    return value if isinstance(value, dict) and "error" not in value else {}


def environment_facts(snapshot: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """Searchable facts of a snapshot as (name, text, number) rows, for ``env.<name>`` in filters.

    Names: python, python.implementation, os, kernel, libc, cpu, cpu.arch, cpu.cores, memory_gb,
    gpu.count, gpu.name (one row per distinct model), gpu.driver, gpu.cuda (newest CUDA the driver
    supports), gpu.compute_capability, packages.<distribution> (its version), frameworks.<name> (version),
    frameworks.<name>.<build fact> (e.g. frameworks.torch.cuda, frameworks.torch.cudnn).
    """
    facts: list[tuple[str, str, float | None]] = []

    def add(name: str, value: Any) -> None:
        if value is None or value == "" or isinstance(value, (dict, list)):
            return
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        facts.append((name, str(value).lower() if isinstance(value, bool) else str(value), number))

    packages = section_of(snapshot, "packages")
    if packages:
        python = packages.get("python") or {}
        add("python", python.get("version"))
        add("python.implementation", python.get("implementation"))
        for dist, info in (packages.get("distributions") or {}).items():
            if isinstance(info, dict):
                add(f"packages.{dist}", info.get("version"))
    system = section_of(snapshot, "system")
    if system:
        distro = system.get("distro") or {}
        add("os", distro.get("pretty_name") or system.get("os"))
        add("kernel", system.get("kernel"))
        add("libc", system.get("libc"))
    hardware = section_of(snapshot, "hardware")
    if hardware:
        add("cpu", hardware.get("model"))
        add("cpu.arch", hardware.get("arch"))
        add("cpu.cores", hardware.get("logical_cores"))
        memory = hardware.get("memory_total")
        if isinstance(memory, (int, float)):
            add("memory_gb", round(memory / _GIB))
    gpu = section_of(snapshot, "gpu")
    if gpu:
        add("gpu.count", gpu.get("count"))
        add("gpu.driver", gpu.get("driver_version"))
        add("gpu.cuda", gpu.get("cuda_driver_version"))
        devices = [d for d in gpu.get("devices") or [] if isinstance(d, dict)]
        for name in sorted({str(d.get("name")) for d in devices if d.get("name")}):
            add("gpu.name", name)
        for capability in sorted({str(d.get("compute_capability")) for d in devices if d.get("compute_capability")}):
            add("gpu.compute_capability", capability)
    frameworks = section_of(snapshot, "frameworks")
    if frameworks:
        for name, info in frameworks.items():
            if not isinstance(info, dict):
                continue
            add(f"frameworks.{name}", info.get("version"))
            for fact, value in info.items():
                if fact not in ("version", "module", "imported", "error") and not isinstance(value, (dict, list)):
                    add(f"frameworks.{name}.{fact}", value)
    return facts
