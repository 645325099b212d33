"""The output end shared by every model: an fp32 regression head and the input contract.

Every network in the registry maps (B, C, H, W) images to (B,) float32 predictions.
The head is where that number is made, and it is always computed in fp32, even when
the trainer runs the backbone under bf16 autocast: bf16 keeps 8 mantissa bits, so a
prediction near 150 px could only move in 1-px steps (128..256 are spaced by 1), which
would swamp the sub-pixel errors this lab is trying to measure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn


def fp32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Context in which autocast is off for `device_type`, so ops run in their inputs' dtype."""
    if torch.amp.is_autocast_available(device_type):
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


class ProbeModel(nn.Module):
    """Base of every registry model: knows its smallest input and checks what it is given."""

    def __init__(self, in_channels: int, min_size: int):
        super().__init__()
        self.in_channels = in_channels
        self.min_size = min_size

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
