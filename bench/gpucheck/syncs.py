"""Host syncs in the step loop: the trainer may wait for the GPU only where it reads the loss
back, once every `log_every` steps (and in evaluations). Counted, not assumed.

A sensor is a context manager that records every synchronizing call in its block as a
warning. On CUDA, `cuda_sensor` arms torch's sync debug mode, which warns on each
synchronizing CUDA call ("not all synchronizing operations will trigger warning"; caching
allocator frees, for one, do not:
https://pytorch.org/docs/stable/generated/torch.cuda.set_sync_debug_mode.html).
`item_sensor` is the CPU's stand-in: every `Tensor.item()` called from outside torch, which
is how a host read of a device value looks in this code.

The trainer's callbacks mark the count at each event; between two loss reads with no
evaluation in between, the count must be exactly what one read costs (calibrated: one
`.item()` of a device scalar), whatever `log_every` is.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.step import TrainStep
from cnnprobe.engine.train import LOSSES, make_optimizer, train
from cnnprobe.events import EvaluationEvent, RunStarted, StepEvent
from cnnprobe.tasks import make_generator, make_task

from .checks import compile_backend
from .results import Result
from .training import initial_model, run_config

SYNC_WARNING = re.compile(r"called a synchronizing")
Sensor = Callable[[], AbstractContextManager[list]]


def count_syncs(caught: list) -> int:
    """The synchronizing calls among recorded warnings (not the 'prototype feature' note that
    arming the mode prints)."""
    return sum(bool(SYNC_WARNING.search(str(w.message))) for w in caught)


@contextmanager
def cuda_sensor() -> Iterator[list]:
    """torch.cuda.set_sync_debug_mode("warn") for the block: a Python warning per sync.
    "warn", not "error": the loss read is a sync the loop is allowed, and an error would
    stop the run instead of counting. The mode is process-wide; it is put back after."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every sync, not one per source line
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode(previous)


@contextmanager
def item_sensor() -> Iterator[list]:
    """On the CPU: a warning for each Tensor.item() called from code outside torch (torch's
    own optimizers read their CPU step counters that way; those are not host reads)."""
    original = torch.Tensor.item

    def item(self: torch.Tensor) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith("torch"):
            warnings.warn(f"called a synchronizing operation (Tensor.item from {caller})",
                          stacklevel=2)
        return original(self)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.Tensor.item = item
        try:
            yield caught
        finally:
            torch.Tensor.item = original


def sensor_for(device: torch.device) -> Sensor:
    return cuda_sensor if device.type == "cuda" else item_sensor


def read_cost(sensor: Sensor, device: torch.device) -> int:
    """Syncs the sensor counts for one loss read (`.item()` of a scalar on the device)."""
    x = torch.ones((), device=device) * 2
    with sensor() as caught:
        x.item()
    return count_syncs(caught)


class Marks:
    """A trainer callback noting how many syncs the sensor had counted at each event."""

    def __init__(self) -> None:
        self.caught: list = []
        self.marks: list[tuple[str, int, int]] = []  # (kind, step, syncs so far)

    def __call__(self, event: object) -> None:
        kind = {RunStarted: "start", StepEvent: "read", EvaluationEvent: "eval"}.get(
            type(event))
        if kind is not None:
            self.marks.append((kind, getattr(event, "step", 0),
                               count_syncs(self.caught)))


def judge(marks: list[tuple[str, int, int]], per_read: int) -> tuple[bool, dict[str, Any]]:
    """Between consecutive marks: from the start to the first read is the warm-up (the input
    normalisation's fit, compilation), not judged; an interval ending at an evaluation is the
    evaluation's own; every other one (after a read or an evaluation, up to the next read)
    holds only training steps and one loss read, and must cost exactly `per_read`."""
    steady, evals, warmup = [], [], None
    for (k0, _, c0), (k1, _, c1) in zip(marks, marks[1:], strict=False):
        n = c1 - c0
        if k0 == "start":
            warmup = n
        elif k1 == "eval":
            evals.append(n)
        elif k1 == "read":
            steady.append(n)
    ok = per_read >= 1 and bool(steady) and all(n == per_read for n in steady)
    return ok, {"per_read": per_read, "steady": steady, "evaluations": evals,
                "warmup": warmup}


