"""`plaincnn`: a plain conv stack whose downsampling can be switched, to ask the notebook's
question "does pooling put a limit on the performance of the model?".

Layout: `depth` blocks of Conv3x3(padding 1) -> BatchNorm -> ReLU. Every block is followed
by one halving of the resolution chosen by `pool`:

- max:    MaxPool2d(2) after the block
- avg:    AvgPool2d(2) after the block
- stride: the block's conv has stride 2 instead of a pooling layer
- none:   no downsampling; the whole stack runs at full resolution

So max, avg and stride see feature maps of identical sizes and differ only in how they
downsample. Pools use ceil_mode (and the strided conv its padding) so odd sizes keep their
last row and column. Then a global max or avg pool (`global_pool`) and an MLP head.

Channels: `width` in the first block, doubled after every halving (so each block costs
about the same), capped at max(width, 256) to keep deep stacks small. With pool=none the
width stays constant, since doubling channels at full resolution would be costly.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnprobe.config import ModelConfig
from cnnprobe.models.head import ProbeModel, RegressionHead
from cnnprobe.models.spec import (  # noqa: F401 - re-exported
    CHANNEL_CAP,
    block_channels,
    plaincnn_batch1_min_size,
    plaincnn_floats_per_pixel,
    plaincnn_min_size,
)

HEAD_HIDDEN = (128,)


class PlainCNN(ProbeModel):
    """Conv-BN-ReLU blocks with switchable downsampling, a global pool and an MLP head."""

    def __init__(self, in_channels: int, depth: int = 4, width: int = 32, pool: str = "max",
                 global_pool: str = "max", head_hidden: tuple[int, ...] = HEAD_HIDDEN,
                 input_norm: str = "none"):
        if pool not in ("max", "avg", "stride", "none"):
            raise ValueError(f"unknown pool {pool!r}")
        if global_pool not in ("max", "avg"):
            raise ValueError(f"unknown global_pool {global_pool!r}")
        super().__init__(in_channels, plaincnn_min_size(depth, pool), input_norm)
        self.pool = pool
        self.global_pool = global_pool
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in block_channels(depth, width, pool):
            stride = 2 if pool == "stride" else 1
            # No conv bias: the BatchNorm right after it has its own shift.
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if pool == "max":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            elif pool == "avg":
                layers.append(nn.AvgPool2d(2, ceil_mode=True))
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.head = RegressionHead(c_in, hidden=head_hidden, activation=nn.ELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image, shape (B,) float32."""
        h = self.blocks(self.prepare_input(x))
        h = h.amax(dim=(2, 3)) if self.global_pool == "max" else h.mean(dim=(2, 3))
        return self.head(h)


def build_plaincnn(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder: depth, width, pool and global_pool come from the model config."""
    return PlainCNN(in_channels, depth=cfg.depth, width=cfg.width, pool=cfg.pool,
                    global_pool=cfg.global_pool, input_norm=cfg.input_norm)
