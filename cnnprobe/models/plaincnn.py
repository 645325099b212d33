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

CHANNEL_CAP = 256
HEAD_HIDDEN = (128,)


def block_channels(depth: int, width: int, pool: str) -> list[int]:
    """Output channels of each block (see the module docstring for the rule)."""
    if pool == "none":
        return [width] * depth
    cap = max(width, CHANNEL_CAP)
    return [min(width * 2**i, cap) for i in range(depth)]


def plaincnn_min_size(depth: int, pool: str) -> int:
    """Smallest input side: every halving must have at least 2 pixels to halve; without
    downsampling any size works."""
    return 1 if pool == "none" else 2**depth


def plaincnn_batch1_min_size(depth: int, pool: str) -> int:
    """Smallest max(H, W) at which training with a batch of one works: every BatchNorm needs
    more than one value per channel. With stride the last BatchNorm comes after the last
    halving, so at exactly 2**depth square it would see a 1x1 map; so would pool=none at 1x1.
    Max and avg pool after the BatchNorm, which therefore always sees at least 2x2."""
    if pool == "stride":
        return 2**depth + 1
    if pool == "none":
        return 2
    return 2**depth


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


def plaincnn_floats_per_pixel(cfg: ModelConfig) -> float:
    """Rough fp32 values per input pixel per sample while training: what autograd keeps for
    backward (per block the conv output, the BN/ReLU output, and for max pooling its int64
    indices, plus the pooled map the next conv reads), times 1.5 for the gradients alive
    during backward, plus the input batch. Checked against saved-tensor hooks in the tests."""
    saved = 0.0
    area = 1.0  # resolution of the block's input, relative to the image
    for c in block_channels(cfg.depth, cfg.width, cfg.pool):
        if cfg.pool == "stride":
            area /= 4
            saved += 2 * c * area  # conv and BN outputs, both at the halved size
        elif cfg.pool == "none":
            saved += 2 * c * area
        else:
            indices = 2 * c * area / 4 if cfg.pool == "max" else 0.0  # int64 = 2 floats
            saved += 2 * c * area + c * area / 4 + indices
            area /= 4
    return 1.5 * saved + 3.0
