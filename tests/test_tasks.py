"""Probe tasks: every label is recomputed from the generated image, never from `batch.boxes`.

Tiny images (including non-square ones), a few hundred samples per case, CPU only.
Connected components are labelled here in numpy (8-connectivity), independently of the
task code.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from cnnprobe.config import QUADRANTS, ConfigError, TaskConfig, validate_task
from cnnprobe.tasks import make_generator, make_task, stream_seed

N = 300  # samples per case
SIZES = [(16, 16), (24, 32), (32, 24)]  # (height, width); non-square both ways
TASKS = ["distance", "area", "locate", "count"]


# ---------------------------------------------------------------- independent helpers


def signal_of(batch) -> np.ndarray:
    """Channel 0 as a float64 numpy array (B, H, W)."""
    return batch.images[:, 0].detach().cpu().numpy().astype(np.float64)


def _shifts(a: np.ndarray, fill):
    """The 8 neighbour views (and the centre) of a (B, H, W) array, padded with `fill`."""
    _, h, w = a.shape
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    for dy in range(3):
        for dx in range(3):
            yield dy, dx, p[:, dy:dy + h, dx:dx + w]


def label8(mask: np.ndarray) -> np.ndarray:
    """Label the 8-connected components of a boolean (B, H, W) mask.

    Every foreground pixel starts with its own id; ids are propagated as the maximum over the
    3x3 neighbourhood, restricted to the foreground, until nothing changes. Each component
    ends up with the largest id among its pixels; background is 0.
    """
    b, h, w = mask.shape
    ids = np.arange(1, b * h * w + 1, dtype=np.int64).reshape(b, h, w)
    lab = np.where(mask, ids, 0)
    while True:
        nb = lab.copy()
        for _, _, view in _shifts(lab, 0):
            np.maximum(nb, view, out=nb)
        nb = np.where(mask, nb, 0)
        if np.array_equal(nb, lab):
            return lab
        lab = nb


def count_components(mask: np.ndarray) -> np.ndarray:
    """(B,) number of 8-connected components per image."""
    b, h, w = mask.shape
    lab = label8(mask)
    ids = np.arange(1, b * h * w + 1, dtype=np.int64).reshape(b, h, w)
    roots = mask & (lab == ids)  # exactly one pixel per component keeps its own id
    return roots.reshape(b, -1).sum(1)


def component_centroids(mask: np.ndarray) -> list[np.ndarray]:
    """Per image, a (n, 2) array of the x, y centroids of its 8-connected components."""
    lab = label8(mask)
    out = []
    ys, xs = np.mgrid[0:mask.shape[1], 0:mask.shape[2]]
    for i in range(mask.shape[0]):
        cents = []
        for c in np.unique(lab[i]):
            if c == 0:
                continue
            sel = lab[i] == c
            cents.append((xs[sel].mean(), ys[sel].mean()))
        out.append(np.array(cents, dtype=np.float64).reshape(-1, 2))
    return out


def touching_different_values(sig: np.ndarray) -> np.ndarray:
    """(B,) True where two 8-adjacent nonzero pixels carry different values."""
    bad = np.zeros(sig.shape[0], dtype=bool)
    for _, _, view in _shifts(sig, 0.0):
        clash = (sig != 0) & (view != 0) & (view != sig)
        bad |= clash.reshape(sig.shape[0], -1).any(1)
    return bad


def near(mask: np.ndarray) -> np.ndarray:
    """The mask dilated by one pixel in all 8 directions."""
    out = np.zeros_like(mask)
    for _, _, view in _shifts(mask, False):
        out |= view
    return out


def cfg_for(name: str, h: int, w: int, **kw) -> TaskConfig:
    base = dict(name=name, height=h, width=w)
    if name == "count":
        base.update(count_min=0, count_max=5)
    base.update(kw)
    return TaskConfig(**base)


def draw(cfg: TaskConfig, n: int = N, seed: int = 0, **kw):
    return make_task(cfg).sample(n, make_generator(seed), **kw)


def check_distractors(sig: np.ndarray, k: int, object_values: tuple[float, ...]) -> None:
    """Distractors are 0.5, at most k per image, and never touch a real object."""
    half = sig == 0.5
    n_half = count_components(half)
    assert (n_half <= k).all(), f"more than {k} distractors: {n_half.max()}"
    if k == 0:
        assert not half.any()
    else:
        # They are really drawn: on average nearly all k fit on these sparse images.
        assert n_half.mean() >= 0.5 * k, n_half.mean()
    objects = np.isin(sig, object_values)
    assert not (near(objects) & half).any(), "a distractor touches or overlaps an object"


# ---------------------------------------------------------------- coordinate channels


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("hw", SIZES)
def test_coordinate_channels(name, hw):
    h, w = hw
    b = draw(cfg_for(name, h, w), n=8)
    assert b.images.shape == (8, 3, h, w)
    assert b.images.dtype == torch.float32
    img = b.images.numpy()
    x = np.arange(w, dtype=np.float32) / np.float32(w + 1)  # along the width (columns)
    y = np.arange(h, dtype=np.float32) / np.float32(h + 1)  # along the height (rows)
    assert np.array_equal(img[:, 1], np.broadcast_to(x[None, None, :], (8, h, w)))
    assert np.array_equal(img[:, 2], np.broadcast_to(y[None, :, None], (8, h, w)))


@pytest.mark.parametrize("name", TASKS)
def test_no_coordinate_channels(name):
    cfg = cfg_for(name, 24, 32, coord_channels=False)
    b = draw(cfg, n=16)
    assert make_task(cfg).in_channels == 1
    assert b.images.shape == (16, 1, 24, 32)
    assert b.targets.shape == (16,)
    assert (b.images[:, 0] != 0).any()


# ---------------------------------------------------------------- distance


def point_positions(sig: np.ndarray):
    """Positions (x, y) of the +1 and -1 pixels; +1 falls back to -1 when they coincide."""
    plus = sig == 1.0
    minus = sig == -1.0
    n_plus = plus.reshape(len(sig), -1).sum(1)
    n_minus = minus.reshape(len(sig), -1).sum(1)
    assert (n_minus == 1).all(), f"-1 pixel counts: {np.unique(n_minus)}"
    assert np.isin(n_plus, (0, 1)).all(), f"+1 pixel counts: {np.unique(n_plus)}"
    _, my, mx = np.nonzero(minus)
    a = np.stack([mx, my], 1).astype(np.float64)
    b_ = a.copy()
    pi, py, px = np.nonzero(plus)
    a[pi] = np.stack([px, py], 1)
    return a, b_, n_plus


@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_distance_labels_from_pixels(hw, k):
    h, w = hw
    b = draw(cfg_for("distance", h, w, distractors=k))
    sig = signal_of(b)
    assert set(np.unique(sig)) <= {-1.0, 0.0, 0.5, 1.0}
    a, bb, _ = point_positions(sig)
    d = np.hypot(*(a - bb).T)
    np.testing.assert_allclose(b.targets.numpy(), d, rtol=1e-6, atol=1e-5)
    assert d.max() > 0  # a batch of all-coincident points would make this test hollow
    check_distractors(sig, k, (1.0, -1.0))


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("hw", [(16, 16), (24, 32)])
def test_distance_normalized(hw, k):
    h, w = hw
    b = draw(cfg_for("distance", h, w, units="normalized", distractors=k), seed=5)
    a, bb, _ = point_positions(signal_of(b))
    # Normalized units are the coordinate channels' own: x/(W+1) along x, y/(H+1) along y.
    d = np.hypot((a - bb)[:, 0] / (w + 1), (a - bb)[:, 1] / (h + 1))
    np.testing.assert_allclose(b.targets.numpy(), d, rtol=1e-5, atol=1e-6)
    assert b.targets.max().item() <= math.sqrt(2)


def test_distance_normalized_target_is_the_coordinate_channels_distance():
    """What makes a coordinate reader resolution-free: at every size, the normalized target
    is exactly the Euclidean distance between the markers' values in channels 1 and 2."""
    for size in (8, 16, 33, 64):
        b = draw(cfg_for("distance", size, size, units="normalized"), n=64, seed=size)
        img = b.images.numpy().astype(np.float64)
        plus, minus = img[:, 0] == 1.0, img[:, 0] == -1.0
        xa, ya = img[:, 1][plus], img[:, 2][plus]
        xb, yb = img[:, 1][minus], img[:, 2][minus]
        np.testing.assert_allclose(b.targets.numpy(), np.hypot(xa - xb, ya - yb), rtol=1e-5)


