"""The four probe tasks: distance, area, locate, count (encodings in docs/tasks.md)."""

from __future__ import annotations

import torch

from cnnprobe.config import TASK_DESCRIPTIONS, TASK_NAMES, ConfigError, TaskConfig
from cnnprobe.tasks.base import (
    Batch,
    ProbeTask,
    Region,
    new_images,
    normalized_area,
    normalized_distance,
)
from cnnprobe.tasks.shapes import (
    add_distractors,
    centres,
    draw_shapes,
    place_boxes,
    randint,
    random_objects,
)

MAX_ROUNDS = 32  # redraws for the rare sample whose objects found no room
GPU_ROUNDS = 8


def _place_all(sizes_fn, batch: int, region: Region, g: torch.Generator, **kw
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place every object of every sample, redrawing sizes for samples that did not fit."""
    sizes, kinds = sizes_fn(batch)
    active = torch.ones(sizes.shape[:2], dtype=torch.bool, device=sizes.device)
    boxes, valid = place_boxes(sizes, active, region, g, **kw)
    on_cpu = sizes.device.type == "cpu"
    for _ in range(MAX_ROUNDS if on_cpu else GPU_ROUNDS):
        bad = ~valid.all(1)
        # On a GPU a fixed number of rounds runs without reading `bad` back (no host sync);
        # each round leaves at most about a quarter of the failures of the one before.
        if on_cpu and not bad.any():
            return boxes, valid, kinds
        sizes2, kinds2 = sizes_fn(batch)
        boxes2, valid2 = place_boxes(sizes2, active, region, g, **kw)
        boxes = torch.where(bad[:, None, None], boxes2, boxes)
        valid = torch.where(bad[:, None], valid2, valid)
        kinds = torch.where(bad[:, None], kinds2, kinds)
    if not on_cpu:
        return boxes, valid, kinds
    raise RuntimeError("could not place the objects without overlap; use a larger image "
                       "or a smaller task.object_max")


class DistanceTask(ProbeTask):
    """Two single pixels, A = +1 and B = -1; target: their Euclidean distance.

    A and B are distinct pixels unless `allow_coincident` (the notebook drew them
    independently: then only B's -1 is visible and the target is 0, a sample no image
    can answer, which dominated max error and moved MAE by a quarter at small sizes).
    """

    name = "distance"
    description = TASK_DESCRIPTIONS["distance"]

    def _draw(self, batch: int, g: torch.Generator, distractors: int, region: Region,
              out: torch.Tensor | None) -> Batch:
        cfg = self.cfg
        images = new_images(batch, cfg, g.device, out)
        sizes = torch.ones(batch, 2, 2, dtype=torch.long, device=g.device)
        active = torch.ones(batch, 2, dtype=torch.bool, device=g.device)
        if cfg.allow_coincident:  # the notebook: independent uniform points (then B's -1 wins)
            boxes, valid = place_boxes(sizes, active, region, g, overlap=True)
        else:  # gap 0 between 1x1 boxes: B is uniform over the pixels other than A
            boxes, valid = place_boxes(sizes, active, region, g, gap=0)
        signal = images[:, 0]
        add_distractors(signal, distractors, boxes, valid, region, 1, 1, g)
        # scatter_ with a Python value passes it to the kernel; `signal[rows, y, x] = 1.0`
        # would copy a host scalar to the device, a sync in every batch on CUDA
        # (gpu_check's sync check caught two per step). B is written after A, so B's -1
        # wins where the points coincide, as in the notebook.
        flat = signal.view(batch, -1)
        for point, value in ((0, 1.0), (1, -1.0)):
            at = boxes[:, point, 1] * cfg.width + boxes[:, point, 0]
            flat.scatter_(1, at[:, None], value)
        d = (boxes[:, 0, :2] - boxes[:, 1, :2]).float()
        target = torch.hypot(d[:, 0], d[:, 1])
        if cfg.units == "normalized":
            target = normalized_distance(d[:, 0], d[:, 1], cfg)
        return Batch(images, target, boxes, valid)


class AreaTask(ProbeTask):
    """One filled axis-aligned rectangle; target: its area."""

    name = "area"
    description = TASK_DESCRIPTIONS["area"]

    def _draw(self, batch: int, g: torch.Generator, distractors: int, region: Region,
              out: torch.Tensor | None) -> Batch:
        cfg = self.cfg
        bx0, bx1, by0, by1 = region.bounds

        def sizes_fn(b: int) -> tuple[torch.Tensor, torch.Tensor]:
            w = randint(1, bx1 - bx0, (b, 1), g)
            h = randint(1, by1 - by0, (b, 1), g)
            return torch.stack([w, h], -1), torch.zeros_like(w)

        boxes, valid, _ = _place_all(sizes_fn, batch, region, g)
        images = new_images(batch, cfg, g.device, out)
        signal = images[:, 0]
        add_distractors(signal, distractors, boxes, valid, region, cfg.object_min,
                        cfg.object_max_px, g)
        x0, y0, w, h = (boxes[:, 0, i, None, None] for i in range(4))
        xs = torch.arange(cfg.width, device=g.device).view(1, 1, -1)
        ys = torch.arange(cfg.height, device=g.device).view(1, -1, 1)
        rect = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
        signal.masked_fill_(rect, 1.0)
        target = (boxes[:, 0, 2] * boxes[:, 0, 3]).float()
        if cfg.units == "normalized":
            target = normalized_area(target, cfg)
        return Batch(images, target, boxes, valid)


class LocateTask(ProbeTask):
    """Two filled shapes (disc or square, random size); target: distance between centres."""

    name = "locate"
    description = TASK_DESCRIPTIONS["locate"]

    def _draw(self, batch: int, g: torch.Generator, distractors: int, region: Region,
              out: torch.Tensor | None) -> Batch:
        cfg = self.cfg

        def sizes_fn(b: int) -> tuple[torch.Tensor, torch.Tensor]:
            return random_objects(b, 2, cfg.object_min, cfg.object_max_px, g)

        boxes, valid, kinds = _place_all(sizes_fn, batch, region, g)
        images = new_images(batch, cfg, g.device, out)
        signal = images[:, 0]
        draw_shapes(signal, boxes, kinds, torch.ones(batch, 2, device=g.device), valid,
                    cfg.object_max_px)
        add_distractors(signal, distractors, boxes, valid, region, cfg.object_min,
                        cfg.object_max_px, g)
        c = centres(boxes)
        d = c[:, 0] - c[:, 1]
        target = torch.hypot(d[:, 0], d[:, 1])
        if cfg.units == "normalized":
            target = normalized_distance(d[:, 0], d[:, 1], cfg)
        return Batch(images, target, boxes, valid)


class CountTask(ProbeTask):
    """N separate shapes, N uniform in [count_min, count_max]; target: N."""

    name = "count"
    description = TASK_DESCRIPTIONS["count"]

    def _draw(self, batch: int, g: torch.Generator, distractors: int, region: Region,
              out: torch.Tensor | None) -> Batch:
        cfg = self.cfg
        k = cfg.count_max
        n = randint(cfg.count_min, cfg.count_max, (batch,), g)
        sizes, kinds = random_objects(batch, k, cfg.object_min, cfg.object_max_px, g)
        active = torch.arange(k, device=g.device)[None, :] < n[:, None]
        boxes, valid = place_boxes(sizes, active, region, g)
        images = new_images(batch, cfg, g.device, out)
        signal = images[:, 0]
        draw_shapes(signal, boxes, kinds, torch.ones(batch, k, device=g.device), valid,
                    cfg.object_max_px)
        add_distractors(signal, distractors, boxes, valid, region, cfg.object_min,
                        cfg.object_max_px, g)
        # The target is what was drawn; config validation keeps density low enough that a
        # slot finds no room only rarely, and then the label still matches the image.
        target = valid.sum(1).float()
        return Batch(images, target, boxes, valid)


TASKS: dict[str, type[ProbeTask]] = {
    t.name: t for t in (DistanceTask, AreaTask, LocateTask, CountTask)
}
assert tuple(TASKS) == TASK_NAMES


def make_task(cfg: TaskConfig) -> ProbeTask:
    """Build the task a config names (validating the config)."""
    if cfg.name not in TASKS:
        raise ConfigError("task.name", cfg.name, f"one of {', '.join(TASKS)}")
    return TASKS[cfg.name](cfg)
