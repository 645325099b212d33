"""The CoordConv paper's own regressors, beside the lab's models (Liu et al. 2018, "An
intriguing failing of convolutional neural networks and the CoordConv solution"; public
code: uber-research/CoordConv, `model_builders.py`, class `ConvRegressor`).

`coordconv_paper` is its `coordconv` model: the coordinate channels (x and y in [-1, 1])
added once, at the input; three 1x1 and two 3x3 convolutions (8 channels, then one per
target value; the paper's two, x and y) with NO activation between them (its
`tf.layers.Conv2D` keeps the default `activation=None`), and one global max pool over the
whole image. No MLP head: the pooled maps are the answer. Weights He-normal (truncated at
two SDs, as Keras' `he_normal`), biases zero. About 900 parameters.

`conv_paper` is its conv baseline on the quadrant split (`conv_quarant`, `big_conv2`):
strided 5x5 then 1x1/3x3 convolutions of 16 channels with ReLU, five halvings in all, two
BatchNorms, a last 3x3 convolution to the targets, ReLU, and a global average pool (so its
outputs are never negative, as in the paper). The paper's uniform-split baseline
(`big_conv`: three max-pooled 3x3 convs, then Flatten and Dense(64)) needs a fixed input
size and is not built here. Padding is PyTorch's symmetric padding where TensorFlow's
'same' pads the bottom/right row more at stride 2.

Both compute in fp32 whatever autocast says (there is no separate head to keep in fp32).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnprobe.config import ModelConfig
from cnnprobe.models.coordconv import AddCoords
from cnnprobe.models.head import ProbeModel, fp32_region
from cnnprobe.models.spec import CONV_PAPER_MIN_SIZE

PAPER_WIDTH = 8  # coordconv_paper's channels
BASELINE_WIDTH = 16  # conv_paper's channels (the paper's 16 * mul, mul = 1)


def he_normal_(module: nn.Module) -> None:
    """Keras' he_normal: a normal of SD sqrt(2 / fan_in) truncated at two SDs; bias zero."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            std = math.sqrt(2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _Squeezed(ProbeModel):
    """An output of (B, outputs): (B,) for one target value, as every registry model."""

    def __init__(self, in_channels: int, min_size: int, input_norm: str, outputs: int):
        super().__init__(in_channels, min_size, input_norm)
        self.outputs = outputs

    def _answer(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled.squeeze(1) if self.outputs == 1 else pooled


class CoordConvPaper(_Squeezed):
    """AddCoords once, 1x1 x3 and 3x3 x2 linear convs, global max pool."""

    def __init__(self, in_channels: int, outputs: int = 1, width: int = PAPER_WIDTH,
                 input_norm: str = "none"):
        super().__init__(in_channels, 1, input_norm, outputs)
        self.add_coords = AddCoords()
        c = in_channels + self.add_coords.extra_channels
        self.convs = nn.Sequential(
            nn.Conv2d(c, width, 1), nn.Conv2d(width, width, 1), nn.Conv2d(width, width, 1),
            nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, outputs, 3, padding=1))
        he_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image per output, fp32."""
        x = self.prepare_input(x)
        with fp32_region(x.device.type):
            h = self.convs(self.add_coords(x.float()))
            return self._answer(h.amax(dim=(2, 3)))


class ConvPaper(_Squeezed):
    """The paper's quadrant-split conv baseline: strided convs, two BatchNorms, global mean."""

    def __init__(self, in_channels: int, outputs: int = 1, width: int = BASELINE_WIDTH,
                 input_norm: str = "none"):
        super().__init__(in_channels, CONV_PAPER_MIN_SIZE, input_norm, outputs)
        w = width

        def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)

        self.convs = nn.Sequential(
            conv(in_channels, w, 5, 2), nn.ReLU(),
            conv(w, w, 1), nn.ReLU(),
            nn.BatchNorm2d(w, momentum=0.1, eps=1e-5),  # Keras momentum 0.9 = torch 0.1
            conv(w, w, 3), nn.ReLU(),
            conv(w, w, 3, 2), nn.ReLU(),
            conv(w, w, 3, 2),
            nn.BatchNorm2d(w, momentum=0.1, eps=1e-5), nn.ReLU(),
            conv(w, w, 3, 2), nn.ReLU(),
            conv(w, w, 1), nn.ReLU(),
            conv(w, w, 3, 2), nn.ReLU(),
            conv(w, outputs, 3), nn.ReLU())
        he_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image per output, fp32."""
        x = self.prepare_input(x)
        with fp32_region(x.device.type):
            return self._answer(self.convs(x.float()).mean(dim=(2, 3)))


def build_coordconv_paper(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder: the paper's architecture; depth and width do not apply."""
    return CoordConvPaper(in_channels, input_norm=cfg.input_norm)


def build_conv_paper(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder: the paper's quadrant baseline; depth and width do not apply."""
    return ConvPaper(in_channels, input_norm=cfg.input_norm)
