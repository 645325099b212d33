"""The system line: GPUs (NVML, faked here), this process and the host (psutil), one line
at any width, never an error without NVML or a GPU; and the TUI showing it."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from cnnprobe.config import RunConfig
from tui import system
from tui.system import (
    GpuSample,
    NoGpus,
    NvmlGpus,
    RunMemory,
    SystemSampler,
    SystemSnapshot,
    format_line,
    line_variants,
    run_memory,
)

G = 2**30
TWO_GPUS = (GpuSample(0, "NVIDIA H200", 87, int(31.2 * G), 80 * G, 64, 250, 700),
            GpuSample(1, "NVIDIA H200", 12, int(1.5 * G), 80 * G, 40, 90, 700))


class FakeGpus:
    """A GPU source with fixed readings."""

    def __init__(self, gpus=TWO_GPUS) -> None:
        self.gpus = list(gpus)
        self.reads = 0

    def read(self):
        self.reads += 1
        return list(self.gpus)


class FixedSampler:
    """A sampler whose every sample is the same snapshot (the run's memory passed in)."""

    def __init__(self, snapshot: SystemSnapshot) -> None:
        self.snapshot = snapshot

    def sample(self, run=None):
        return SystemSnapshot(**{**self.snapshot.__dict__, "run": run})


def snapshot(gpus=TWO_GPUS, run=None) -> SystemSnapshot:
    return SystemSnapshot(tuple(gpus), proc_cpu_pct=103, proc_rss=int(2.1 * G), host_cpu_pct=45,
                          ram_used=int(12.3 * G), ram_total=24 * G, run=run)


# -- the sampler
def test_sampler_with_a_fake_gpu_source_gives_the_gpus_the_process_and_the_host(monkeypatch):
    monkeypatch.setattr(system, "MIN_CPU_INTERVAL_S", 0.0)
    gpus = FakeGpus()
    sampler = SystemSampler(gpus)
    snap = sampler.sample()
    assert snap.gpus == TWO_GPUS and gpus.reads == 1
    assert snap.proc_rss > 0 and snap.proc_cpu_pct >= 0 and 0 <= snap.host_cpu_pct <= 100
    assert 0 < snap.ram_used <= snap.ram_total
    line = format_line(snap, 200)
    assert line.startswith("GPU0 H200 87% 31.2/80.0 GiB 64°C 250/700 W │ "
                           "GPU1 H200 12% 1.5/80.0 GiB 40°C 90/700 W │ proc CPU ")
    assert " │ host CPU " in line and " RAM " in line


def test_the_line_of_two_gpus_at_widths_from_wide_to_narrow():
    snap = snapshot()
    assert format_line(snap, 200) == (
        "GPU0 H200 87% 31.2/80.0 GiB 64°C 250/700 W │ GPU1 H200 12% 1.5/80.0 GiB 40°C 90/700 W"
        " │ proc CPU 103% RSS 2.1 GiB │ host CPU 45% RAM 12.3/24.0 GiB")
    assert format_line(snap, 120) == (
        "GPU0 87% 31.2/80.0 GiB 64°C 250 W │ GPU1 12% 1.5/80.0 GiB 40°C 90 W │ proc 103% 2.1G"
        " │ host 45% 12/24G")
    assert format_line(snap, 100) == ("GPU0 87% 31/80G 64°C 250W │ GPU1 12% 1.5/80G 40°C 90W │ "
                                      "proc 103% 2.1G │ host 45% 12/24G")
    assert format_line(snap, 80) == ("GPU0 87% 31/80G │ GPU1 12% 1.5/80G │ proc 103% 2.1G │ "
                                     "host 45% 12/24G")
    assert format_line(snap, 60) == "2 GPUs 50% 33/160G ≤64°C │ proc 103% 2.1G │ host 45% 12/24G"
    assert format_line(snap, 45) == "2 GPUs 50% 33/160G ≤64°C │ host 45% 12/24G"
    assert format_line(snap, 40) == "GPU0 87% 31/80G │ GPU1 12% 1.5/80G"
    assert format_line(snap, 30) == "2 GPUs 50% 33/160G ≤64°C"
    assert format_line(snap, 10) == "2 GPUs 50…"
    for width in range(1, 220):
        assert len(format_line(snap, width)) <= width


def test_one_gpu_fits_an_80_column_line_and_the_run_memory_is_shown():
    run = RunMemory("cuda:0", int(0.5 * G), int(3.4 * G))
    snap = snapshot(TWO_GPUS[:1], run)
    assert format_line(snap, 160) == ("GPU0 H200 87% 31.2/80.0 GiB 64°C 250/700 W │ run cuda:0 "
                                      "512 MiB, peak 3.4 GiB │ proc CPU 103% RSS 2.1 GiB │ "
                                      "host CPU 45% RAM 12.3/24.0 GiB")
    assert format_line(snap, 79) == ("GPU0 87% 31/80G 64°C 250W │ run 512M/3.4G │ proc 103% 2.1G"
                                     " │ host 45% 12/24G")
    assert "run 512M/3.4G" in format_line(snap, 40)


def test_fields_a_gpu_does_not_report_are_left_out():
    gpus = (GpuSample(0, "Tesla T4", 5, G, 16 * G), GpuSample(1))
    line = format_line(snapshot(gpus), 200)
    assert line.startswith("GPU0 T4 5% 1.0/16.0 GiB │ GPU1 n/a │ proc")


def test_cpu_use_is_measured_over_half_a_second_at_least():
    sampler = SystemSampler(NoGpus())
    first = sampler.sample()  # too soon after the start: unknown, not noise
    assert first.proc_cpu_pct is None and first.host_cpu_pct is None and first.proc_rss > 0
    assert format_line(first, 120).startswith("proc RSS ")
    sampler._cpu_at -= 0.6  # as if 0.6 s had passed
    second = sampler.sample()
    assert second.proc_cpu_pct >= 0 and 0 <= second.host_cpu_pct <= 100
    assert sampler.sample().proc_cpu_pct == second.proc_cpu_pct  # repeated, not re-measured


def test_no_gpu_source_gives_cpu_and_ram_only(monkeypatch):
    monkeypatch.setattr(system, "MIN_CPU_INTERVAL_S", 0.0)
    snap = SystemSampler(NoGpus()).sample()
    assert snap.gpus == ()
    line = format_line(snap, 120)
    assert line.startswith("proc CPU ") and " │ host CPU " in line and "GPU" not in line


class BrokenGpus:
    def read(self):
        raise RuntimeError("the GPU fell off the bus")


def test_a_gpu_source_that_raises_leaves_cpu_and_ram():
    snap = SystemSampler(BrokenGpus()).sample()
    assert snap.gpus == () and snap.ram_total > 0


def test_without_pynvml_there_are_no_gpus_and_no_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    gpus = NvmlGpus()
    assert gpus.read() == [] and "ModuleNotFoundError" in gpus.error
    line = format_line(SystemSampler(gpus).sample(), 120)
    assert "host RAM" in line and "GPU" not in line


def fake_pynvml(*, init_error: bool = False, count: int = 2):
    """A stand-in for the `pynvml` module: `count` GPUs, power not supported on GPU 1."""
    nv = types.SimpleNamespace(NVML_TEMPERATURE_GPU=0, inits=0, shutdowns=0)

    class NVMLError(Exception):
        pass

    def init():
        nv.inits += 1
        if init_error:
            raise NVMLError("Driver Not Loaded")

    def power(h):
        if h == 1:
            raise NVMLError("Not Supported")
        return 250_000

    nv.NVMLError = NVMLError
    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: setattr(nv, "shutdowns", nv.shutdowns + 1)
    nv.nvmlDeviceGetCount = lambda: count
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H200" if h else "NVIDIA H200"
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87 - 75 * h)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * G, total=80 * G)
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 64 - 24 * h
    nv.nvmlDeviceGetPowerUsage = power
    return nv


