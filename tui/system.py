"""The machine the lab runs on, in one line: each GPU's load, memory, temperature and power
(NVIDIA's management library, `pynvml` from the `nvidia-ml-py` package), this process's CPU
and memory, the host's CPU and RAM (`psutil`), and while a run trains, its own GPU memory.

Torch-free: `run_memory` reads torch's allocator only when torch is already imported.
No NVML (not installed, no driver, no GPU) leaves CPU and RAM; nothing here raises.
Sampling is cheap and never blocks: NVML is initialised once (`NvmlGpus()`, which may take
a moment: build it off the UI thread), and the CPU percentages are since the last sample.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

GIB = 2**30
SEP = " │ "
MIN_CPU_INTERVAL_S = 0.5
_T = TypeVar("_T")


@dataclass(frozen=True)
class GpuSample:
    """One GPU now; a field its driver does not report is None."""

    index: int
    name: str = ""
    util_pct: float | None = None
    mem_used: int | None = None  # bytes
    mem_total: int | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None


@dataclass(frozen=True)
class RunMemory:
    """What the running training's tensors hold on its GPU (torch's allocator), in bytes."""

    device: str
    allocated: int
    peak: int


@dataclass(frozen=True)
class SystemSnapshot:
    """The machine at one moment. Percentages are of one core (a process may pass 100%)
    for the process, of all cores for the host; sizes in bytes; None where unknown."""

    gpus: tuple[GpuSample, ...] = ()
    proc_cpu_pct: float | None = None
    proc_rss: int | None = None
    host_cpu_pct: float | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    run: RunMemory | None = None


class GpuSource(Protocol):
    """Where GPU samples come from: NVML here, a fake in tests."""

    def read(self) -> list[GpuSample]: ...


class NoGpus:
    """A machine without GPUs (or without a way to read them)."""

    def read(self) -> list[GpuSample]:
        return []


class NvmlGpus:
    """Every GPU NVML sees. Initialised once; if that fails (no `pynvml`, no driver, no GPU)
    it reads no GPUs, and a query a GPU does not support leaves its field None."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.error = ""
        self._gpus: list[tuple[int, Any, str, float | None]] = []  # index, handle, name, limit
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError, OSError: no GPUs
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.nvml = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # noqa: BLE001 - NVMLError: as if there were none
            self.error = f"{type(exc).__name__}: {exc}"
            count = 0
        for i in range(count):
            handle = self._try(pynvml.nvmlDeviceGetHandleByIndex, i)
            if handle is None:
                continue
            name = self._try(pynvml.nvmlDeviceGetName, handle) or ""
            if isinstance(name, bytes):  # older bindings
                name = name.decode(errors="replace")
            limit = self._try(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            self._gpus.append((i, handle, name, None if limit is None else limit / 1000))

    @staticmethod
    def _try(fn: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - NVMLError (not supported, GPU lost, ...)
            return None

    def read(self) -> list[GpuSample]:
        nv, out = self.nvml, []
        for index, handle, name, limit in self._gpus:
            util = self._try(nv.nvmlDeviceGetUtilizationRates, handle)
            mem = self._try(nv.nvmlDeviceGetMemoryInfo, handle)
            temp = self._try(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
            power = self._try(nv.nvmlDeviceGetPowerUsage, handle)
            out.append(GpuSample(index, name, None if util is None else float(util.gpu),
                                 None if mem is None else int(mem.used),
                                 None if mem is None else int(mem.total),
                                 None if temp is None else float(temp),
                                 None if power is None else power / 1000, limit))
        return out

    def close(self) -> None:
        if self.nvml is not None:
            self._try(self.nvml.nvmlShutdown)
            self.nvml, self._gpus = None, []


class SystemSampler:
    """`sample()` -> SystemSnapshot, cheap enough to call every second from a UI thread.

    `gpus`: where GPU samples come from (default: `NvmlGpus()`, initialised here, once).
    """

    def __init__(self, gpus: GpuSource | None = None) -> None:
        self.gpus: GpuSource = gpus if gpus is not None else NvmlGpus()
        try:
            import psutil
        except ImportError:  # a dependency, but the line should not need it to exist
            self.psutil: Any = None
            self.process: Any = None
            return
        self.psutil = psutil
        self.process = psutil.Process()
        self._cpu: tuple[float | None, float | None] = (None, None)  # process, host
        self._cpu_at = 0.0
        self._cpu_percent()  # starts the interval the next call measures

    def _cpu_percent(self) -> tuple[float | None, float | None]:
        """CPU use since the last measurement, at most every MIN_CPU_INTERVAL_S: over a
        shorter interval the kernel's clock ticks make it noise (a process at 345% on two
        cores), so a sample sooner repeats the last one (None at first)."""
        now = time.monotonic()
        if now - self._cpu_at >= MIN_CPU_INTERVAL_S:
            proc = self.process.cpu_percent(interval=None)
            host = self.psutil.cpu_percent(interval=None)
            self._cpu = (proc, host) if self._cpu_at else (None, None)
            self._cpu_at = now
        return self._cpu

    def sample(self, run: RunMemory | None = None) -> SystemSnapshot:
        try:
            gpus = tuple(self.gpus.read())
        except Exception:  # noqa: BLE001 - a GPU source never breaks the line
            gpus = ()
        ps = self.psutil
        if ps is None:
            return SystemSnapshot(gpus=gpus, run=run)
        proc_cpu = rss = host_cpu = used = total = None
        try:
            with self.process.oneshot():
                proc_cpu, host_cpu = self._cpu_percent()
                rss = self.process.memory_info().rss
            vm = ps.virtual_memory()
            used, total = vm.total - vm.available, vm.total
        except Exception:  # noqa: BLE001 - psutil.Error, OSError: leave what is unknown
            pass
        return SystemSnapshot(gpus, proc_cpu, rss, host_cpu, used, total, run)

    def close(self) -> None:
        close = getattr(self.gpus, "close", None)
        if close is not None:
            close()


def run_memory(device: str, *, reset_peak: bool = False) -> RunMemory | None:
    """Torch's allocated and peak bytes on a CUDA `device`, if torch is already imported
    and CUDA initialised (never imports torch, never starts CUDA). `reset_peak` first
    restarts the peak (a new run: its own peak, not the process's so far)."""
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda"):
        return None
    try:
        cuda = torch.cuda
        if not cuda.is_initialized():
            return None
        if reset_peak:
            cuda.reset_peak_memory_stats(device)
        return RunMemory(device, int(cuda.memory_allocated(device)),
                         int(cuda.max_memory_allocated(device)))
    except Exception:  # noqa: BLE001 - torch half-imported, a bad device: no run memory
        return None


# -- one line
def _num(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _gib(n: int, *, short: bool) -> str:
    x = n / GIB
    if short:
        return _num(x)
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _size(used: int | None, total: int | None, *, short: bool) -> str:
    """"31.2/80.0 GiB" ("31/80G" short); one size under 1 GiB in MiB ("18 MiB", "18M")."""
    unit = "G" if short else " GiB"
    if used is None:
        return ""
    if total is None:
        if used < GIB:
            return f"{used / 2**20:.0f}" + ("M" if short else " MiB")
        return _gib(used, short=short) + unit
    return f"{_gib(used, short=short)}/{_gib(total, short=short)}{unit}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}%"


def short_gpu_name(name: str) -> str:
    """"NVIDIA H200" -> "H200", "NVIDIA GeForce RTX 4090" -> "RTX 4090"."""
    for prefix in ("NVIDIA ", "GeForce ", "Tesla "):
        name = name.removeprefix(prefix)
    return name


def _gpu(g: GpuSample, detail: int) -> str:
    """detail 0: with the name and the power limit; 1: labelled units; 2: compact units;
    3: load and memory only."""
    short = detail >= 2
    parts = [f"GPU{g.index}"]
    if detail == 0 and g.name:
        parts.append(short_gpu_name(g.name))
    parts += [_pct(g.util_pct), _size(g.mem_used, g.mem_total, short=short)]
    if detail <= 2:
        parts.append("" if g.temp_c is None else f"{g.temp_c:.0f}°C")
        if g.power_w is not None:
            watts = f"{g.power_w:.0f}"
            if detail == 0 and g.power_limit_w:
                watts += f"/{g.power_limit_w:.0f}"
            parts.append(watts + ("W" if short else " W"))
    text = " ".join(p for p in parts if p)
    return text if text != f"GPU{g.index}" else f"GPU{g.index} n/a"


def _gpus_together(gpus: Sequence[GpuSample]) -> str:
    """All GPUs as one: mean load, summed memory, the hottest."""
    utils = [g.util_pct for g in gpus if g.util_pct is not None]
    used = [g.mem_used for g in gpus if g.mem_used is not None]
    total = [g.mem_total for g in gpus if g.mem_total is not None]
    temps = [g.temp_c for g in gpus if g.temp_c is not None]
    parts = [f"{len(gpus)} GPUs", _pct(sum(utils) / len(utils)) if utils else "",
             _size(sum(used), sum(total) if total else None, short=True) if used else "",
             f"≤{max(temps):.0f}°C" if temps else ""]
    return " ".join(p for p in parts if p)


def _run(r: RunMemory, detail: int) -> str:
    """The training's own memory: allocated now, and its peak."""
    if detail == 0:
        return f"run {r.device} {_size(r.allocated, None, short=False)}, peak " \
               f"{_size(r.peak, None, short=False)}"
    if detail == 1:
        return f"run {_size(r.allocated, None, short=False)} " \
               f"peak {_size(r.peak, None, short=False)}"
    return f"run {_size(r.allocated, None, short=True)}/{_size(r.peak, None, short=True)}"


def _usage(label: str, cpu: float | None, memory: int | None, total: int | None,
           memory_name: str, detail: int) -> str:
    """`proc CPU 12% RSS 1.2 GiB` (detail 0-1) or `proc 12% 1.2G`; parts unknown are left out."""
    if cpu is None and memory is None:
        return ""
    if detail <= 1:
        parts = [label, f"CPU {_pct(cpu)}" if cpu is not None else "",
                 f"{memory_name} {_size(memory, total, short=False)}" if memory is not None
                 else ""]
    else:
        parts = [label, _pct(cpu), _size(memory, total, short=True)]
    return " ".join(p for p in parts if p)


def _proc(s: SystemSnapshot, detail: int) -> str:
    return _usage("proc", s.proc_cpu_pct, s.proc_rss, None, "RSS", detail)


def _host(s: SystemSnapshot, detail: int) -> str:
    return _usage("host", s.host_cpu_pct, s.ram_used, s.ram_total, "RAM", detail)


# From the most to the least detail: (GPU detail or "together", run, process, host detail or
# None to leave it out). The first that fits the width is shown.
_LEVELS: tuple[tuple[int | str, int, int | None, int | None], ...] = (
    (0, 0, 0, 0), (1, 0, 1, 1), (1, 1, 1, 1), (1, 2, 2, 2), (2, 2, 2, 2), (3, 2, 2, 2),
    ("together", 2, 2, 2), (3, 2, None, 2), ("together", 2, None, 2),
    (3, 2, None, None), ("together", 2, None, None),
)


def line_variants(s: SystemSnapshot) -> list[str]:
    """The snapshot as one line, from the most detailed to the shortest."""
    out: list[str] = []
    for gpu, run, proc, host in _LEVELS:
        if gpu == "together":
            gpus = [_gpus_together(s.gpus)] if len(s.gpus) > 1 else \
                [_gpu(g, 3) for g in s.gpus]
        else:
            gpus = [_gpu(g, int(gpu)) for g in s.gpus]
        parts = [*gpus, _run(s.run, run) if s.run is not None else ""]
        if proc is not None:
            parts.append(_proc(s, proc))
        if host is not None:
            parts.append(_host(s, host))
        text = SEP.join(p for p in parts if p)
        if text not in out:
            out.append(text)
    return out


def format_line(s: SystemSnapshot, width: int = 120) -> str:
    """The most detailed variant that fits `width` columns; the shortest, cut with "…",
    when none does."""
    variants = line_variants(s)
    for text in variants:
        if len(text) <= width:
            return text
    short = variants[-1]
    return short[: max(0, width - 1)] + "…" if width > 0 else ""
