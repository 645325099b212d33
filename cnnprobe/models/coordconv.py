"""`coordconv`: CoordConv after Liu et al. 2018, "An intriguing failing of convolutional
neural networks and the CoordConv solution".

A plain convolution is translation-equivariant, so it cannot tell where in the image it
is; CoordConv appends the pixel's own x and y coordinates (scaled to [-1, 1]) as extra
input channels before every convolution, so any layer can read positions directly.

Layout: `depth` CoordConv layers (AddCoords -> Conv3x3 padding 1 -> ReLU) of `width`
channels. By default every second layer (the 2nd, 4th, ...) has stride 2: at 128x128 and
batch 512 a full-resolution stack would hold several GiB of activations, and because the
coordinates are re-added after each halving, downsampling does not hide positions the way
it can in a plain CNN. `downsample=False` keeps full resolution. Then global max and global
average pooling are concatenated (max finds a marker, avg keeps a sense of extent) and an
MLP head regresses the answer.

Initialisation: He (Kaiming normal for ReLU, biases zero) in every conv and hidden head
layer, the output layer's weights zero and its bias at the training labels' mean (the
trainer sets it: `output_bias_from_labels`, train.fit_output_bias). With PyTorch's
default init and no normalisation the signal shrank layer by layer: the first output was
0 +- 0.003 against labels of 17 +- 8 px (distance, 32 px), and the run stayed at the mean
guess for hundreds of steps (docs/measurement.md, "Why coordconv was slow to start").
"""

from __future__ import annotations

import torch
from torch import nn

from cnnprobe.config import ModelConfig
from cnnprobe.models.head import ProbeModel, RegressionHead
from cnnprobe.models.spec import coordconv_floats_per_pixel, coordconv_min_size  # noqa: F401

HEAD_HIDDEN = (128,)


class AddCoords(nn.Module):
    """Append x and y coordinate channels in [-1, 1] (and optionally a radius channel).

    The coordinates are made for the actual input size on every call, so the layer works
    at any resolution; x runs along the width, y along the height. The radius channel is
    the distance from the image centre, sqrt(x^2 + y^2) in the same units (0 to sqrt(2)).
    """

    def __init__(self, with_radius: bool = False):
        super().__init__()
        self.with_radius = with_radius

    @property
    def extra_channels(self) -> int:
        """How many channels this layer adds."""
        return 3 if self.with_radius else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C + 2 or 3, H, W)."""
        b, _, h, w = x.shape
        # linspace(-1, 1, 1) is [-1]; a one-pixel axis gets the centre (0) instead.
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype) if w > 1 else \
            torch.zeros(1, device=x.device, dtype=x.dtype)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype) if h > 1 else \
            torch.zeros(1, device=x.device, dtype=x.dtype)
        xx = xs.view(1, 1, 1, w).expand(b, 1, h, w)
        yy = ys.view(1, 1, h, 1).expand(b, 1, h, w)
        parts = [x, xx, yy]
        if self.with_radius:
            parts.append(torch.sqrt(xx * xx + yy * yy))
        return torch.cat(parts, dim=1)


class CoordConv2d(nn.Module):
    """AddCoords followed by a Conv2d that takes the extra channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, with_radius: bool = False):
        super().__init__()
        self.add_coords = AddCoords(with_radius)
        self.conv = nn.Conv2d(in_channels + self.add_coords.extra_channels, out_channels,
                              kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve the input together with its coordinate channels."""
        return self.conv(self.add_coords(x))


class CoordConvNet(ProbeModel):
    """`depth` CoordConv+ReLU layers, global max+avg pooling, MLP head."""

    def __init__(self, in_channels: int, depth: int = 4, width: int = 32,
                 downsample: bool = True, with_radius: bool = False,
                 head_hidden: tuple[int, ...] = HEAD_HIDDEN, input_norm: str = "none"):
        super().__init__(in_channels, coordconv_min_size(depth, downsample), input_norm)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(depth):
            stride = 2 if downsample and i % 2 == 1 else 1
            layers += [CoordConv2d(c_in, width, 3, stride=stride, padding=1,
                                   with_radius=with_radius),
                       nn.ReLU(inplace=True)]
            c_in = width
        self.layers = nn.Sequential(*layers)
        self.head = RegressionHead(2 * width, hidden=head_hidden, activation=nn.ELU)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # The output layer starts at zero: the first prediction is its bias, the labels'
        # mean, in any units (He-scaled, it would add noise of SD ~2 whatever the labels').
        nn.init.zeros_(self.head.mlp[-1].weight)

    # The trainer starts the head's output at the training labels' mean (fit_output_bias).
    output_bias_from_labels = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image, shape (B,) float32."""
        h = self.layers(self.prepare_input(x))
        pooled = torch.cat((h.amax(dim=(2, 3)), h.mean(dim=(2, 3))), dim=1)
        return self.head(pooled)


def build_coordconv(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder: depth and width from the config; stride 2 every second layer."""
    return CoordConvNet(in_channels, depth=cfg.depth, width=cfg.width,
                        input_norm=cfg.input_norm)