def loop_syncs(half: str, device: torch.device, model: str, task: str, size: int, batch: int,
               *, log_every: int = 10, reads: int = 4, sensor: Sensor | None = None,
               compile: str = "off", backend: str = "inductor") -> Result:
    """train() with the sensor on: each stretch of `log_every` steps between two loss reads
    syncs only for that read. With `compile` (train.compile) the compiled step is held to
    the same: its compilation and, under reduce-overhead, its CUDA-graph recording fall in
    the warm-up (the first stretch, not judged); a guard or a graph replay that waited for
    the GPU would show in every stretch after."""
    sensor = sensor or sensor_for(device)
    per_read = read_cost(sensor, device)
    steps = log_every * reads
    cfg = RunConfig(TaskConfig(name=task, height=size, width=size), ModelConfig(name=model),
                    TrainConfig(batch_size=batch, steps=steps, eval_every=steps, val_size=128,
                                bn_samples=64, log_every=log_every, lr=1e-4,
                                device=str(device), compile=compile))
    marks = Marks()
    with sensor() as caught, compile_backend(backend):
        marks.caught = caught
        result = train(cfg, callbacks=[marks])
    ok, info = judge(marks.marks, per_read)
    worst = max(info["steady"], default=None)
    if result.status != "finished":
        ok = False
    compiled = "" if compile == "off" else f" (compile={compile}" + (
        f", {backend})" if backend != "inductor" else ")")
    return Result(half, "check", f"{model}/{task}{compiled}: host syncs between loss reads",
                  ok, None if worst is None else float(worst), "syncs", float(per_read),
                  f"{size} px, batch {batch}, log_every {log_every}: steady "
                  f"{info['steady']}, warm-up {info['warmup']}, evaluation "
                  f"{info['evaluations']}" + ("" if result.status == "finished"
                                              else f"; run {result.status}: {result.reason}"),
                  data=info)


def sensor_control(half: str, device: torch.device, *, log_every: int = 5, reads: int = 3,
                   sensor: Sensor | None = None) -> Result:
    """The check can fail: a step loop that reads its loss every step (`.item()`) must be
    judged failing, and the same loop without it passing, by the same sensor and judge."""
    sensor = sensor or sensor_for(device)
    per_read = read_cost(sensor, device)
    cfg = run_config("seednet", 32, 64)
    verdicts = {}
    for leak in (False, True):
        model = initial_model(cfg).to(device)
        step = TrainStep(model, make_optimizer(cfg, model.parameters()), LOSSES["l1"](),
                         device)
        stream = make_task_stream(cfg, device)
        marks: list[tuple[str, int, int]] = []
        with sensor() as caught:
            marks.append(("start", 0, count_syncs(caught)))
            total = torch.zeros((), device=device)
            for i in range(1, log_every * reads + 1):
                b = next(stream)
                loss = step(b.images, b.targets)
                if leak:
                    loss.item()  # the deliberate sync
                total += loss
                if i % log_every == 0:
                    (total / log_every).item()
                    total.zero_()
                    marks.append(("read", i, count_syncs(caught)))
        verdicts[leak] = judge(marks, per_read)
    clean_ok, leaky_ok = verdicts[False][0], verdicts[True][0]
    clean, leaky = verdicts[False][1]["steady"], verdicts[True][1]["steady"]
    caught = "judged failing" if not leaky_ok else "NOT caught"
    return Result(half, "check", f"sync sensor on {device.type} catches a per-step .item()",
                  clean_ok and not leaky_ok, float(max(clean)), "syncs", float(per_read),
                  f"one read costs {per_read}; clean loop {clean}, leaky loop {leaky} "
                  f"({caught})",
                  data={"clean": verdicts[False][1], "leaky": verdicts[True][1]})


def make_task_stream(cfg: RunConfig, device: torch.device) -> Iterator:
    return make_task(cfg.task).stream(cfg.train.batch_size,
                                      make_generator(cfg.train.seed, device))