def test_nvml_is_read_through_pynvml_initialised_once(monkeypatch):
    nv = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    gpus = NvmlGpus()
    sampler = SystemSampler(gpus)
    for _ in range(3):
        snap = sampler.sample()
    assert nv.inits == 1
    assert snap.gpus == (GpuSample(0, "NVIDIA H200", 87.0, G, 80 * G, 64.0, 250.0, 700.0),
                         GpuSample(1, "NVIDIA H200", 12.0, 2 * G, 80 * G, 40.0, None, 700.0))
    assert format_line(snap, 200).startswith("GPU0 H200 87% 1.0/80.0 GiB 64°C 250/700 W │ "
                                             "GPU1 H200 12% 2.0/80.0 GiB 40°C │ proc")
    sampler.close()
    assert nv.shutdowns == 1 and gpus.read() == []


@pytest.mark.parametrize("kw", [{"init_error": True}, {"count": 0}])
def test_an_nvml_that_fails_or_sees_no_gpu_gives_cpu_and_ram_only(monkeypatch, kw):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(**kw))
    snap = SystemSampler().sample()
    assert snap.gpus == () and snap.ram_total > 0 and snap.proc_rss > 0
    assert format_line(snap, 120).startswith("proc RSS ")


def test_the_shortest_variants_come_last():
    variants = line_variants(snapshot(run=RunMemory("cuda:1", G, 2 * G)))
    assert len(variants) == len(set(variants)) >= 6
    assert len(variants[0]) > len(variants[-1])


