"""The seed notebook's `Net` (`seednet`) and its resolution-free sibling (`coordmlp`).

Both read the two coordinate channels the distance task provides (channel 1 = x / (W + 1)
along the width, channel 2 = y / (H + 1) along the height) through a fixed 1x1 "preconv"
that adds the marker channel to each coordinate channel. Global max then finds the +1
marker A and global min the -1 marker B, so the four features are A's and B's positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnprobe.config import ModelConfig
from cnnprobe.models.head import ProbeModel, RegressionHead, fp32_region

# The notebook's hand-set preconv: output 0 = marker + x channel, output 1 = marker + y.
PRECONV_WEIGHT = ((1.0, 1.0, 0.0), (1.0, 0.0, 1.0))
NOTEBOOK_SCALE = 128.0  # the notebook's hard-coded image size, baked into its features
COORD_CHANNELS = 3  # marker, x, y


def init_notebook_preconv(conv: nn.Conv2d) -> None:
    """Set a Conv2d(3, 2, 1) to the notebook's fixed weights (rows [1,1,0], [1,0,1]; bias 0)."""
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(PRECONV_WEIGHT).view(2, 3, 1, 1))
        conv.bias.zero_()


def marker_extremes(preconv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_max, x_min) as the notebook computed them: per-channel max of preconv(x)
    and max of its negation (so x_min is minus the true minimum), each (B, 2).

    Same numbers and gradients as `preconv` followed by `max(dim)`, computed faster: the
    1x1 conv runs as one einsum without autograd to find each channel's extreme pixel, and
    only those pixels go through the differentiable 1x1 conv again. A max sends its whole
    gradient to the first maximal pixel (not amax's split on ties), and so does this. On a
    CPU the plain conv and the backward of a full-image max (a fresh image-sized gradient)
    cost about five times as much.
    """
    b, c = x.shape[:2]
    flat = x.float().reshape(b, c, -1)
    w = preconv.weight.view(preconv.out_channels, c)
    with torch.no_grad():
        y = torch.einsum("oc,bcn->bon", w, flat)  # (B, 2, HW); bias moves no extreme
        at_max, at_min = y.argmax(2), y.argmin(2)  # first extreme pixel, as max(dim) picks

    def conv_at(idx: torch.Tensor) -> torch.Tensor:
        # (B, C, 2): the input pixel under each output channel's extreme.
        px = flat.gather(2, idx[:, None, :].expand(b, c, idx.shape[1]))
        return torch.einsum("oc,bco->bo", w, px) + preconv.bias

    return conv_at(at_max), -conv_at(at_min)


class SeedNet(ProbeModel):
    """The notebook's `Net`, layer for layer, with the notebook's attribute names.

    What actually ran in the notebook: `net.preconv1.requires_grad_ = False` assigned an
    attribute and froze nothing, so the preconv trains by default; `freeze_preconv=True`
    really freezes it.
    """

    def __init__(self, freeze_preconv: bool = False):
        super().__init__(in_channels=COORD_CHANNELS, min_size=1)
        self.preconv1 = nn.Conv2d(3, 2, 1)
        self.fc1 = nn.Linear(4, 128)
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = nn.Linear(128, 128)
        self.fc4 = nn.Linear(128, 128)
        self.fc5 = nn.Linear(128, 128)
        self.fc6 = nn.Linear(128, 128)
        self.fc7 = nn.Linear(128, 128)
        self.fc8 = nn.Linear(128, 1)
        init_notebook_preconv(self.preconv1)
        if freeze_preconv:
            self.preconv1.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The four numbers fed to fc1: (xa, ya, xb, yb) * 128 / (size + 1) on notebook input."""
        with fp32_region(x.device.type):
            x_max, x_min = marker_extremes(self.preconv1, x)
            x_max = (x_max - 1) * NOTEBOOK_SCALE
            x_min = (-x_min + 1) * NOTEBOOK_SCALE
            return torch.cat((x_max, x_min), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image, shape (B,) float32."""
        self.check_input(x)
        # All of it in fp32: the features are sub-pixel coordinates near 1.0, where bf16's
        # spacing (1/128) is already a whole pixel at 128 px; the fc stack is the head.
        with fp32_region(x.device.type):
            h = self.features(x)
            for fc in (self.fc1, self.fc2, self.fc3, self.fc4, self.fc5, self.fc6, self.fc7):
                h = F.elu(fc(h))
            return self.fc8(h).squeeze(1)


class CoordMLP(ProbeModel):
    """Seednet without the baked-in 128: features are the markers' normalized coordinates.

    x / (W + 1) and y / (H + 1) lie in [0, 1) at every resolution, so trained on normalized
    targets the same weights answer at any image size.
    """

    def __init__(self, hidden: tuple[int, ...] = (128, 128, 128)):
        super().__init__(in_channels=COORD_CHANNELS, min_size=1)
        self.preconv = nn.Conv2d(3, 2, 1)
        init_notebook_preconv(self.preconv)
        self.head = RegressionHead(4, hidden=hidden, activation=nn.ELU)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(xa, ya, xb, yb) as fractions of (W + 1, H + 1) on notebook-style input, (B, 4)."""
        with fp32_region(x.device.type):
            x_max, x_min = marker_extremes(self.preconv, x)
            # x_min is minus the true minimum, so (true min + 1) = 1 - x_min.
            return torch.cat((x_max - 1, 1 - x_min), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict one number per image, shape (B,) float32."""
        self.check_input(x)
        with fp32_region(x.device.type):
            return self.head(self.features(x))


def build_seednet(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder for `seednet` (in_channels must be 3; the registry checks)."""
    return SeedNet(freeze_preconv=cfg.freeze_preconv)


def build_coordmlp(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """Registry builder for `coordmlp` (in_channels must be 3; the registry checks)."""
    return CoordMLP()
