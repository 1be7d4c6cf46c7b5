"""System metrics: every live run records this machine's CPU, memory, disk and network (real psutil, here)
and its GPUs (NVML) as ``system/...`` series, from one background thread per process.

No GPU exists on the machines these tests run on, which is why the GPU tests read a fake NVML: ``FakeNVML``
implements the pynvml functions the sampler calls and raises pynvml's real ``NVMLError`` where a driver
would. Everything else is real: psutil on this machine, a SQLite store, forked processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest
from helpers import wait_for

import labtrack as lt
from labtrack.env.usage import UsageReader
from labtrack.settings import load_settings
from labtrack.verbs import monitor

MIB = 1 << 20
BASE_SERIES = {"system/cpu_percent", "system/memory_used_mb", "system/memory_percent", "system/process_memory_mb",
               "system/disk_read_mb_s", "system/disk_write_mb_s", "system/net_recv_mb_s", "system/net_sent_mb_s"}
GPU_QUANTITIES = ("utilization_percent", "memory_used_mb", "power_w", "temperature_c")


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "labtrack-monitor"]


def system_keys(run: lt.Run) -> set[str]:
    return {k for k in run.metrics if k.startswith("system/")}


def samples(run: lt.Run, key: str = "system/cpu_percent") -> int:
    return len(run.history(key).steps)


@pytest.fixture
def fast_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", "0.2")


# -- real psutil ---------------------------------------------------------------------------------

def test_a_run_records_this_machines_usage_in_plausible_ranges(fast_sampling: None) -> None:
    with lt.start_run("sys") as run:
        wait_for(lambda: samples(run) >= 3)
    keys = system_keys(run)
    if psutil.disk_io_counters() is None:  # some containers show no disks to psutil
        keys |= {"system/disk_read_mb_s", "system/disk_write_mb_s"}
    assert keys >= BASE_SERIES
    total_mb = psutil.virtual_memory().total / MIB
    for step_values in zip(*(run.history(k).values.tolist() for k in ("system/cpu_percent",
                                                                        "system/memory_percent"))):
        cpu, memory_percent = step_values
        assert 0.0 <= cpu <= 100.0
        assert 0.0 < memory_percent <= 100.0
    assert 0 < run.metrics["system/memory_used_mb"] <= total_mb
    assert 1 < run.metrics["system/process_memory_mb"] < total_mb  # this Python process's RSS
    for rate in ("system/net_recv_mb_s", "system/net_sent_mb_s"):
        assert all(v >= 0 for v in run.history(rate).values.tolist())


def test_samples_are_consecutive_steps_with_rising_timestamps(fast_sampling: None) -> None:
    with lt.start_run("sys") as run:
        wait_for(lambda: samples(run) >= 4)
    history = run.history("system/cpu_percent")
    steps = history.steps.tolist()
    assert steps == list(range(len(steps)))
    stamps = history.timestamps.tolist()
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_the_first_sample_comes_a_second_after_the_start_then_one_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", "3600")  # the next sample would be an hour later
    with lt.start_run("sys") as run:
        wait_for(lambda: samples(run) >= 1)
        time.sleep(0.5)
    assert run.history("system/cpu_percent").steps.tolist() == [0]  # a short run has its point, only one


@pytest.mark.parametrize("value", ["off", "0", "false"])
def test_switched_off_a_run_has_no_system_series(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", value)
    monkeypatch.setenv("LABTRACK_CONSOLE_LOG", "off")
    wait_for(lambda: not monitor_threads(), timeout=5)  # an earlier test's thread lingers a second
    with lt.start_run("sys") as run:
        run.log_metric("loss", 1.0)
        assert monitor_threads() == []  # nothing to do: no thread at all
        time.sleep(1.3)  # past the moment of a first sample
    assert system_keys(run) == set()
    assert run.metrics == {"loss": 1.0}


def test_one_thread_samples_every_live_run_and_ends_with_the_last(fast_sampling: None) -> None:
    with lt.start_run("outer") as outer:
        with lt.start_run("inner", nested=True) as inner:
            assert len(monitor_threads()) == 1
            wait_for(lambda: samples(inner) >= 2 and samples(outer) >= 2)
            assert len(monitor_threads()) == 1
        assert len(monitor_threads()) == 1  # the outer run is still live
    wait_for(lambda: not monitor_threads(), timeout=5)
    assert system_keys(inner) >= {"system/cpu_percent", "system/memory_used_mb"}
    assert system_keys(outer) >= {"system/cpu_percent", "system/memory_used_mb"}


def test_a_sample_after_the_run_ended_is_not_recorded(fast_sampling: None) -> None:
    with lt.start_run("sys") as run:
        wait_for(lambda: samples(run) >= 1)
    count = samples(run)
    time.sleep(0.6)  # three intervals
    assert samples(run) == count
    assert run.status is lt.RunStatus.FINISHED


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("off", 0.0), ("0", 0.0), ("false", 0.0), ("no", 0.0), ("on", 10.0), ("true", 10.0), ("2.5", 2.5), ("30", 30.0)],
)
def test_the_setting_takes_seconds_or_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str,
                                          seconds: float) -> None:
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", value)
    assert load_settings(cwd=tmp_path).system_metrics == seconds


def test_the_default_is_every_ten_seconds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LABTRACK_SYSTEM_METRICS")  # conftest switches it off for the other tests
    assert load_settings(cwd=tmp_path).system_metrics == 10.0


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_an_invalid_interval_names_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.setenv("LABTRACK_SYSTEM_METRICS", value)
    with pytest.raises(lt.InvalidInput) as caught:
        load_settings(cwd=tmp_path)
    assert "system_metrics" in str(caught.value) and "LABTRACK_SYSTEM_METRICS" in str(caught.value)
    assert "or off" in str(caught.value)


FORK_SCRIPT = """
import os, sys, time
import labtrack as lt
from labtrack.verbs import monitor
lt.set_store(sys.argv[1])
parent = lt.start_run("parent")
time.sleep(0.1)
assert monitor.monitor_thread() is not None
pid = os.fork()
if pid == 0:
    inherited = monitor.monitor_thread()
    with lt.start_run("child") as child:
        thread = monitor.monitor_thread()
        time.sleep(1.5)
    os._exit(0 if inherited is None and thread is not None and thread.is_alive() else 3)
