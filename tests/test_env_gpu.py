"""The gpu section.

No GPU exists on the machines these tests run on, which is why NVML is faked: ``FakeNVML`` implements
the pynvml functions the gatherer calls, and raises pynvml's real ``NVMLError`` subclasses where a
driver would. The no-GPU path is also tested for real, on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from labtrack.core.environment import Environment
from labtrack.env import CaptureOptions, capture, gpu

GIB = 1024**3


class FakeNVML:
    """Just enough of pynvml: devices as dicts; ``fail`` maps a function name to the error it raises."""

    NVMLError = pynvml.NVMLError

    def __init__(self, devices: list[dict[str, Any]], *, driver: str = "535.104.05", cuda: int = 12020,
                 fail: dict[str, Callable[[], BaseException]] | None = None) -> None:
        self.devices = devices
        self.driver = driver
        self.cuda = cuda
        self.fail = fail or {}
        self.initialized = False
        self.shutdowns = 0

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]()

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        assert self.initialized
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> bytes:
        return h["name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return h["uuid"]

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=h["memory"], free=h["memory"], used=0)

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> tuple[int, int]:
        return h["cc"]

    def nvmlDeviceGetMigMode(self, h: dict[str, Any]) -> list[int]:
        if h.get("mig") is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [h["mig"], h["mig"]]


A100 = {"name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-1111", "memory": 80 * GIB, "cc": (8, 0), "mig": 0}
RTX = {"name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-2222", "memory": 24 * GIB, "cc": (8, 9), "mig": None}


def test_devices_driver_and_cuda_version_are_recorded() -> None:
    fake = FakeNVML([A100, {**A100, "uuid": "GPU-3333", "mig": 1}])
    section = gpu.gather(nvml=fake)
    assert section["count"] == 2
    assert section["driver_version"] == "535.104.05"
    assert section["cuda_driver_version"] == "12.2"
    assert section["devices"][0] == {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-1111",
                                     "memory_total": 80 * GIB, "compute_capability": "8.0", "mig_mode": "disabled"}
    assert section["devices"][1]["mig_mode"] == "enabled"
    assert "reason" not in section
    assert fake.shutdowns == 1, "NVML is shut down after the query"


def test_an_unsupported_property_is_none_and_the_rest_is_kept() -> None:
    section = gpu.gather(nvml=FakeNVML([RTX]))
    assert section["devices"][0]["mig_mode"] is None
    assert section["devices"][0]["compute_capability"] == "8.9"
    assert section["devices"][0]["name"] == "NVIDIA GeForce RTX 4090"


@pytest.mark.parametrize(
    ("error_code", "reason"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver: libnvidia-ml not found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission to query the NVIDIA driver"),
    ],
    ids=["library-not-found", "driver-not-loaded", "no-permission"],
)
def test_driver_errors_record_no_gpu_with_the_reason(error_code: int, reason: str) -> None:
    fake = FakeNVML([A100], fail={"nvmlInit": lambda: pynvml.NVMLError(error_code)})
    section = gpu.gather(nvml=fake)
    assert section["count"] == 0 and section["devices"] == []
    assert section["reason"] == reason


def test_an_error_after_init_is_recorded_and_nvml_is_still_shut_down() -> None:
    fake = FakeNVML([A100], fail={"nvmlSystemGetDriverVersion": lambda: pynvml.NVMLError_GpuIsLost()})
    section = gpu.gather(nvml=fake)
    assert section["count"] == 0
    assert section["reason"].startswith("NVML error:")
    assert fake.shutdowns == 1


def test_a_driver_without_devices_says_so() -> None:
    section = gpu.gather(nvml=FakeNVML([]))
    assert section["count"] == 0
    assert section["reason"] == "no NVIDIA device found (driver 535.104.05)"


def test_the_summary_line_groups_identical_devices() -> None:
    section = gpu.gather(nvml=FakeNVML([A100, A100]))
    lines = dict(Environment({"schema": 1, "gpu": section}).summary())
    assert lines["gpu"] == "2 x NVIDIA A100-SXM4-80GB (80 GiB), driver 535.104.05, CUDA 12.2"


def test_this_machine_records_no_gpu_with_a_reason() -> None:
    section = capture(CaptureOptions(sections=frozenset({"gpu"}))).environment.snapshot["gpu"]
    assert section["count"] == 0
    assert section["devices"] == []
    assert section["reason"].startswith("no NVIDIA driver")
    assert section["mps"] is False
