"""The output end shared by every model: an fp32 regression head and the input contract.

Every network in the registry maps (B, C, H, W) images to (B,) float32 predictions.
The head is where that number is made, and it is always computed in fp32, even when
the trainer runs the backbone under bf16 autocast: bf16 keeps 8 mantissa bits, so a
prediction near 150 px could only move in 1-px steps (128..256 are spaced by 1), which
would swamp the sub-pixel errors this lab is trying to measure.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import nn

# Asked once, outside any traced code: torch 2.11's dynamo cannot trace
# `torch._C._is_autocast_available` and broke the compiled graph at every fp32 region (seen on
# an H200, bench/gpu_check.py: recompile_limit hit in seednet and the head). A set lookup traces.
_AUTOCAST_TYPES = frozenset(t for t in ("cpu", "cuda", "xpu", "mps", "hpu", "mtia", "xla")
                            if torch.amp.is_autocast_available(t))


def fp32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Context in which autocast is off for `device_type`, so ops run in their inputs' dtype."""
    if device_type in _AUTOCAST_TYPES:
        return torch.autocast(device_type=device_type, enabled=False)
    # Device types without autocast (meta, ...) cannot be inside an autocast region anyway.
    return contextlib.nullcontext()


class RegressionHead(nn.Module):
    """Feature vector (B, F) -> prediction (B,), computed in fp32 whatever autocast says.

    `hidden` gives the sizes of optional hidden layers (an MLP with `activation` between
    layers); with no hidden sizes the head is a single Linear(F, 1), like the notebook's
    `resnet.fc = nn.Linear(512, 1)`.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (),
                 activation: type[nn.Module] = nn.ELU):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.in_features = in_features
        self.mlp = nn.Sequential(*layers)

    @torch.no_grad()
    def set_output_bias(self, value: float) -> None:
        """Start the prediction at `value` (the training labels' mean; see
        train.fit_output_bias): the head's last bias."""
        self.mlp[-1].bias.fill_(value)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return one fp32 prediction per row of `features`."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"RegressionHead expects (B, {self.in_features}) features, "
                             f"got {tuple(features.shape)}")
        with fp32_region(features.device.type):
            out = self.mlp(features.float())
        # squeeze(1), not squeeze(): a batch of one must stay shape (1,), not become a scalar
        # (the notebook's torch.squeeze did exactly that).
        return out.squeeze(1)


# torchvision's ImageNet normalisation (RGB); a 1-channel input gets the channels' mean.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputNorm(nn.Module):
    """The model's first layer: (x - mean) / std per channel, with mean and std buffers.

    Being part of the model, it runs identically wherever the model runs (training,
    evaluation, sweeps, inspection, probes) and its statistics are saved in every
    checkpoint. `kind` "imagenet" holds ImageNet's constants; "task" starts at the
    identity and gets the task's own per-channel statistics from `fit()` before training.
    """

    def __init__(self, channels: int, kind: str):
        super().__init__()
        if kind not in ("task", "imagenet"):
            raise ValueError(f"unknown input normalisation {kind!r}")
        self.kind = kind
        mean, std = torch.zeros(channels), torch.ones(channels)
        if kind == "imagenet":
            m, s = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            mean, std = (m, s) if channels == 3 else (m.mean().repeat(channels),
                                                      s.mean().repeat(channels))
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Set mean and std to the per-channel statistics of all images in `batches` (each
        (B, C, H, W); chunks keep memory at one batch); a channel that is constant keeps
        std 1, so it is only centred."""
        def flat(images: torch.Tensor) -> torch.Tensor:
            return images.float().transpose(0, 1).reshape(images.shape[1], -1)

        it = iter(batches)
        first = next(it, None)
        if first is None:
            raise ValueError("InputNorm.fit needs at least one batch")
        second = next(it, None)
        if second is None:  # one batch (every size to 128 px): float32, as runs so far had
            x = flat(first)
            mean, std = x.mean(1), x.std(1, correction=0)
        else:  # chunks, one in memory at a time: exact float64 sums
            total = squares = 0.0
            count = 0
            for images in itertools.chain((first, second), it):
                x = flat(images).double()
                total, squares = total + x.sum(1), squares + (x * x).sum(1)
                count += x.shape[1]
            mean = total / count
            std = (squares / count - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the same, normalised per channel."""
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, channels={self.mean.numel()}"


class ProbeModel(nn.Module):
    """Base of every registry model: knows its smallest input, checks what it is given and
    applies its input normalisation (`input_norm`: "none", "task" or "imagenet")."""

    def __init__(self, in_channels: int, min_size: int, input_norm: str = "none"):
        super().__init__()
        self.in_channels = in_channels
        self.min_size = min_size
        # Registered first, so it is the first layer in named_modules() and state dicts.
        self.input_norm = None if input_norm == "none" else InputNorm(in_channels, input_norm)

    @property
    def input_norm_kind(self) -> str:
        return "none" if self.input_norm is None else self.input_norm.kind

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check the batch (see check_input) and return it normalised for the network."""
        self.check_input(x)
        return x if self.input_norm is None else self.input_norm(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError with a readable message for a wrongly shaped input batch."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_channels}, H, W) "
                             f"images, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h < self.min_size or w < self.min_size:
            # Below min_size some layer would pool an empty or degenerate map; say so here
            # instead of letting torch fail (or silently succeed) deep inside.
            raise ValueError(f"{type(self).__name__} needs images of at least "
                             f"{self.min_size}x{self.min_size}, got {h}x{w}")
