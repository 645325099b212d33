"""Probe tasks: batched, seeded generators of images and spatial targets.

Importing this package is torch-free (`cnnprobe tasks` and the TUI's task list answer
from `task_table` at once); the generators load on first use of any other name (PEP 562).
"""

from __future__ import annotations

from typing import Any

from cnnprobe.config import TASK_DESCRIPTIONS

__all__ = ["TASKS", "Batch", "ProbeTask", "coord_planes", "make_generator", "make_task",
           "stream_seed", "task_table"]

_BASE = ("Batch", "ProbeTask", "coord_planes", "make_generator", "stream_seed")


def task_table() -> list[dict[str, str]]:
    """Name and one-line description of every task, for `cnnprobe tasks`."""
    return [{"name": n, "description": d} for n, d in TASK_DESCRIPTIONS.items()]


def __getattr__(name: str) -> Any:
    if name in _BASE:
        from cnnprobe.tasks import base

        return getattr(base, name)
    if name in ("TASKS", "make_task"):
        from cnnprobe.tasks import probes

        return getattr(probes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
