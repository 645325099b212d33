"""Correctness checks of the CUDA path. Each takes its device(s), so the CPU half runs the
same code in CI; each returns Results whose test (value <= limit) can fail.

Tolerances are relative: loss curves by relative L2, final predictions as a fraction of the
labels' size (`training.differences`).
- FP32_LIMIT: fp32 arithmetic on two devices (or two thread counts) after a few steps. Two
  CPU runs with 1 and 2 threads, whose only difference is the order of sums, ended 2.5e-4
  apart on resnet18 (3 steps, 2026-12-02): the limit gives cuDNN's other algorithms 4x that.
- BF16_LIMIT: the same run under bf16 autocast. On the CPU plaincnn ended 0.5% (5 steps)
  and 2.2% (20 steps) from fp32; bf16 keeps 8 bits of mantissa (0.4%), so a few percent is
  its rounding, while a run that diverged or lost its updates is far beyond. seednet
  computes in fp32 throughout by design (its features are sub-pixel coordinates, where
  bf16's spacing near 1.0 is a whole pixel at 128 px), so it is held to FP32_LIMIT under
  autocast too: a bf16 region in it would show.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from cnnprobe.config import TASK_NAMES, ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine import step as engine_step
from cnnprobe.engine.train import train
from cnnprobe.tasks import make_generator, make_task

from .results import Result, relative_difference, within
from .training import Copy, differences, run_config, train_copies

FP32_LIMIT = 1e-3
BF16_LIMIT = 5e-2
FP32_MODELS = ("seednet", "coordmlp")  # all fp32 under autocast (models/seednet.py)
SAME_DISTRIBUTION_Z = 4.0  # |mean difference| in standard errors
SAME_SPREAD = 0.05  # relative difference of the standard deviations


def bf16_limit(model: str) -> float:
    return FP32_LIMIT if model in FP32_MODELS else BF16_LIMIT


def agreement(half: str, model: str, size: int, batch: int, steps: int, reference: Copy,
              others: list[tuple[Copy, float]]) -> list[Result]:
    """Copies of one run, same weights and batches: does each end within its limit of the
    reference? (The reference trains once for all of them.)"""
    cfg = run_config(model, size, batch)
    ref, *traces = train_copies(cfg, [reference] + [c for c, _ in others], steps)
    out = []
    for (other, limit), oth in zip(others, traces, strict=True):
        d_loss, d_pred = differences(ref, oth)
        value = max(d_loss, d_pred)
        out.append(Result(half, "check", f"{model}: {other.label} vs {reference.label}",
                          within(value, limit), value, "rel.", limit,
                          f"{size} px, batch {batch}, {steps} steps; losses {d_loss:.1e}, "
                          f"predictions {d_pred:.1e}",
                          data={"losses": [ref.losses.tolist(), oth.losses.tolist()],
                                "d_loss": d_loss, "d_pred": d_pred}))
    return out


def generator_repeats(half: str, device: torch.device, *, size: int = 32, n: int = 64
                      ) -> Result:
    """Same seed, same device: every task draws exactly the same batches (images, targets,
    boxes), fresh or through the reused stream buffer."""
    differ = []
    for name in TASK_NAMES:
        task = make_task(TaskConfig(name=name, height=size, width=size))
        a = task.sample(n, make_generator(7, device))
        b = task.sample(n, make_generator(7, device))
        stream = task.stream(n, make_generator(7, device))
        first = next(stream)
        c = [t.clone() for t in (first.images, first.targets, first.boxes, first.valid)]
        for x, y, z in zip((a.images, a.targets, a.boxes, a.valid),
                           (b.images, b.targets, b.boxes, b.valid), c, strict=True):
            if not (torch.equal(x, y) and torch.equal(x, z)):
                differ.append(name)
                break
    return Result(half, "check", f"generator on {device.type}: same seed, same batches",
                  not differ, float(len(differ)), "tasks differing", 0.0,
                  f"{', '.join(TASK_NAMES)} at {size} px, {n} samples"
                  + (f"; differ: {', '.join(differ)}" if differ else ""))


def generator_across(half: str, a: torch.device, b: torch.device, *, size: int = 64,
                     n: int = 4096) -> list[Result]:
    """The same seed on two devices. Identical batches are not expected: torch's CPU
    generator is a Mersenne Twister and its CUDA one Philox, separate streams ("results may
    not be reproducible between CPU and GPU executions, even when using identical seeds":
    https://pytorch.org/docs/stable/notes/randomness.html). What must hold is the same
    distribution: each task's targets have the same mean (within SAME_DISTRIBUTION_Z
    standard errors) and spread, and as many samples have every object drawn (on a GPU,
    objects are placed in a fixed number of rounds, without reading back which failed)."""
    identical, worst, rows = 0, 0.0, {}
    for name in TASK_NAMES:
        task = make_task(TaskConfig(name=name, height=size, width=size))
        xa = task.sample(n, make_generator(7, a))
        xb = task.sample(n, make_generator(7, b))
        identical += int(torch.equal(xa.targets.cpu(), xb.targets.cpu())
                         and torch.equal(xa.images.cpu(), xb.images.cpu()))
        ta, tb = xa.targets.double().cpu().numpy(), xb.targets.double().cpu().numpy()
        z_mean = _z(ta.mean(), tb.mean(), ta.var() / n + tb.var() / n)
        pa, pb = (float(x.valid.all(1).double().mean()) for x in (xa, xb))
        z_placed = _z(pa, pb, pa * (1 - pa) / n + pb * (1 - pb) / n)
        spread = relative_difference([ta.std()], [tb.std()])
        # The spread's allowance (SAME_SPREAD) put in z units, so one figure judges all three.
        worst = max(worst, z_mean, z_placed, spread / SAME_SPREAD * SAME_DISTRIBUTION_Z)
        rows[name] = {"mean": [float(ta.mean()), float(tb.mean())], "z_mean": z_mean,
                      "std": [float(ta.std()), float(tb.std())], "every_object_drawn": [pa, pb],
                      "z_drawn": z_placed}
    same = f"{a.type} vs {b.type}"
    return [Result(half, "check", f"generator {same}: same seed, same distribution",
                   within(worst, SAME_DISTRIBUTION_Z), worst, "z", SAME_DISTRIBUTION_Z,
                   f"targets' mean and spread, {n} samples per task at {size} px",
                   data=rows),
            Result(half, "measure", f"generator {same}: same seed, identical batches", None,
                   float(identical), f"of {len(TASK_NAMES)} tasks",
                   detail="one generator" if a.type == b.type else
                   "not expected: different generators (docs/benchmarks.md)")]


def _z(a: float, b: float, variance: float) -> float:
    """|a - b| in standard errors (0 when both are exactly equal constants)."""
    if variance <= 0:
        return 0.0 if a == b else math.inf
    return abs(a - b) / math.sqrt(variance)


def repeat_run(half: str, device: torch.device, model: str, size: int, batch: int, steps: int,
               limit: float) -> Result:
    """train() twice with one config on one device: the same losses and final predictions
    (exactly on the CPU; on CUDA within `limit`, cuDNN's kernels are not all deterministic)."""
    cfg = RunConfig(TaskConfig(name="distance", height=size, width=size),
                    ModelConfig(name=model),
                    TrainConfig(batch_size=batch, steps=steps, eval_every=steps, val_size=128,
                                bn_samples=64, log_every=1, lr=1e-3, device=str(device)))
    a, b = train(cfg), train(cfg)
    if a.status != "finished" or b.status != "finished":
        return Result(half, "check", f"{model}: train() twice on {device.type}", False,
                      detail=f"{a.status}/{b.status}: {a.reason or b.reason}")
    la = [r["loss"] for r in a.train_history]
    lb = [r["loss"] for r in b.train_history]
    d_loss = relative_difference(la, lb)
    d_pred = relative_difference(a.evaluation.predictions, b.evaluation.predictions)
    value = max(d_loss, d_pred)
    return Result(half, "check", f"{model}: train() twice on {device.type}, same seed",
                  within(value, limit), value, "rel.", limit,
                  f"{size} px, batch {batch}, {steps} steps; losses {d_loss:.1e}, "
                  f"predictions {d_pred:.1e}")


def compile_modes(half: str, device: torch.device, model: str, size: int, batch: int, *,
                  modes: tuple[str, ...], steps: int, warm: int, bf16: bool,
                  backend: str = "inductor") -> list[Result]:
    """The training step eager and under each torch.compile mode, on the same batches drawn
    on `device`: each mode must train like eager (check) and is timed (measure; the warm-up
    steps hold the compilation and, for reduce-overhead, the CUDA-graph recording)."""
    cfg = run_config(model, size, batch, lr=1e-4)
    # The first use of these kernels, so that it is not counted as eager's cost.
    train_copies(cfg, [Copy(device, bf16)], warm, draw_on="device")
    copies = [Copy(device, bf16)] + [Copy(device, bf16, compile=m, backend=backend)
                                     for m in modes]
    traces, skips = [], []
    for c in copies:  # one at a time (the same weights and batches each time): skips per copy
        before = _cudagraph_skips()
        traces += train_copies(cfg, [c], steps, draw_on="device", timed_from=warm)
        skips.append(None if before < 0 else _cudagraph_skips() - before)  # None: unknown
    eager = traces[0]
    limit = bf16_limit(model) if bf16 else FP32_LIMIT
    where = f"{size} px, batch {batch}, {'bf16' if bf16 else 'fp32'}"
    out = [Result(half, "measure", f"{model} eager step on {device.type}", None,
                  eager.samples_per_s, "samples/s",
                  detail=f"{where}; {steps - warm} steps timed after {warm}")]
    for c, t, skipped in zip(copies[1:], traces[1:], skips[1:], strict=True):
        d_loss, d_pred = differences(eager, t)
        value = max(d_loss, d_pred)
        mode = c.compile + (f" ({backend})" if backend != "inductor" else "")
        out.append(Result(half, "check", f"{model}: compile={mode} trains like eager",
                          within(value, limit), value, "rel.", limit,
                          f"{where}, {steps} steps; losses {d_loss:.1e}, "
                          f"predictions {d_pred:.1e}"))
        speedup = (t.samples_per_s / eager.samples_per_s
                   if t.samples_per_s and eager.samples_per_s else None)
        note = "; aot_eager runs the traced graph without generating code: not inductor's " \
               "speed" if backend != "inductor" else ""
        if c.compile == "reduce-overhead" and device.type == "cuda":
            note += ("; CUDA graphs used" if skipped == 0 else
                     "; whether CUDA graphs were used is unknown (no counter)" if skipped is None
                     else f"; CUDA graphs SKIPPED for {skipped} graph(s) (TORCH_LOGS=cudagraphs "
                     "says why)")
            # reduce-overhead is there for its CUDA graphs: without them it is only inductor.
            out.append(Result(half, "check" if skipped is not None else "measure",
                              f"{model}: reduce-overhead captured CUDA graphs",
                              None if skipped is None else skipped == 0,
                              None if skipped is None else float(skipped), "skipped graphs",
                              None if skipped is None else 0.0, where))
        out.append(Result(half, "measure", f"{model} compile={mode} step on {device.type}",
                          None, t.samples_per_s, "samples/s",
                          detail=(f"{where}; x{speedup:.2f} eager; warm-up (compile) "
                                  f"{t.warmup_s:.1f} s" if speedup else where) + note,
                          data={"speedup": speedup, "warmup_s": t.warmup_s,
                                "cudagraph_skips": skipped}))
    return out


def _cudagraph_skips() -> int:
    """Graphs inductor compiled without CUDA graphs so far (reduce-overhead falls back to plain
    inductor for a graph it cannot capture, saying why only under TORCH_LOGS=cudagraphs). An
    internal counter (torch._dynamo.utils.counters): -1 where this torch lacks it."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - another torch
        return -1
    return int(counters["inductor"]["cudagraph_skips"])


@contextmanager
def compile_backend(name: str) -> Iterator[None]:
    """train() compiles with `cnnprobe.engine.step.COMPILE_BACKEND`: `name` instead, for the
    block."""
    saved = engine_step.COMPILE_BACKEND
    engine_step.COMPILE_BACKEND = name
    try:
        yield
    finally:
        engine_step.COMPILE_BACKEND = saved


def compiled_train(half: str, device: torch.device, model: str, size: int, batch: int,
                   mode: str, *, steps: int, backend: str = "inductor") -> Result:
    """train() with train.compile=`mode` against train() eager, same config: the setting's
    whole path, with an evaluation half-way (the eager module, BatchNorm recalibrated,
    between compiled steps). Same losses and final predictions within the limit, and the
    same state_dict keys (checkpoints load whether or not the run was compiled)."""
    base = RunConfig(TaskConfig(name="distance", height=size, width=size),
                     ModelConfig(name=model),
                     TrainConfig(batch_size=batch, steps=steps, eval_every=max(1, steps // 2),
                                 val_size=256, bn_samples=256, log_every=max(1, steps // 10),
                                 lr=1e-4, device=str(device)))
    name = f"{model}: train() with compile={mode}" + (
        f" ({backend})" if backend != "inductor" else "") + " trains like eager"
    eager = train(base)
    with compile_backend(backend):
        comp = train(replace(base, train=replace(base.train, compile=mode)))
    if eager.status != "finished" or comp.status != "finished":
        return Result(half, "check", name, False,
                      detail=f"eager {eager.status}, compiled {comp.status}: "
                             f"{eager.reason or comp.reason}")
    d_loss = relative_difference([r["loss"] for r in eager.train_history],
                                 [r["loss"] for r in comp.train_history])
    d_pred = relative_difference(eager.evaluation.predictions, comp.evaluation.predictions)
    same_keys = list(eager.model.state_dict()) == list(comp.model.state_dict())
    value = max(d_loss, d_pred)
    limit = bf16_limit(model) if device.type == "cuda" else FP32_LIMIT
    return Result(half, "check", name, within(value, limit) and same_keys, value, "rel.", limit,
                  f"{size} px, batch {batch}, {steps} steps, evaluation at {steps // 2}; "
                  f"losses {d_loss:.1e}, predictions {d_pred:.1e}"
                  + ("" if same_keys else "; state_dict keys differ"),
                  data={"seconds": [eager.wall_time_s, comp.wall_time_s]})
