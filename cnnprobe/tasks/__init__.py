"""Probe tasks: batched, seeded generators of images and spatial targets."""

from __future__ import annotations

from cnnprobe.config import TASK_NAMES, ConfigError, TaskConfig
from cnnprobe.tasks.base import Batch, ProbeTask, coord_planes, make_generator, stream_seed
from cnnprobe.tasks.probes import AreaTask, CountTask, DistanceTask, LocateTask

TASKS: dict[str, type[ProbeTask]] = {
    t.name: t for t in (DistanceTask, AreaTask, LocateTask, CountTask)
}
assert tuple(TASKS) == TASK_NAMES


def make_task(cfg: TaskConfig) -> ProbeTask:
    """Build the task a config names (validating the config)."""
    if cfg.name not in TASKS:
        raise ConfigError("task.name", cfg.name, f"one of {', '.join(TASKS)}")
    return TASKS[cfg.name](cfg)


def task_table() -> list[dict[str, str]]:
    """Name and one-line description of every task, for `cnnprobe tasks`."""
    return [{"name": n, "description": t.description} for n, t in TASKS.items()]


__all__ = ["TASKS", "Batch", "ProbeTask", "coord_planes", "make_generator", "make_task",
           "stream_seed", "task_table"]