def test_distance_points_are_distinct_by_default():
    """On a 4x5 image independent points would coincide in 1 sample of 20; by default A and
    B are always two pixels, and B is still spread over every pixel."""
    b = draw(cfg_for("distance", 4, 5), n=400, seed=1)
    sig = signal_of(b)
    a, bb, n_plus = point_positions(sig)
    assert (n_plus == 1).all() and ((sig == -1.0).sum((1, 2)) == 1).all()
    assert (b.targets.numpy() > 0).all()
    np.testing.assert_allclose(b.targets.numpy(), np.hypot(*(a - bb).T), rtol=1e-6, atol=1e-5)
    assert len({tuple(p) for p in bb}) == 20  # every pixel is used for B


def test_distance_points_may_coincide_as_in_the_notebook():
    """allow_coincident (the seed preset): on a 4x5 image points coincide often; B (-1) is
    drawn last and the target is 0."""
    b = draw(cfg_for("distance", 4, 5, allow_coincident=True), n=400, seed=1)
    sig = signal_of(b)
    a, bb, n_plus = point_positions(sig)
    coincide = n_plus == 0
    assert coincide.sum() >= 5  # about 1 in 20 samples
    assert (b.targets.numpy()[coincide] == 0).all()
    assert (b.targets.numpy()[~coincide] > 0).all()
    np.testing.assert_allclose(b.targets.numpy(), np.hypot(*(a - bb).T), rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------- area


def rectangle_stats(sig: np.ndarray):
    ones = sig == 1.0
    area = ones.reshape(len(sig), -1).sum(1)
    assert (area >= 1).all()
    bbox_area = np.empty(len(sig), dtype=np.int64)
    for i in range(len(sig)):
        rows = np.nonzero(ones[i].any(1))[0]
        cols = np.nonzero(ones[i].any(0))[0]
        bbox_area[i] = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return ones, area, bbox_area


@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_area_labels_from_pixels(hw, k):
    h, w = hw
    b = draw(cfg_for("area", h, w, distractors=k))
    sig = signal_of(b)
    assert set(np.unique(sig)) <= {0.0, 0.5, 1.0}
    ones, area, bbox_area = rectangle_stats(sig)
    assert np.array_equal(area, bbox_area), "the 1-pixels are not a filled rectangle"
    assert np.array_equal(b.targets.numpy(), area.astype(np.float32))
    assert len(np.unique(area)) > 20  # sizes really vary
    # Distractors need room beside the rectangle; check them only where they fit.
    half = sig == 0.5
    assert not (near(ones) & half).any(), "a distractor touches or overlaps the rectangle"
    n_half = count_components(half)
    assert (n_half <= k).all()
    if k:
        assert n_half.sum() > 0
    else:
        assert not half.any()


@pytest.mark.parametrize("hw", [(16, 16), (24, 32)])
def test_area_normalized(hw):
    h, w = hw
    b = draw(cfg_for("area", h, w, units="normalized"), seed=2)
    _, area, bbox_area = rectangle_stats(signal_of(b))
    assert np.array_equal(area, bbox_area)
    np.testing.assert_allclose(b.targets.numpy(), area / ((h + 1) * (w + 1)), rtol=1e-6)


# ---------------------------------------------------------------- locate


@pytest.mark.parametrize("units", ["pixels", "normalized"])
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("hw", SIZES)
def test_locate_labels_from_pixels(hw, k, units):
    h, w = hw
    b = draw(cfg_for("locate", h, w, distractors=k, units=units))
    sig = signal_of(b)
    assert set(np.unique(sig)) <= {0.0, 0.5, 1.0}
    ones = sig == 1.0
    assert (count_components(ones) == 2).all()
    cents = component_centroids(ones)
    scale = np.array([w + 1, h + 1]) if units == "normalized" else np.ones(2)
    d = np.array([np.hypot(*((c[0] - c[1]) / scale)) for c in cents])
    np.testing.assert_allclose(b.targets.numpy(), d, rtol=0, atol=1e-5)
    assert not touching_different_values(sig).any()
    check_distractors(sig, k, (1.0,))


# ---------------------------------------------------------------- count


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("hw", SIZES)
def test_count_labels_from_pixels(hw, k):
    h, w = hw
    b = draw(cfg_for("count", h, w, distractors=k))
    sig = signal_of(b)
    assert set(np.unique(sig)) <= {0.0, 0.5, 1.0}
    t = b.targets.numpy()
    assert np.array_equal(t, np.round(t))
    assert ((t >= 0) & (t <= 5)).all()
    assert np.array_equal(count_components(sig == 1.0), t.astype(np.int64))
    assert not touching_different_values(sig).any()
    check_distractors(sig, k, (1.0,))
    freq = np.bincount(t.astype(np.int64), minlength=6) / len(t)
    assert (freq >= 0.05).all(), freq  # uniform over 0..5 is 1/6 each


@pytest.mark.parametrize("lo,hi", [(2, 5), (3, 3), (0, 0)])
def test_count_range(lo, hi):
    b = draw(cfg_for("count", 24, 32, count_min=lo, count_max=hi, distractors=1), seed=4)
    sig = signal_of(b)
    t = b.targets.numpy()
    assert ((t >= lo) & (t <= hi)).all()
    assert set(np.unique(t).astype(int)) == set(range(lo, hi + 1))
    assert np.array_equal(count_components(sig == 1.0), t.astype(np.int64))


# ---------------------------------------------------------------- seeding and streams


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_batch(name):
    cfg = cfg_for(name, 24, 32, distractors=2)
    task = make_task(cfg)
    b1 = task.sample(64, make_generator(7))
    b2 = task.sample(64, make_generator(7))
    assert torch.equal(b1.images, b2.images)
    assert torch.equal(b1.targets, b2.targets)
    b3 = task.sample(64, make_generator(8))
    assert not torch.equal(b1.images, b3.images)
    assert not torch.equal(b1.targets, b3.targets)
    b4 = task.sample(64, make_generator(7, stream="val"))
    assert not torch.equal(b1.images, b4.images)


@pytest.mark.parametrize("name", TASKS)
def test_stream_matches_successive_samples(name):
    task = make_task(cfg_for(name, 16, 16, distractors=1))
    it = task.stream(32, make_generator(3))
    streamed = []
    for _ in range(3):
        batch = next(it)
        streamed.append((batch.images.clone(), batch.targets.clone()))
    g = make_generator(3)
    for images, targets in streamed:
        ref = task.sample(32, g)
        assert torch.equal(images, ref.images)
        assert torch.equal(targets, ref.targets)
    assert not torch.equal(streamed[0][0], streamed[1][0])


def test_stream_seeds_differ():
    for seed in (0, 1, 12345):
        assert stream_seed(seed, "train") != stream_seed(seed, "val")
        assert stream_seed(seed, "train") == stream_seed(seed, "train")
    assert stream_seed(0, "train") != stream_seed(1, "train")


# ---------------------------------------------------------------- quadrant split


def quadrant_mask(h: int, w: int, quadrant: str) -> np.ndarray:
    top, left = quadrant.split("-")
    rows = np.arange(h)
    cols = np.arange(w)
    in_rows = rows < h // 2 if top == "top" else rows >= h // 2
    in_cols = cols < w // 2 if left == "left" else cols >= w // 2
    return in_rows[:, None] & in_cols[None, :]


@pytest.mark.parametrize("quadrant", QUADRANTS)
@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("hw", [(32, 32), (24, 32)])
def test_quadrant_split(hw, name, quadrant):
    h, w = hw
    cfg = cfg_for(name, h, w, split="quadrant", heldout_quadrant=quadrant, distractors=1,
                  object_max=2)
    task = make_task(cfg)
    q = quadrant_mask(h, w, quadrant)
    g = make_generator(11)
    train = signal_of(task.sample(200, g, region="train")) != 0
    held = signal_of(task.sample(200, g, region="heldout")) != 0
    assert not (train & q).any(), "a training image draws inside the held-out quadrant"
    assert not (held & ~q).any(), "a held-out image draws outside the held-out quadrant"
    # Not hollow: images are drawn at all (count may legitimately draw 0 objects).
    for img in (train, held):
        drawn = img.any(axis=(1, 2))
        assert drawn.mean() > 0.7 if name == "count" else drawn.all()
    # The training images do use each of the other three quadrants.
    for other in QUADRANTS:
        if other != quadrant:
            assert (train & quadrant_mask(h, w, other)).any(), other


@pytest.mark.parametrize("name", TASKS)
def test_heldout_requires_quadrant_split(name):
    task = make_task(cfg_for(name, 16, 16))
    with pytest.raises(ConfigError) as e:
        task.sample(4, make_generator(0), region="heldout")
    assert e.value.field == "task.split"
    with pytest.raises(ConfigError) as e:
        task.sample(4, make_generator(0), region="test")
    assert e.value.field == "region"


# ---------------------------------------------------------------- bad configs


BAD = [
    (dict(name="volume"), "task.name"),
    (dict(height=2), "task.height"),
    (dict(width=2), "task.width"),
    (dict(units="furlongs"), "task.units"),
    (dict(split="diagonal"), "task.split"),
    (dict(heldout_quadrant="middle"), "task.heldout_quadrant"),
    (dict(distractors=-1), "task.distractors"),
    (dict(eval_distractors=-2), "task.eval_distractors"),
    (dict(count_min=5, count_max=3), "task.count_max"),
    (dict(name="count", count_min=0, count_max=40), "task.height/width"),
    (dict(object_max=17), "task.object_max"),
    (dict(split="quadrant", object_max=9), "task.object_max"),
]


@pytest.mark.parametrize("kw,field", BAD, ids=[f for _, f in BAD])
def test_bad_config_names_field(kw, field):
    cfg = TaskConfig(**{"name": "distance", "height": 16, "width": 16, **kw})
    with pytest.raises(ConfigError) as e:
        validate_task(cfg)
    assert e.value.field == field
    assert field in str(e.value)
    with pytest.raises(ConfigError) as e:
        make_task(cfg)
    assert e.value.field == field


@pytest.mark.parametrize("name", TASKS)
def test_good_config_is_accepted(name):
    """The bad-config cases above differ from this accepted baseline by one field only."""
    cfg = cfg_for(name, 16, 16, object_max=16)
    if name in ("locate", "count"):
        cfg = replace(cfg, object_max=2)
    validate_task(cfg)
    assert len(make_task(cfg).sample(2, make_generator(0))) == 2


@pytest.mark.parametrize("name", TASKS)
def test_bad_sample_arguments(name):
    task = make_task(cfg_for(name, 16, 16))
    with pytest.raises(ConfigError) as e:
        task.sample(0, make_generator(0))
    assert e.value.field == "batch_size"
    with pytest.raises(ConfigError) as e:
        task.sample(4, make_generator(0), distractors=-1)
    assert e.value.field == "distractors"


def test_stream_writes_every_batch_into_one_buffer():
    """The trainer's fast path: no fresh image-sized allocation per batch."""
    task = make_task(TaskConfig(name="distance", height=16, width=16))
    it = task.stream(8, make_generator(0))
    first = next(it).images
    ptr, first_copy = first.data_ptr(), first.clone()
    second = next(it).images
    assert second.data_ptr() == ptr
    assert not torch.equal(second, first_copy)  # new points, same memory


BATCHES_SHA256 = "5e05065bf780a3f303d48ecb9915d5a0f8d09d50d5a1140d69237217ef9fd344"


def _batches_digest() -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in ("distance", "area", "locate", "count"):
        for extra in ({}, {"distractors": 3}, {"split": "quadrant"}):
            if name == "count" and extra.get("split"):
                continue  # too crowded at this size
            task = make_task(TaskConfig(name=name, height=32, width=40, **extra))
            g = make_generator(3, "cpu", "train")
            for _ in range(3):
                b = task.sample(64, g)
                digest.update(b.images.numpy().tobytes())
                digest.update(b.targets.numpy().tobytes())
    return digest.hexdigest()


def test_the_batches_of_a_seed_are_pinned():
    """Every task's batches for one seed, byte for byte (torch 2.14 on the CPU): a change
    of the generators' arithmetic (shapes.randint no longer builds tensors from Python
    ints) must leave stored runs reproducible."""
    assert _batches_digest() == BATCHES_SHA256


def test_drawing_a_batch_builds_no_tensor_from_host_values():
    """On CUDA, a tensor made from a Python value is a blocking copy to the device: a host
    sync in every training step. That covers torch.as_tensor / torch.tensor of a number and
    `t[idx] = 1.0` (index_put_ of a host scalar: the distance task's two syncs per batch that
    gpu_check found on an H200). All of them pass through aten.lift_fresh, which a dispatch
    mode sees on the CPU too; the generators never call it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Refuse(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.lift_fresh.default:
                raise AssertionError("a tensor built from host values while drawing a batch")
            return func(*args, **(kwargs or {}))

    with Refuse():  # the sensor itself can fail
        with pytest.raises(AssertionError, match="host values"):
            torch.zeros(4)[torch.arange(2)] = 1.0
    tasks = [make_task(TaskConfig(name=n, height=32, width=40, distractors=2, **kw))
             for n in ("distance", "area", "locate", "count")
             for kw in ({}, {"coord_channels": False})]
    tasks.append(make_task(TaskConfig(name="distance", height=32, width=40,
                                      allow_coincident=True)))
    for task in tasks:
        with Refuse():
            task.sample(16, make_generator(0, "cpu", "train"))