# -- the run's own GPU memory
def test_run_memory_needs_torch_imported_and_cuda_started(monkeypatch):
    assert run_memory("cpu") is None
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert run_memory("cuda:0") is None
    calls = []
    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        reset_peak_memory_stats=lambda d: calls.append(("reset", d)),
        memory_allocated=lambda d: G,
        max_memory_allocated=lambda d: 3 * G)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert run_memory("cuda:1") == RunMemory("cuda:1", G, 3 * G) and calls == []
    assert run_memory("cuda:1", reset_peak=True) == RunMemory("cuda:1", G, 3 * G)
    assert calls == [("reset", "cuda:1")]
    cuda.is_initialized = lambda: False
    assert run_memory("cuda:1") is None
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace())  # half imported
    assert run_memory("cuda:0") is None


# -- in the TUI
async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out waiting for the system line")
        await pilot.pause(0.05)


async def test_the_lab_shows_cpu_and_ram_of_this_machine(tmp_path: Path):
    from tui.app import CnnprobeApp
    from tui.widgets.system_line import SystemLine

    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    async with app.run_test(size=(120, 30)) as pilot:
        line = app.query_one(SystemLine)
        await wait_for(pilot, lambda: "host CPU" in line.text)
        assert "proc CPU " in line.text and "RAM " in line.text and "GiB" in line.text
        assert line.region.height == 1
        assert line.region.y == app.status.region.y - 1  # just above the progress line


async def test_the_lab_shows_a_fake_gpu_and_the_run_memory(tmp_path: Path, monkeypatch):
    from tui.app import CnnprobeApp
    from tui.jobs import TrainJob
    from tui.widgets import system_line

    app = CnnprobeApp(tmp_path / "store", watch_store=False)
    app.system_sampler = SystemSampler(FakeGpus())
    resets = []

    def fake_run_memory(device, *, reset_peak=False):
        resets.append(reset_peak)
        return RunMemory(device, G // 2, 3 * G)

    monkeypatch.setattr(system_line, "run_memory", fake_run_memory)
    async with app.run_test(size=(160, 40)) as pilot:
        line = app.query_one(system_line.SystemLine)
        await wait_for(pilot, lambda: "GPU0" in line.text)
        assert line.text.startswith("GPU0 H200 87% 31.2/80.0 GiB 64°C 250/700 W │ GPU1 H200 12% "
                                    "1.5/80.0 GiB 40°C 90/700 W │ proc CPU ")
        assert "run" not in line.text
        # a training on cuda:0 (not started: the scheduler only has to say it runs)
        app.lab.active["cuda:0"] = TrainJob("train", RunConfig(), "cuda:0")
        line.sample()
        assert " │ run 512 MiB peak 3.0 GiB │ " in line.text
        line.sample()
        assert resets == [True, False]  # its peak restarted once, when first seen
        app.lab.active.clear()
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: "run" not in line.text and len(line.text) < 80)
        assert line.text.startswith(("GPU0 87% 31/80G │ GPU1 12% 1.5/80G │ ",
                                     "2 GPUs 50% 33/160G ≤64°C │ "))


def test_the_widget_and_its_sampler_import_no_torch():
    import subprocess

    code = ("import sys, tui.widgets.system_line as w; w.make_sampler().sample(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
