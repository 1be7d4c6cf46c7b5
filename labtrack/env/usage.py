"""How busy the machine is right now: CPU, memory, disk and network (psutil), and per GPU utilisation,
memory, power and temperature (NVML) — the readings behind the ``system/`` metric series.

A ``UsageReader`` is made once per sampler and read every few seconds. Disk and network are counters;
their rates (MB/s) are the difference between two readings over the time between them, so the first
``read`` after ``start`` already has them (``start`` takes the baseline). ``psutil.cpu_percent(None)``
likewise measures since the previous call.

Never raises: each group of series is read on its own, and one that fails (a psutil error, an NVML error
such as a GPU falling off the bus) warns once and its series stop, while the others go on. A GPU
quantity the device does not support (power on some consumer cards) is left out silently. MB here are
MiB (2^20 bytes), as ``nvidia-smi`` and ``free -m`` count them.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["MB", "UsageReader"]

MB = float(1 << 20)
_NVML_ERROR_NOT_SUPPORTED = 3  # as in labtrack.env.gpu: a fake NVML need not define it
_NVML_TEMPERATURE_GPU = 0


class UsageReader:
    """Readings of this machine's usage as ``{"system/<name>": value}`` (see the module docstring).

    ``nvml``: an NVML binding (``pynvml`` or a test double with its functions); default: ``pynvml`` when an
    NVIDIA driver is present (``labtrack.env.gpu.nvml_binding``). ``psutil_module``: likewise, for tests.
    Not thread safe: one thread reads."""

    def __init__(self, *, nvml: Any = None, psutil_module: Any = None) -> None:
        self._nvml = nvml
        self._psutil = psutil_module
        self._handles: list[Any] = []
        self._nvml_ready = False
        self._counters: dict[str, tuple[float, float]] = {}  # counter -> (monotonic time, bytes)
        self._stopped: set[str] = set()  # groups and series that failed: no longer read
        self._process: Any = None
        self._loaded = False

    def start(self) -> None:
        """Take the baseline of the CPU and the counters; the first time, load psutil and NVML (a few ms)."""
        if self._loaded:
            if self._psutil is not None:
                self._guard("cpu", lambda: self._psutil.cpu_percent(None))
                self._guard("disk", lambda: self._rates("disk", self._disk(), {}))
                self._guard("net", lambda: self._rates("net", self._net(), {}))
            return
        self._loaded = True
        if self._psutil is None:
            try:
                import psutil
            except ImportError as exc:  # a base dependency; missing only in a broken install
                self._fail("psutil", exc)
            else:
                self._psutil = psutil
        if self._psutil is not None:
            self._guard("cpu", lambda: self._psutil.cpu_percent(None))
            self._guard("disk", lambda: self._rates("disk", self._disk(), {}))
            self._guard("net", lambda: self._rates("net", self._net(), {}))
            self._process = self._guard("process", lambda: self._psutil.Process(os.getpid()))
        nvml = self._nvml
        if nvml is None:
            from labtrack.env.gpu import nvml_binding

            nvml = self._nvml = nvml_binding()
        if nvml is not None:
            self._guard("gpu", self._init_nvml)

    def close(self) -> None:
        if self._nvml_ready:
            self._nvml_ready = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # NVML is being let go of: nothing to report
                pass

    def read(self) -> dict[str, float]:
        """One reading of every series still alive."""
        out: dict[str, float] = {}
        ps = self._psutil
        if ps is not None:
            self._guard("cpu", lambda: out.__setitem__("system/cpu_percent", float(ps.cpu_percent(None))))
            self._guard("memory", lambda: self._memory(out))
            self._guard("process", lambda: out.__setitem__(
                "system/process_memory_mb", self._process.memory_info().rss / MB) if self._process else None)
            self._guard("disk", lambda: self._rates("disk", self._disk(), out))
            self._guard("net", lambda: self._rates("net", self._net(), out))
        if self._nvml_ready:
            self._guard("gpu", lambda: self._gpus(out))
        return out

    # -- groups ---------------------------------------------------------------------------------

    def _memory(self, out: dict[str, float]) -> None:
        memory = self._psutil.virtual_memory()
        out["system/memory_used_mb"] = (memory.total - memory.available) / MB  # what programs hold, not cache
        out["system/memory_percent"] = float(memory.percent)

    def _disk(self) -> dict[str, float]:
        counters = self._psutil.disk_io_counters()
        if counters is None:  # no disks psutil can see (some containers)
            return {}
        return {"system/disk_read_mb_s": counters.read_bytes, "system/disk_write_mb_s": counters.write_bytes}

    def _net(self) -> dict[str, float]:
        counters = self._psutil.net_io_counters()
        if counters is None:
            return {}
        return {"system/net_recv_mb_s": counters.bytes_recv, "system/net_sent_mb_s": counters.bytes_sent}

    def _rates(self, group: str, totals: dict[str, float], out: dict[str, float]) -> None:
        now = time.monotonic()
        for name, total in totals.items():
            last = self._counters.get(name)
            self._counters[name] = (now, float(total))
            if last is not None and now > last[0] and total >= last[1]:  # a counter that wrapped: skip once
                out[name] = (total - last[1]) / MB / (now - last[0])

    def _init_nvml(self) -> None:
        nvml = self._nvml
        nvml.nvmlInit()
        self._nvml_ready = True
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(int(nvml.nvmlDeviceGetCount()))]

    def _gpus(self, out: dict[str, float]) -> None:
        nvml = self._nvml
        quantities: tuple[tuple[str, Callable[[Any], float]], ...] = (
            ("utilization_percent", lambda h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
            ("memory_used_mb", lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used / MB),
            ("power_w", lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),  # milliwatts
            ("temperature_c", lambda h: float(nvml.nvmlDeviceGetTemperature(h, _NVML_TEMPERATURE_GPU))),
        )
        for index, handle in enumerate(self._handles):
            for name, read in quantities:
                key = f"system/gpu{index}/{name}"
                if key in self._stopped:
                    continue
                try:
                    out[key] = read(handle)
                except Exception as exc:
                    self._stopped.add(key)
                    if getattr(exc, "value", None) != _NVML_ERROR_NOT_SUPPORTED:
                        self._fail("gpu", exc, key)

    # -- failures -------------------------------------------------------------------------------

    def _guard(self, group: str, read: Callable[[], Any]) -> Any:
        if group in self._stopped:
            return None
        try:
            return read()
        except Exception as exc:
            self._stopped.add(group)
            self._fail(group, exc)
            return None

    def _fail(self, group: str, exc: BaseException, series: str | None = None) -> None:
        """Warn once per group: eight GPUs failing the same way are one warning, not thirty-two."""
        warned = f"warned:{group}"
        if warned in self._stopped:
            return
        self._stopped.add(warned)
        what = series or f"the system/ {group} series"
        warnings.warn(f"labtrack: stopped recording {what}: {type(exc).__name__}: {exc} (training goes on; "
                      "LABTRACK_SYSTEM_METRICS=off turns system metrics off)", RuntimeWarning, stacklevel=2)
