"""What the model registry knows about each model without building it (torch-free): the
smallest input it takes, the training memory per pixel, and the error a weights file raises.

The architectures use these same definitions (plaincnn.py, coordconv.py, seednet.py,
backbones.py import them), so `cnnprobe models`, validation and the TUI's form can answer
before torch is imported.
"""

from __future__ import annotations

import os

from cnnprobe.config import ConfigError, ModelConfig

CHANNEL_CAP = 256  # plaincnn: channels double after each halving up to max(width, this)

BACKBONE_MIN_SIZE = 32  # all three torchvision backbones halve the image five times
# Training at batch 1 needs the last BatchNorm (at 1/32 resolution) to see 2 positions.
BACKBONE_BATCH1_MIN_SIZE = 33

# fp32 values autograd saves for backward per input pixel per sample, measured with
# saved-tensor hooks at 64x64 and 128x96 (resnet18 ~113, resnet34 ~165, mobilenet_v3_small
# ~86), times 1.5 for the gradients alive during the backward pass.
BACKBONE_FLOATS_PER_PIXEL = {"resnet18": 170.0, "resnet34": 250.0,
                             "mobilenet_v3_small": 130.0}

# seednet/coordmlp training memory per input pixel per sample, in fp32 values: the input (3)
# and the short-lived preconv output (2) with slack for temporaries; autograd keeps only
# the gathered extreme pixels. Checked against saved-tensor hooks in tests/test_models.py.
SEEDNET_FLOATS_PER_PIXEL = 6.0


class WeightsError(ConfigError):
    """Pretrained or local weights could not be found, read or fitted to the model."""


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


def coordconv_min_size(depth: int, downsample: bool = True) -> int:
    """Smallest input side: each of the depth // 2 strided layers needs 2 pixels to halve."""
    return 2 ** (depth // 2) if downsample else 1



# The CoordConv paper's models (paper.py). conv_paper halves five times with ceil, so any
# size runs; its second BatchNorm comes after three halvings and needs 2 values at batch 1.
CONV_PAPER_MIN_SIZE = 1
CONV_PAPER_BATCH1_MIN_SIZE = 9
# fp32 values per input pixel per sample while training, from saved-tensor hooks at 64x64
# (coordconv_paper ~38: every layer at full size; conv_paper ~21), times 1.5 for the
# gradients, plus the input batch (3); tests/test_models.py checks them.
COORDCONV_PAPER_FLOATS_PER_PIXEL = 60.0
CONV_PAPER_FLOATS_PER_PIXEL = 35.0


def coordconv_floats_per_pixel(cfg: ModelConfig) -> float:
    """Rough fp32 values per input pixel per sample while training: what autograd keeps for
    backward (per layer the coordinate-augmented input and the conv output at that layer's
    resolution), times 1.5 for the gradients alive during backward, plus the input batch.
    Checked against saved-tensor hooks in the tests."""
    saved = 0.0
    area = 1.0
    c_in = 3
    for i in range(cfg.depth):
        saved += (c_in + 2) * area  # AddCoords output, kept by the conv
        if i % 2 == 1:
            area /= 4
        saved += cfg.width * area  # conv output (ReLU is in place)
        c_in = cfg.width
    return 1.5 * saved + 3.0


SAVE_HINT = "give the path of a file saved with torch.save(model.state_dict(), PATH)"


def weights_file_problem(path: str | os.PathLike) -> str:
    """What is wrong with a weights file that its name and first bytes already tell, in
    words a user can act on ("" when it may be a torch.save file): missing, a folder,
    empty, or not a torch file at all (torch's own error for a text file is "KeyError:
    101"). Checked before a run is recorded, so such a refusal leaves nothing behind."""
    p = os.path.expanduser(os.fspath(path))
    if os.path.isdir(p):
        return f"is a folder; {SAVE_HINT}"
    if not os.path.isfile(p):
        return f"file not found; {SAVE_HINT}"
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot be read ({exc.strerror}); {SAVE_HINT}"
    if not head:
        return f"the file is empty; {SAVE_HINT}"
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch's zip, or a raw pickle
        return f"not a torch.save file (it does not start like one: a text or other file?); " \
               f"{SAVE_HINT}"
    return ""
