"""Batched placement and drawing of small objects (squares and discs).

Placement loops over object slots (a handful), never over samples: for each slot
every sample draws a few dozen candidate boxes at once and keeps the first one
that stays in its region and keeps a gap to the boxes already placed.
"""

from __future__ import annotations

import torch

from cnnprobe.tasks.base import DISTRACTOR_VALUE, Region

SQUARE, DISC = 0, 1
CANDIDATES = 64


def randint(low: torch.Tensor | int, high: torch.Tensor | int, shape: tuple[int, ...],
            g: torch.Generator) -> torch.Tensor:
    """Uniform integers in [low, high] inclusive; low and high may be tensors broadcastable
    to shape.

    Python ints stay Python numbers: `torch.as_tensor(int, device="cuda")` is a blocking
    host-to-device copy, a sync in every batch of the training loop (what
    `torch.cuda.set_sync_debug_mode` reports, bench/gpu_check.py). A float32 tensor times a
    Python int gives the same values as times a 0-dim long tensor (both float32 products);
    tests/test_tasks.py pins the batches."""
    u = torch.rand(shape, generator=g, device=g.device)
    span = high - low + 1
    return (low + (u * span).floor().long().clamp_max(span - 1)).long()


def place_boxes(sizes: torch.Tensor, active: torch.Tensor, region: Region, g: torch.Generator, *,
                gap: int = 1, avoid: tuple[torch.Tensor, torch.Tensor] | None = None,
                overlap: bool = False, candidates: int = CANDIDATES
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Place K boxes of the given (B, K, 2) sizes (w, h) per sample.

    Returns boxes (B, K, 4) as x0, y0, w, h and valid (B, K): False where the slot
    was inactive or no candidate fitted. `avoid` is earlier (boxes, valid) that the
    new ones must keep `gap` pixels away from; `overlap=True` drops the gap rule
    (the notebook's points may coincide).
    """
    b, k = sizes.shape[:2]
    dev = sizes.device
    boxes = torch.zeros(b, k, 4, dtype=torch.long, device=dev)
    valid = torch.zeros(b, k, dtype=torch.bool, device=dev)
    prev_boxes, prev_valid = avoid if avoid is not None else (boxes[:, :0], valid[:, :0])
    bx0, bx1, by0, by1 = region.bounds
    if overlap and region.mode != "avoid":
        candidates = 1  # every candidate fits: skip the search
    rows = torch.arange(b, device=dev)
    for slot in range(k):
        w = sizes[:, slot, 0:1]  # (B, 1)
        h = sizes[:, slot, 1:2]
        x0 = randint(bx0, (bx1 - w).clamp_min(bx0), (b, candidates), g)
        y0 = randint(by0, (by1 - h).clamp_min(by0), (b, candidates), g)
        fits = region.allows(x0, y0, w, h) & (x0 + w <= bx1) & (y0 + h <= by1)
        if not overlap:
            others = torch.cat([prev_boxes, boxes[:, :slot]], 1)  # (B, J, 4)
            others_ok = torch.cat([prev_valid, valid[:, :slot]], 1)  # (B, J)
            if others.shape[1]:
                ox0, oy0, ow, oh = (others[..., i].unsqueeze(1) for i in range(4))  # (B, 1, J)
                cx0, cy0 = x0.unsqueeze(2), y0.unsqueeze(2)  # (B, M, 1)
                cw, ch = w.unsqueeze(2), h.unsqueeze(2)
                clash = ((cx0 < ox0 + ow + gap) & (ox0 < cx0 + cw + gap)
                         & (cy0 < oy0 + oh + gap) & (oy0 < cy0 + ch + gap))
                fits &= ~(clash & others_ok.unsqueeze(1)).any(2)
        first = fits.to(torch.uint8).argmax(1)  # first candidate that fits
        ok = fits[rows, first] & active[:, slot]
        boxes[:, slot] = torch.stack([x0[rows, first], y0[rows, first],
                                      w.squeeze(1), h.squeeze(1)], 1)
        valid[:, slot] = ok
    return boxes, valid


def draw_shapes(signal: torch.Tensor, boxes: torch.Tensor, kinds: torch.Tensor,
                values: torch.Tensor, valid: torch.Tensor, max_side: int) -> None:
    """Write squares and discs into signal (B, H, W) in place.

    Each object is scattered through a window of the largest object's size, so the
    cost grows with the objects, not with the image. A disc of diameter d fills the
    pixels within d/2 of its centre x0 + (d-1)/2, so its centroid is that centre.
    """
    b, _, width = signal.shape
    if boxes.shape[1] == 0:
        return
    s = max_side  # known on the host: reading the boxes' maximum would sync a GPU
    d = torch.arange(s, device=signal.device)
    dx, dy = d.view(1, 1, 1, s), d.view(1, 1, s, 1)
    x0, y0, w, h = (boxes[..., i, None, None] for i in range(4))  # (B, K, 1, 1)
    mask = (dx < w) & (dy < h) & valid[..., None, None]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    in_disc = (dx - cx) ** 2 + (dy - cy) ** 2 <= (w / 2) ** 2
    mask &= torch.where(kinds[..., None, None] == DISC, in_disc, True)
    idx = torch.where(mask, (y0 + dy) * width + (x0 + dx), 0)
    # Masked-out window cells carry -inf under an amax, so they change nothing; no scratch
    # image is allocated (fresh memory costs page faults that dominate on the CPU).
    vals = torch.where(mask, values[..., None, None].to(signal.dtype), float("-inf"))
    signal.view(b, -1).scatter_reduce_(1, idx.reshape(b, -1), vals.reshape(b, -1), "amax")


def random_objects(batch: int, count: int, cfg_min: int, cfg_max: int, g: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sizes (B, K, 2) of square-or-disc objects with a random side in [min, max], and kinds."""
    side = randint(cfg_min, cfg_max, (batch, count), g)
    kinds = randint(0, 1, (batch, count), g)
    return torch.stack([side, side], -1), kinds


def centres(boxes: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) float centres x, y of boxes: x0 + (w-1)/2."""
    return torch.stack([boxes[..., 0] + (boxes[..., 2] - 1) / 2,
                        boxes[..., 1] + (boxes[..., 3] - 1) / 2], -1).float()


def add_distractors(signal: torch.Tensor, n: int, obj_boxes: torch.Tensor, obj_valid: torch.Tensor,
                    region: Region, cfg_min: int, cfg_max: int, g: torch.Generator) -> None:
    """Draw n half-intensity objects that never touch the real ones (dropped if none fits)."""
    if n <= 0:
        return
    b = signal.shape[0]
    sizes, kinds = random_objects(b, n, cfg_min, cfg_max, g)
    active = torch.ones(b, n, dtype=torch.bool, device=signal.device)
    # Same region as the objects: a quadrant-split run never draws anything in the held-out part.
    boxes, valid = place_boxes(sizes, active, region, g, avoid=(obj_boxes, obj_valid))
    values = torch.full((b, n), DISTRACTOR_VALUE, device=signal.device)
    draw_shapes(signal, boxes, kinds, values, valid, cfg_max)
