"""Admission: whether a training may start, decided in one place before anything is recorded.

`admit(config)` runs every check a training must pass, in this order, and returns what they
decided (`Admission`): the config validated field by field (`config.validate`), the model
fitted to the task and to the memory at the batch size, `auto` settings resolved (the
config the run records; `models.validate_run`), the device resolved and the options it
cannot run refused (`engine.device.training_device`), and the time of one step on the CPU
(`check_step_time`, unless `allow_slow`). Each raises `ConfigError` naming the field.

The service layer (`runs.train_run`, `resume_run`, `finetune_run`) admits once per training;
the CLI and the TUI call `admit` only for early feedback (a bad value before the progress
bar; a form row before the engine has loaded, `upto="config"`: no memory check, no
device, no timing, no torch), and hand the `Admission` on, so the checks already done are
not done again (`admit(admission)` does only what is missing).

Importing this module loads no torch: the device and the timing import it when they run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cnnprobe.config import ConfigError, RunConfig
from cnnprobe.models import validate_run

if TYPE_CHECKING:
    import torch

# A training step estimated to take longer than this is refused unless allow_slow: a
# config that passes the memory check can still make no step in minutes (a 4096 px image on
# a CPU). Static floor: seconds per (input pixel x fp32 value kept per pixel) on one fast
# CPU core, about 5x below what this project's CPUs measured (1e-8 to 5e-8 for the built-in
# models), so a config whose floor is under a second is never timed.
SLOW_STEP_S = 30.0
FAST_CPU_S_PER_PIXEL_FLOAT = 2e-9
# Big images train slower per pixel than the small ones timed (caches): plaincnn at
# 256 px/batch 64 and 2048 px/batch 1 took 1.7x the linear extrapolation (2026-12-02).
LARGE_IMAGE_FACTOR = 2.0


# The checks in the order they run; `admit(..., upto=...)` stops after the one named.
# "config": every field, the model against the task, `auto` resolved (torch-free);
# "memory": the model fits in memory at the batch size (asks CUDA: torch);
# "device": the device exists and runs the options; "step_time": one step is not too slow.
STAGES = ("config", "memory", "device", "step_time")


@dataclass(frozen=True)
class Admission:
    """What admission decided about one training, and how far its checks have gone."""

    config: RunConfig  # validated, `auto` settings resolved: what the run records
    done: str  # the last stage passed (STAGES)
    device: str | None = None  # "cpu", "cuda:0": one string per physical device, once known

    def passed(self, stage: str) -> bool:
        return STAGES.index(self.done) >= STAGES.index(stage)


def admit(config: RunConfig | Admission, *, upto: str = "step_time",
          allow_slow: bool = False) -> Admission:
    """Every check a training must pass before it is recorded, up to the stage `upto`
    (STAGES; see the module docstring). ConfigError names the field of the first refusal.

    "config" is the torch-free part, for a form checked before torch has loaded; "device"
    is all but the timing, which builds the model and may take seconds (the TUI's training
    thread times, not its UI thread). Given an `Admission`, only the stages it has not
    passed are run.
    """
    if upto not in STAGES:
        raise ValueError(f"upto={upto!r}: one of {', '.join(STAGES)}")
    adm = config if isinstance(config, Admission) else None
    want = STAGES.index(upto)
    if adm is None or (want >= 1 and not adm.passed("memory")):
        cfg = validate_run(adm.config if adm else config, memory=want >= 1)
        adm = Admission(cfg, STAGES[min(want, 1)])
    if want >= 2 and not adm.passed("device"):
        adm = replace(adm, done="device", device=device_key(_training_device(adm.config)))
    if want >= 3 and not adm.passed("step_time"):
        check_step_time(adm.config, allow_slow)
        adm = replace(adm, done="step_time")
    return adm


def _training_device(cfg: RunConfig) -> torch.device:
    """The device `cfg` trains on; ConfigError for a missing one or an option it cannot run."""
    from cnnprobe.engine.device import training_device as resolve

    return resolve(cfg.train)


def device_key(device: torch.device) -> str:
    """One string per physical device ("cpu", "cuda:0"): bare "cuda" is the current one."""
    import torch

    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def device_names() -> list[str]:
    """The devices a training may name here: auto, cpu and every CUDA device (torch)."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names


def device_memory(key: str) -> str:
    """GPU memory in use and in total of an admitted device ("cuda:0"), for a status line;
    empty on the CPU. Imports torch: for a device a training holds."""
    import torch

    from cnnprobe.engine.device import memory_line

    return memory_line(torch.device(key))


def without_download(cfg: RunConfig) -> RunConfig:
    """The config to build a model whose weights come from elsewhere (a checkpoint, or none
    at all for a timing): pretrained weights and a weights file left out."""
    return replace(cfg, model=replace(cfg.model, pretrained=False, weights_path=None))


def estimate_step_seconds(cfg: RunConfig) -> float | None:
    """Seconds one training step of `cfg` will take on its device, or None when it is
    surely quick (or not on the CPU: no GPU could be timed here, and GPUs are the fast case).

    A step's time grows with the pixels it trains on; it is measured, not guessed: a few
    steps of the real model at 32x32 and 64x64 (batch 4) on the CPU, then extrapolated
    linearly in batch x pixels (their difference removes the per-step overhead)."""
    import torch

    from cnnprobe.engine.device import resolve_device
    from cnnprobe.models import MODELS, build_model, estimate_training_bytes

    if resolve_device(cfg.train.device).type != "cpu":
        return None
    px = cfg.train.batch_size * cfg.task.height * cfg.task.width
    floats = estimate_training_bytes(cfg.model, cfg.task, cfg.train.batch_size) / 4
    if floats * FAST_CPU_S_PER_PIXEL_FLOAT < 1.0:
        return None
    model = build_model(without_download(cfg).model, cfg.task.in_channels).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    least = max(MODELS[cfg.model.name].min_size(cfg.model), 32)

    def step_time(side: int, batch: int = 4) -> float:
        x = torch.rand(batch, cfg.task.in_channels, side, side)
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            loss = model(x).float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            best = min(best, time.perf_counter() - start)
        return best

    small, large = step_time(least), step_time(2 * least)
    per_px = max(large - small, 1e-9) / (4 * (4 * least * least - least * least))
    return small + LARGE_IMAGE_FACTOR * per_px * (px - 4 * least * least)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def check_step_time(cfg: RunConfig, allow_slow: bool) -> None:
    """ConfigError when one step would take over SLOW_STEP_S and `allow_slow` is not set."""
    if allow_slow:
        return
    seconds = estimate_step_seconds(cfg)
    if seconds is not None and seconds > SLOW_STEP_S:
        total = seconds * cfg.train.total_steps
        raise ConfigError("task.height/width", f"{cfg.task.height}x{cfg.task.width}",
                          f"one training step of {cfg.model.name} at batch "
                          f"{cfg.train.batch_size} would take about {_duration(seconds)} on "
                          f"this CPU (timed at small sizes, scaled), {_duration(total)} for "
                          "the run; use a smaller resolution or batch size, a GPU, or "
                          "--allow-slow to start anyway")