_, status = os.waitpid(pid, 0)
time.sleep(1.2)
parent.end()
child = lt.search_runs("child")[0]
print(os.waitstatus_to_exitcode(status), len(child.history("system/cpu_percent").steps) >= 1,
      len(parent.history("system/cpu_percent").steps) >= 2)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_starts_its_own_sampler_and_the_parents_goes_on(tmp_path: Path,
                                                                        python_env: dict[str, str]) -> None:
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    env = {**python_env, "LABTRACK_SYSTEM_METRICS": "0.5"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True", "True"], done.stderr


# -- a failing psutil ----------------------------------------------------------------------------

class NetworkCountersFail:
    """Real psutil except ``net_io_counters``, which fails as it would in a sandbox denying /proc/net/dev:
    a failure this machine cannot be made to have on demand."""

    def __init__(self) -> None:
        self.calls = 0

    def net_io_counters(self) -> Any:
        self.calls += 1
        if self.calls > 1:  # the baseline works, the readings fail
            raise PermissionError("/proc/net/dev: permission denied")
        return psutil.net_io_counters()

    def __getattr__(self, name: str) -> Any:
        return getattr(psutil, name)


def test_a_failing_psutil_series_warns_once_and_the_others_go_on() -> None:
    fake = NetworkCountersFail()
    reader = UsageReader(psutil_module=fake, nvml=FakeNVML([]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader.start()
        readings = [reader.read() for _ in range(3)]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "net" in messages[0] and "permission denied" in messages[0]
    assert fake.calls == 2, "a failed series is not read again"
    for reading in readings:
        assert "system/net_recv_mb_s" not in reading
        assert "system/cpu_percent" in reading and "system/memory_used_mb" in reading


# -- GPUs, through a fake NVML (no GPU here) ---------------------------------------------------------

class FakeNVML:
    """Just enough of pynvml for the sampler; a fake because these machines have no GPU. ``fail`` maps a
    function name to a callable (the call's number) -> the error to raise, or None to answer."""

    NVMLError = pynvml.NVMLError

    def __init__(self, devices: list[dict[str, Any]],
                 fail: dict[str, Callable[[int], BaseException | None]] | None = None) -> None:
        self.devices = devices
        self.fail = fail or {}
        self.calls: dict[str, int] = {}
        self.initialized = 0

    def _check(self, name: str) -> None:
        self.calls[name] = n = self.calls.get(name, 0) + 1
        if name in self.fail:
            error = self.fail[name](n)
            if error is not None:
                raise error

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> SimpleNamespace:
        self._check("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=h["util"], memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> SimpleNamespace:
        self._check("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=80 * 1024 * MIB, free=0, used=h["used_mib"] * MIB)

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> int:
        self._check("nvmlDeviceGetPowerUsage")
        if h.get("power_mw") is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(h["power_mw"])

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> int:
        self._check("nvmlDeviceGetTemperature")
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return int(h["temp"])


A100 = {"util": 87, "used_mib": 40_000, "power_mw": 312_500, "temp": 64}
RTX = {"util": 12, "used_mib": 2_048, "power_mw": None, "temp": 41}  # power not supported on this card


@pytest.fixture
def fake_gpus() -> Iterator[Callable[[FakeNVML], None]]:
    yield monitor.use_nvml
    monitor.use_nvml(None)


def test_each_gpu_has_its_utilisation_memory_power_and_temperature(
    fast_sampling: None, fake_gpus: Callable[[FakeNVML], None]
) -> None:
    fake = FakeNVML([A100, RTX])
    fake_gpus(fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lt.start_run("gpu") as run:
            wait_for(lambda: samples(run, "system/gpu1/temperature_c") >= 2)
    metrics = run.metrics
    assert metrics["system/gpu0/utilization_percent"] == 87.0
    assert metrics["system/gpu0/memory_used_mb"] == 40_000.0
    assert metrics["system/gpu0/power_w"] == 312.5
    assert metrics["system/gpu0/temperature_c"] == 64.0
    assert metrics["system/gpu1/utilization_percent"] == 12.0
    assert metrics["system/gpu1/memory_used_mb"] == 2_048.0
    assert "system/gpu1/power_w" not in metrics  # not supported by the card: left out ...
    assert not [w for w in caught if "labtrack" in str(w.message)]  # ... without a warning
    assert {f"system/gpu0/{q}" for q in GPU_QUANTITIES} <= set(metrics)


def test_an_nvml_error_mid_run_warns_once_stops_the_gpu_series_and_the_run_goes_on(
    fast_sampling: None, fake_gpus: Callable[[FakeNVML], None]
) -> None:
    def lost(n: int) -> BaseException | None:
        return pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST) if n > 2 else None

    fake = FakeNVML([A100, A100], fail={name: lost for name in (
        "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTemperature")})
    fake_gpus(fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lt.start_run("gpu") as run:
            wait_for(lambda: samples(run) >= 5)
            run.log_metric("loss", 0.5)
    assert run.status is lt.RunStatus.FINISHED
    assert run.metrics["loss"] == 0.5
    gpu_warnings = [str(w.message) for w in caught if "labtrack" in str(w.message)]
    assert len(gpu_warnings) == 1, gpu_warnings
    assert "gpu" in gpu_warnings[0] and "GPU is lost" in gpu_warnings[0]
    # calls 1 and 2 (the first sample of gpu0 and gpu1) answer, 3 and 4 (the second) fail
    assert samples(run, "system/gpu0/utilization_percent") == samples(run, "system/gpu1/temperature_c") == 1
    assert samples(run, "system/cpu_percent") >= 5  # the others went on
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 4, "a failed series is not read again"


def test_nvml_failing_to_start_warns_once_and_the_machine_series_go_on(
    fast_sampling: None, fake_gpus: Callable[[FakeNVML], None]
) -> None:
    fake = FakeNVML([A100], fail={"nvmlInit": lambda n: pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)})
    fake_gpus(fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lt.start_run("gpu") as run:
            wait_for(lambda: samples(run) >= 2)
    assert not [k for k in run.metrics if k.startswith("system/gpu")]
    assert len([w for w in caught if "labtrack" in str(w.message)]) == 1
