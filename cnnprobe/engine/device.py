"""Which device a run uses, and what to call it in logs and the store."""

from __future__ import annotations

import platform

import torch

from cnnprobe.config import ConfigError, TrainConfig


def resolve_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when available, else the CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", name, "no CUDA device is available here; use cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError("train.device", name,
                              f"only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    return torch.device(name)


def training_device(tr: TrainConfig) -> torch.device:
    """The device a run trains on (`resolve_device`), refusing options it cannot run there."""
    device = resolve_device(tr.device)
    if tr.compile == "reduce-overhead" and device.type != "cuda":
        raise ConfigError("train.compile", tr.compile,
                          f"CUDA graphs need a CUDA device and this run trains on {device.type}; "
                          "use default or off")
    return device


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model where the system reports it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def memory_line(device: torch.device) -> str:
    """GPU memory in use and in total, for the log; empty on the CPU."""
    if device.type != "cuda":
        return ""
    free, total = torch.cuda.mem_get_info(device)
    return f"{(total - free) / 2**30:.1f}/{total / 2**30:.1f} GiB"
