"""What every probe task shares: the batch type, seeding, coordinate planes, regions.

A task builds a whole batch with tensor ops on the generator's device: no
per-sample Python loop and no DataLoader. Channel 0 is the signal channel; when
coordinate channels are on, channel 1 is x/(W+1) varying along the width and
channel 2 is y/(H+1) varying along the height (the seed notebook's encoding).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cnnprobe.config import REGIONS, ConfigError, TaskConfig, validate_task

DISTRACTOR_VALUE = 0.5  # distractors are "another kind": half the objects' intensity


@dataclass
class Batch:
    """One generated batch: model input, target, and the geometry that produced it."""

    images: torch.Tensor  # (B, C, H, W) float32
    targets: torch.Tensor  # (B,) float32, in the task's units
    boxes: torch.Tensor  # (B, K, 4) long: x0, y0, w, h of each object (distance: 1x1 points)
    valid: torch.Tensor  # (B, K) bool: which boxes were drawn

    def __len__(self) -> int:
        return self.images.shape[0]


def stream_seed(seed: int, stream: str) -> int:
    """An independent, reproducible seed for a named stream ("train", "val", ...) of a run."""
    words = [seed, *stream.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_generator(seed: int, device: torch.device | str = "cpu", stream: str = "train"
                   ) -> torch.Generator:
    """A torch.Generator on `device`, seeded for one stream of a run."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(stream_seed(seed, stream))
    return g


@lru_cache(maxsize=32)
def coord_planes(height: int, width: int, device: str) -> torch.Tensor:
    """(2, H, W): x/(W+1) along the width, y/(H+1) along the height."""
    xs = torch.arange(width, dtype=torch.float32, device=device) / (width + 1)
    ys = torch.arange(height, dtype=torch.float32, device=device) / (height + 1)
    return torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])


def new_images(batch: int, cfg: TaskConfig, device: torch.device,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """An input batch with a zeroed signal channel and the coordinate planes filled in.

    `out`, when its shape fits, is reused: on the CPU, writing into warm memory is about
    twenty times faster than touching a fresh allocation.
    """
    c = cfg.in_channels
    shape = (batch, c, cfg.height, cfg.width)
    dev = torch.device(device)
    same_device = out is not None and out.device.type == dev.type and (
        dev.index is None or out.device.index == dev.index)  # "cuda" and "cuda:0" are one
    if same_device and out.shape == shape:
        images = out
    else:
        images = torch.empty(shape, device=device)
    images[:, 0].zero_()
    if c == 3:
        images[:, 1:].copy_(coord_planes(cfg.height, cfg.width, str(device)).expand(batch, -1, -1,
                                                                                    -1))
    return images


def normalized_distance(dx: torch.Tensor, dy: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """A pixel offset in normalized units: the coordinate channels' own, where one pixel is
    1/(W+1) along x and 1/(H+1) along y. A model reading x/(W+1) and y/(H+1) then meets
    the same function of its inputs at every resolution (with the diagonal instead, the
    two scales disagree by O(1/W) and a "resolution-free" model is not)."""
    return torch.hypot(dx / (cfg.width + 1), dy / (cfg.height + 1))


def normalized_area(area: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """An area in pixels in the same units: divided by (W+1)(H+1)."""
    return area / ((cfg.width + 1) * (cfg.height + 1))


@dataclass(frozen=True)
class Region:
    """Where object boxes may go: the whole image, outside the held-out quadrant, or inside it."""

    height: int
    width: int
    mode: str  # "all", "avoid", "inside"
    qx0: int = 0
    qx1: int = 0
    qy0: int = 0
    qy1: int = 0

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """x0, x1, y0, y1 of the rectangle candidates are drawn from."""
        if self.mode == "inside":
            return self.qx0, self.qx1, self.qy0, self.qy1
        return 0, self.width, 0, self.height

    def allows(self, x0: torch.Tensor, y0: torch.Tensor, w: torch.Tensor, h: torch.Tensor
               ) -> torch.Tensor:
        """True where the box [x0, x0+w) x [y0, y0+h) keeps to the region."""
        if self.mode != "avoid":
            return torch.ones_like(x0, dtype=torch.bool)
        hits = (x0 < self.qx1) & (x0 + w > self.qx0) & (y0 < self.qy1) & (y0 + h > self.qy0)
        return ~hits


def region_for(cfg: TaskConfig, region: str) -> Region:
    """The placement region for a draw from the training distribution or the held-out quadrant."""
    if region not in REGIONS:
        raise ConfigError("region", region, f"one of {', '.join(REGIONS)}")
    if cfg.split == "uniform":
        if region == "heldout":
            raise ConfigError("task.split", cfg.split,
                              "set task.split=quadrant to evaluate on a held-out quadrant")
        return Region(cfg.height, cfg.width, "all")
    h2, w2 = cfg.height // 2, cfg.width // 2
    top, left = cfg.heldout_quadrant.split("-")
    qy0, qy1 = (0, h2) if top == "top" else (h2, cfg.height)
    qx0, qx1 = (0, w2) if left == "left" else (w2, cfg.width)
    return Region(cfg.height, cfg.width, "avoid" if region == "train" else "inside",
                  qx0, qx1, qy0, qy1)


class ProbeTask:
    """Base class: subclasses implement `_draw` for one batch."""

    name = ""
    description = ""

    def __init__(self, cfg: TaskConfig):
        validate_task(cfg)
        if cfg.name != self.name:
            raise ConfigError("task.name", cfg.name, f"this is the {self.name} task")
        self.cfg = cfg

    @property
    def in_channels(self) -> int:
        return self.cfg.in_channels

    def sample(self, batch_size: int, generator: torch.Generator, *,
               distractors: int | None = None, region: str = "train",
               out: torch.Tensor | None = None) -> Batch:
        """Draw a batch on the generator's device; distractors default to the training count.

        With `out`, the images are written into that tensor (see `stream`).
        """
        if batch_size < 1:
            raise ConfigError("batch_size", batch_size, "an integer of at least 1")
        k = self.cfg.distractors if distractors is None else distractors
        if k < 0:
            raise ConfigError("distractors", k, "an integer of at least 0")
        with torch.no_grad():
            return self._draw(batch_size, generator, k, region_for(self.cfg, region), out)

    def stream(self, batch_size: int, generator: torch.Generator, *,
               distractors: int | None = None, region: str = "train") -> Iterator[Batch]:
        """Endless batches written into one reused buffer: each is valid until the next."""
        out = None
        while True:
            batch = self.sample(batch_size, generator, distractors=distractors, region=region,
                                out=out)
            out = batch.images
            yield batch

    def _draw(self, batch: int, g: torch.Generator, distractors: int, region: Region,
              out: torch.Tensor | None) -> Batch:
        raise NotImplementedError
