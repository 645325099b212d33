"""One training step as the trainer runs it, and the options that make it fast.

A step is: the input in the model's memory format, the forward under autocast (bf16 on
CUDA; the regression head and the loss stay fp32), backward, the optimizer's update. The
loss comes back as a tensor on the device and is never read here: reading it syncs a GPU,
which the trainer does only every `log_every` steps. `bench/gpu_check.py` drives this same
class to compare devices, precisions and compile modes on identical batches.

No host tensor crosses to the device inside the step loop: the task draws each batch on
the run's device with its own generator, into one reused buffer (`ProbeTask.stream`), and
builds no tensor from Python values while it does (`tests/test_tasks.py`; until 2026-12-02
`shapes.randint` did, a blocking copy per call). Unconfirmed on a GPU so far: that is
`bench/gpu_check.py`'s sync check.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from cnnprobe.engine.evaluate import autocast_for

# torch.compile's own default. bench/gpu_check.py's CPU half swaps in "aot_eager" for the
# length of its checks: it traces and differentiates the same graph in seconds, where
# inductor builds C++ for a minute on a small CPU.
COMPILE_BACKEND = "inductor"


def uses_spatial_convs(model: nn.Module) -> bool:
    """Whether any convolution has a kernel larger than 1x1 (where channels-last can pay)."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules())


def wants_channels_last(model: nn.Module, device: torch.device, setting: str) -> bool:
    """`train.channels_last`: on, off, or auto (CUDA and a model with spatial convolutions:
    cuDNN's NHWC kernels skip the layout transposes, and bf16 tensor cores want NHWC).
    https://pytorch.org/tutorials/intermediate/memory_format_tutorial.html"""
    if setting == "auto":
        return device.type == "cuda" and uses_spatial_convs(model)
    return setting == "on"


def step_forward(model: nn.Module, mode: str, backend: str | None = None
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward the training step calls: the module itself, or torch.compile's wrapper.

    torch.compile(model) wraps without changing the module: the wrapper shares its
    parameters, `model` still runs eagerly (evaluation does, at other batch sizes and in
    eval mode, which would otherwise recompile) and its state_dict keys stay as they are,
    so checkpoints load without `_orig_mod.` prefixes.
    https://pytorch.org/docs/stable/generated/torch.compile.html
    "reduce-overhead" is inductor plus CUDA graphs (CUDAGraph Trees): one launch replays the
    whole forward, and the backward as another, which pays where a step is launch-bound
    (seednet: dozens of tiny kernels). https://pytorch.org/docs/stable/torch.compiler_cudagraph_trees.html
    """
    if mode == "off":
        return model
    backend = backend or COMPILE_BACKEND
    # `mode` is inductor's: other backends (aot_eager, for a quick CPU check) ignore it.
    # dynamic=False: a run's shapes are fixed (one batch size, one resolution), so always
    # specialise rather than let a second shape turn on dynamic shapes ("automatic dynamic",
    # kept per code object across compiles in one process).
    return torch.compile(model, mode=mode if backend == "inductor" else None, backend=backend,
                         dynamic=False)


class TrainStep:
    """forward, loss in fp32, backward, update; returns the detached loss, still on the device.

    `autocast` replaces the device's autocast (e.g. bf16 on the CPU, for a check); by default
    it is `autocast_for(device, amp)`: bf16 on CUDA, nothing on the CPU.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 device: torch.device, *, amp: bool = True, channels_last: bool = False,
                 compile: str = "off", backend: str | None = None,
                 autocast: Callable[[], AbstractContextManager[Any]] | None = None):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.channels_last = channels_last
        backend = backend or COMPILE_BACKEND
        self.forward = step_forward(model, compile, backend)
        # With CUDA graphs, each step is a new iteration of the graph tree: outputs of the
        # last one may be overwritten. Said explicitly rather than left to the heuristic.
        # https://pytorch.org/docs/stable/generated/torch.compiler.cudagraph_mark_step_begin.html
        self.graphs = compile == "reduce-overhead" and backend == "inductor"
        self.autocast = autocast or (lambda: autocast_for(device, amp))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast():
            pred = self.forward(x)
        loss = self.loss_fn(pred.float(), y)  # the loss stays in fp32
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
