"""Training copies of one run, side by side: the same initial weights and the same batches,
each copy on its own device, precision or compile mode, through the trainer's own step
(`cnnprobe.engine.step.TrainStep`). What the checks compare and the compile measures time."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnprobe.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from cnnprobe.engine.step import COMPILE_BACKEND, TrainStep, wants_channels_last
from cnnprobe.engine.train import LOSSES, fit_input_norm, make_optimizer
from cnnprobe.models import build_model, validate_run
from cnnprobe.tasks import make_generator, make_task, stream_seed

from .results import relative_difference

EVAL_SAMPLES = 256  # fixed validation images every copy's final weights are scored on


@dataclass(frozen=True)
class Copy:
    """One way of running the same training."""

    device: torch.device
    bf16: bool = False  # autocast to bf16 (the engine does so on CUDA; here on any device)
    compile: str = "off"
    backend: str = COMPILE_BACKEND
    channels_last: str = "auto"

    @property
    def label(self) -> str:
        parts = [self.device.type, "bf16" if self.bf16 else "fp32"]
        if self.compile != "off":
            parts.append(f"compile={self.compile}" + (
                f"/{self.backend}" if self.backend != "inductor" else ""))
        return " ".join(parts)


@dataclass
class Trace:
    """What one copy did: its loss at every step, and its final weights' predictions (in fp32
    on the CPU, so only the training differs between copies, not the scoring)."""

    losses: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray  # the validation images' targets: the scale a prediction is read on
    samples_per_s: float | None = None  # over the timed steps
    warmup_s: float = 0.0  # the steps before them: compilation, CUDA-graph recording


def run_config(model: str, size: int, batch: int, *, task: str = "distance", lr: float = 1e-3,
               seed: int = 0) -> RunConfig:
    """A validated config of `model` on `task` at size x size (auto settings resolved)."""
    cfg = RunConfig(TaskConfig(name=task, height=size, width=size), ModelConfig(name=model),
                    TrainConfig(batch_size=batch, lr=lr, seed=seed, device="cpu"))
    return validate_run(cfg, memory=False)


def initial_model(cfg: RunConfig) -> nn.Module:
    """The run's initial weights as train() makes them, input normalisation fitted on the CPU."""
    task = make_task(cfg.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(cfg.train.seed, "init"))
        model = build_model(cfg.model, task.in_channels)
    fit_input_norm(model, task, cfg.train.seed, torch.device("cpu"))
    return model


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off while fp32 arithmetic is compared across devices.

    cuDNN convolutions use TF32 by default on Ampere and later GPUs (10-bit mantissa), so a
    "fp32" run there is partly TF32; the comparison is of fp32 itself.
    https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices
    Only the older flags are touched: torch refuses to read them once the newer
    `fp32_precision` API has set conv and matmul differently.
    """
    if device.type != "cuda":
        yield
        return
    # cuDNN's fastest fp32 algorithms (Winograd, FFT) differ from a direct convolution by
    # more than the CPU's threads do: deterministic algorithms for the comparison.
    # https://pytorch.org/docs/stable/notes/randomness.html#cuda-convolution-determinism
    cudnn = torch.backends.cudnn
    saved = cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic
    cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.deterministic = True
    try:
        yield
    finally:
        cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, cudnn.deterministic = saved


def _autocast(c: Copy) -> AbstractContextManager:
    # On CUDA this is the engine's own autocast_for(device, amp=True).
    # https://pytorch.org/docs/stable/amp.html#torch.autocast
    return torch.autocast(c.device.type, dtype=torch.bfloat16) if c.bf16 else nullcontext()


class _Timer:
    """Wall time of the steps between start() and stop(), as the device sees it: CUDA events
    recorded on the stream (https://pytorch.org/docs/stable/generated/torch.cuda.Event.html),
    perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.cuda:
            self.begin.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()  # waits for the steps: the one sync of the timed stretch
            return self.begin.elapsed_time(self.end) / 1000.0
        return time.perf_counter() - self.t0


def train_copies(cfg: RunConfig, copies: list[Copy], steps: int, *, draw_on: str = "cpu",
                 timed_from: int | None = None) -> list[Trace]:
    """Train every copy `steps` steps from the same initial weights on the same batches.

    draw_on="cpu": the batches are drawn once on the CPU and copied to each copy's device
    (CPU and CUDA generators are different streams, so this is how two devices see the same
    data). draw_on="device": each copy draws on its own device from a generator seeded alike
    (same device, same seed: the same batches), which keeps big batches off the host.
    With `timed_from`, the steps from that one on are timed (Trace.samples_per_s).
    """
    task = make_task(cfg.task)
    seed, batch = cfg.train.seed, cfg.train.batch_size
    base = initial_model(cfg)
    held = task.sample(EVAL_SAMPLES, make_generator(seed, "cpu", "val"))
    host: list[tuple[torch.Tensor, torch.Tensor]] = []
    if draw_on == "cpu":
        g = make_generator(seed, "cpu", "train")
        host = [(b.images, b.targets) for b in (task.sample(batch, g) for _ in range(steps))]
        if any(c.device.type == "cuda" for c in copies):
            # Page-locked memory lets each copy below be an asynchronous DMA; from pageable
            # memory non_blocking=True silently copies synchronously.
            # https://pytorch.org/tutorials/intermediate/pinmem_nonblock.html
            host = [(x.pin_memory(), y.pin_memory()) for x, y in host]
    traces = []
    for c in copies:
        model = copy.deepcopy(base).to(c.device)
        cl = wants_channels_last(model, c.device, c.channels_last)
        if cl:
            model.to(memory_format=torch.channels_last)
        step = TrainStep(model, make_optimizer(cfg, model.parameters()),
                         LOSSES[cfg.train.loss](), c.device, channels_last=cl,
                         compile=c.compile, backend=c.backend, autocast=lambda c=c: _autocast(c))
        if draw_on == "cpu":
            source = ((x.to(c.device, non_blocking=True), y.to(c.device, non_blocking=True))
                      for x, y in host)
        else:
            stream = task.stream(batch, make_generator(seed, c.device, "train"))
            source = ((b.images, b.targets) for b in stream)
        model.train()
        timer, losses = _Timer(c.device), []
        t_start = time.perf_counter()
        warmup_s = 0.0
        with strict_fp32(c.device) if not c.bf16 else nullcontext():
            for i in range(steps):
                if i == timed_from:
                    if c.device.type == "cuda":
                        torch.cuda.synchronize(c.device)
                    warmup_s = time.perf_counter() - t_start
                    timer.start()
                x, y = next(source)
                losses.append(step(x, y))
            elapsed = timer.stop() if timed_from is not None and timed_from < steps else None
        rate = (steps - timed_from) * batch / elapsed if elapsed else None
        traces.append(Trace(torch.stack(losses).float().cpu().numpy(),
                            _predict_cpu(model, held.images), held.targets.numpy(), rate,
                            warmup_s))
        del step, model
    return traces


def differences(a: Trace, b: Trace) -> tuple[float, float]:
    """How far two copies ended apart: their loss curves (relative L2), and their final
    predictions as a fraction of the labels' size (||pred_a - pred_b|| / ||labels||: a
    prediction of a distance is read against the distance, not against itself, which is
    near zero in a fresh network)."""
    d_loss = relative_difference(a.losses, b.losses)
    if not (np.isfinite(a.predictions).all() and np.isfinite(b.predictions).all()):
        return d_loss, float("inf")
    scale = float(np.linalg.norm(a.labels.astype(np.float64)))
    d_pred = float(np.linalg.norm(a.predictions.astype(np.float64) - b.predictions)) / scale
    return d_loss, d_pred


@torch.no_grad()
def _predict_cpu(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    # In training mode, BatchNorm normalising with the batch's own statistics: after a few
    # steps the running statistics are still near their initial values, and eval-mode
    # outputs made with them magnify small differences between the copies.
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).train()
    return model(x).float().numpy()
